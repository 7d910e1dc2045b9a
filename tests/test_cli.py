"""The command line end to end: train a tiny model, sample from it, resume, and clear usage errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from kinema.cli import main
from kinema.data import read_video
from kinema.diffusion.schedules import make_schedule
from kinema.pipeline import Video, VideoPipeline

TINY = {
    "model": {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "head_dim": 8, "norm_groups": 4,
              "spatial_attention_levels": [1]},
    "diffusion": {"num_steps": 100, "shift": 1.5},
    "data": {"size": 24, "num_frames": 6, "length": 64},
    "train": {"steps": 3, "batch_size": 2, "log_every": 1, "checkpoint_every": 2, "sample_every": 0},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(root / "tiny.yaml"), "--out", str(root / "run")]) == 0
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return root


def test_sample_writes_playable_videos(run_dir, tmp_path):
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(run_dir / "run"), "--num", "2", "--steps", "3", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["grid.gif", "grid.mp4", "sample_000.gif", "sample_000.mp4", "sample_001.gif", "sample_001.mp4"]
    clip = read_video(out / "sample_000.mp4")
    assert clip.shape == (6, 24, 24, 3) and clip.dtype == np.uint8


def test_sample_passes_the_cache_interval(run_dir, tmp_path, capsys, step_caches):
    args = ["sample", "--model", str(run_dir / "run"), "--num", "1", "--steps", "4", "--sampler", "dpmpp_2m"]
    assert main([*args, "--out", str(tmp_path / "1")]) == 0
    assert step_caches == []  # the default runs every step in full, without the wrapper
    assert main([*args, "--cache-interval", "2", "--out", str(tmp_path / "2")]) == 0
    assert [(c.interval, c.full_calls, c.reused_calls) for c in step_caches] == [(2, 2, 2)]
    assert main([*args, "--cache-interval", "0", "--out", str(tmp_path / "0")]) == 2
    assert "cache interval must be a positive integer, got 0" in capsys.readouterr().err


def test_sample_passes_the_precision(run_dir, tmp_path, monkeypatch):
    """--precision bf16 runs the denoiser under bf16 autocast, --precision no in float32."""
    from kinema.models import SpaceTimeUNet

    seen, forward = [], SpaceTimeUNet.forward

    def spy(self, x, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(SpaceTimeUNet, "forward", spy)
    args = ["sample", "--model", str(run_dir / "run"), "--num", "1", "--steps", "2", "--device", "cpu"]
    assert main([*args, "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    assert main([*args, "--precision", "no", "--out", str(tmp_path / "fp32")]) == 0
    assert seen and set(seen) == {False}


def test_resume_continues_the_step_count(run_dir):
    config = run_dir / "tiny.yaml"
    assert main(["train", "--config", str(config), "--out", str(run_dir / "run"), "--steps", "5", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert (run_dir / "run" / "checkpoints" / "step_00000005").is_dir()


def test_pipeline_is_reproducible_and_matches_training_size(run_dir):
    pipe = VideoPipeline.from_pretrained(run_dir / "run" / "model")
    assert torch.equal(pipe.schedule.betas, make_schedule("cosine", 100, shift=1.5).betas)  # the trained schedule
    a = pipe(2, steps=3, seed=1, progress=False)
    b = pipe(2, steps=3, seed=1, progress=False)
    c = pipe(2, steps=3, seed=2, progress=False)
    assert isinstance(a, Video) and a.numpy().shape == (2, 6, 24, 24, 1)
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())
    assert a.torch().shape == (2, 1, 6, 24, 24) and float(a.torch().abs().max()) <= 1.0
    assert pipe(1, num_frames=9, steps=2, seed=0, sampler="ddpm", progress=False).numpy().shape[1] == 9


@pytest.mark.parametrize("argv, message", [
    (["train", "--out", "x", "--set", "model.chanels=8"], "did you mean 'channels'"),
    (["train", "--out", "x", "--set", "train.lr=-1"], "train.lr"),
    (["sample", "--model", "no/such/dir", "--out", "x"], "no/such/dir"),
    (["sample", "--model", "x", "--out", "x", "--sampler", "euler_magic"], "euler_magic"),
])
def test_usage_errors_exit_2_with_the_bad_value(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_frame_tasks_need_a_frame_conditioned_model(run_dir, tmp_path, capsys):
    from kinema.data import write_image

    write_image(tmp_path / "a.png", np.zeros((24, 24, 3), np.uint8))
    argv = ["animate", "--model", str(run_dir / "run"), "--image", str(tmp_path / "a.png"), "--out", "x.mp4"]
    assert main(argv) == 2
    assert "frame_conditioning" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "kinema"  # the venv's console script
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "sample" in out.stdout


def test_set_keeps_yaml_words_that_are_not_booleans():
    from kinema.config import parse_override as _parse_override

    assert _parse_override("train.mixed_precision=no") == ("train.mixed_precision", "no")
    assert _parse_override("model.frame_conditioning=true") == ("model.frame_conditioning", True)
    assert _parse_override("train.lr=1e-3") == ("train.lr", 1e-3)
