"""Conditioned models end to end: training with condition dropout, exact resume, the pipeline and the CLI."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema.cli import main
from kinema.config import load_config
from kinema.data.audio import write_wav
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 8, "diffusion.num_steps": 100,
    "data.size": 24, "data.num_frames": 4, "data.length": 64, "data.max_digits": 1, "data.audio": True,
    "cond.text": "gru", "cond.image": True, "cond.audio": True, "cond.n_mels": 8, "cond.audio_steps_per_frame": 2,
    "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 2, "train.sample_every": 0,
    "train.warmup_steps": 2, "train.lr": 1e-3, "train.mixed_precision": "no",
}


def tiny(**extra):
    return load_config(None, {**TINY, **extra})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond_run")
    Trainer(tiny(**{"train.steps": 2, "train.sample_every": 2, "train.num_samples": 2, "train.sample_steps": 2}),
            out).fit()
    return out


def test_training_writes_encoders_vocabulary_and_kl(run):
    for name in ("model/conditioner.safetensors", "model/text_vocab.json", "samples/step_00000002.txt"):
        assert (run / name).is_file(), name
    assert "digit" in json.loads((run / "model" / "text_vocab.json").read_text())
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["cond"]["text"] == "gru" and config["data"]["fps"] == 8.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["kl"] >= 0 for r in rows)


def test_conditioned_resume_is_exact(tmp_path):
    Trainer(tiny(**{"train.steps": 4}), tmp_path / "straight").fit()
    Trainer(tiny(**{"train.steps": 2}), tmp_path / "split").fit()
    Trainer(tiny(**{"train.steps": 4}), tmp_path / "split", resume=True).fit()
    for name in ("model.safetensors", "conditioner.safetensors"):
        a = load_file(tmp_path / "straight" / "model" / name)
        b = load_file(tmp_path / "split" / "model" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_config_requires_cond_dim_and_audio_data():
    with pytest.raises(ValueError, match="cond_dim"):
        tiny(**{"model.cond_dim": 0})
    with pytest.raises(ValueError, match="data.audio"):
        tiny(**{"data.audio": False})


def test_pipeline_conditions_guidance_and_determinism(run):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    kw = dict(prompt="digit 3 moving up", audio=audio, image=np.zeros((24, 24, 3), np.uint8), steps=3,
              progress=False)
    a = pipe(2, seed=1, guidance=3, audio_guidance=2, negative_prompt="digit 1", **kw)
    b = pipe(2, seed=1, guidance=3, audio_guidance=2, negative_prompt="digit 1", **kw)
    c = pipe(2, seed=1, **kw)
    assert a.numpy().shape == (2, 4, 24, 24, 1) and np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    long = pipe(1, num_frames=9, seed=0, overlap=2, **kw)  # audio cut per window
    assert long.numpy().shape == (1, 9, 24, 24, 1)


def test_pipeline_batches_the_guidance_branches(run):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    calls = []
    pipe.model.stem.register_forward_hook(lambda m, args, out: calls.append(out.shape[0]))
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    kw = dict(prompt="digit 3 moving up", audio=audio, guidance=3, audio_guidance=2, negative_prompt="digit 1",
              steps=3, seed=1, progress=False)
    batched = pipe(2, **kw).numpy()
    assert calls == [3 * 2] * 3  # three branches (negative, + text, + audio) of two clips, one call per step
    calls.clear()
    pipe.batch_guidance = False
    one_by_one = pipe(2, **kw).numpy()
    assert calls == [2] * 9
    assert np.abs(batched.astype(int) - one_by_one.astype(int)).max() <= 1  # the same up to float rounding


def test_feature_caching_follows_the_guidance_branches(run, step_caches):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    kw = dict(prompt="digit 3 moving up", guidance=3, steps=4, sampler="dpmpp_2m", seed=0, cache_interval=2,
              progress=False)
    pipe(2, **kw)
    (batched,) = step_caches
    assert len(batched.caches) == 1 and (batched.full_calls, batched.reused_calls) == (2, 2)
    pipe.batch_guidance = False
    pipe(2, **kw)
    one_by_one = step_caches[1]
    assert len(one_by_one.caches) == 2 and (one_by_one.full_calls, one_by_one.reused_calls) == (4, 4)


def test_pipeline_guidance_chain(run):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    chain, scales = pipe.conditions(2, 4, prompt="digit 3 moving up")
    assert len(chain) == 1 and scales == []
    chain, scales = pipe.conditions(2, 4, prompt="digit 3 moving up", audio=np.zeros(8000, np.float32),
                                    scales={"text": 4.0, "audio": 1.0})
    assert chain[0] is None and scales == [4.0, 1.0] and len(chain) == 3
    assert chain[2].per_frame.shape == (2, 4, 8) and chain[1].per_frame is None
    chain, _ = pipe.conditions(2, 4, prompt="digit 3", negative_prompt="digit 5")
    assert chain[0] is not None and chain[0].tokens.shape[1] == 2


def test_pipeline_condition_errors(run, tmp_path):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    with pytest.raises(ValueError, match="no audio was given"):
        pipe(prompt="digit 1", audio_guidance=3, steps=2, progress=False)
    with pytest.raises(ValueError, match="needs a prompt"):
        pipe(negative_prompt="digit 1", steps=2, progress=False)
    with pytest.raises(ValueError, match="3 prompts for 2 clips"):
        pipe(2, prompt=["a", "b", "c"], steps=2, progress=False)
    Trainer(load_config(None, {k: v for k, v in TINY.items() if not k.startswith(("cond.", "model.cond_dim"))}
                        | {"train.steps": 1}), tmp_path).fit()
    plain = VideoPipeline.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="takes no conditions"):
        plain(prompt="digit 1", steps=2, progress=False)


def test_edit_keeps_frame_count(run):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    source = np.zeros((6, 24, 24, 3), np.uint8)
    out = pipe.edit(source, prompt="digit 5 moving left", strength=0.5, steps=4, seed=0, progress=False)
    assert out.numpy().shape == (1, 6, 24, 24, 1)


def test_cli_sample_edit_augment(run, tmp_path, capsys):
    wav = write_wav(tmp_path / "tone.wav", 0.3 * np.sin(np.arange(8000) / 10.0), 16000)
    base = ["--model", str(run), "--steps", "2"]
    assert main(["sample", *base, "--prompt", "digit 7 moving left", "--guidance", "3", "--audio", str(wav),
                 "--num", "2", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "sample_001.mp4").is_file()
    assert main(["edit", *base, "--video", str(tmp_path / "s" / "sample_000.mp4"), "--prompt", "digit 1 moving up",
                 "--strength", "0.4", "--out", str(tmp_path / "e.mp4")]) == 0
    assert main(["edit", *base, "--video", str(tmp_path / "s" / "sample_000.mp4"), "--frame-guidance", "2",
                 "--out", str(tmp_path / "e2.mp4")]) == 2  # bad input
    assert "an edit has no given frames" in capsys.readouterr().err and not (tmp_path / "e2.mp4").exists()
    (tmp_path / "prompts.txt").write_text("digit 1 moving up\n\ndigit 2 moving left\n")
    assert main(["augment", *base, "--prompts", str(tmp_path / "prompts.txt"), "--per-prompt", "2",
                 "--out", str(tmp_path / "aug")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "aug" / "captions.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows] == ["digit 1 moving up"] * 2 + ["digit 2 moving left"] * 2
    for r in rows:
        assert (tmp_path / "aug" / r["path"]).is_file()
        assert (tmp_path / "aug" / r["path"]).with_suffix(".txt").read_text().strip() == r["caption"]
    assert main(["sample", *base, "--audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.wav does not exist" in capsys.readouterr().err


def test_augmented_folder_trains_back(run, tmp_path):
    """`kinema augment` writes a captioned VideoFolder that `kinema train` reads for 20 steps (text-conditioned)."""
    (tmp_path / "prompts.txt").write_text("digit 1 moving up\ndigit 2 moving left\n")
    assert main(["augment", "--model", str(run), "--steps", "2", "--prompts", str(tmp_path / "prompts.txt"),
                 "--per-prompt", "3", "--frames", "4", "--out", str(tmp_path / "aug")]) == 0
    tiny_model = [f"{k}={v}" for k, v in TINY.items() if k.startswith(("model.", "diffusion.", "train."))]
    sets = [*tiny_model, "model.in_channels=3", "data.kind=folder", f"data.root={tmp_path / 'aug'}",
            "data.size=24", "data.num_frames=4", "cond.text=gru", "train.steps=20", "train.log_every=10"]
    assert main(["train", "--out", str(tmp_path / "back"), *[a for s in sets for a in ("--set", s)]]) == 0
    rows = [json.loads(line) for line in (tmp_path / "back" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20] and all(np.isfinite(r["loss"]) for r in rows)
    vocab = json.loads((tmp_path / "back" / "model" / "text_vocab.json").read_text())
    assert {"digit", "1", "2", "up", "left"} <= set(vocab)  # learned from the augmented captions
