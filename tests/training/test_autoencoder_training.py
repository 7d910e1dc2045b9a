"""kinema train-ae: the Trainer's machinery for the autoencoder, its model directory and exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from kinema.cli import main
from kinema.config import load_config
from kinema.models.model_dir import load_autoencoder
from kinema.training.autoencoder_trainer import AutoencoderTrainer

TINY = {
    "autoencoder.channels": 8, "autoencoder.norm_groups": 4, "autoencoder.latent_channels": 2,
    "data.size": 24, "data.num_frames": 3, "data.length": 32, "data.max_digits": 1,
    "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 2, "train.sample_every": 0,
    "train.warmup_steps": 1, "train.lr": 1e-3, "train.mixed_precision": "no", "ae_loss.stats_clips": 4,
}


def tiny(**extra):
    return load_config(None, {**TINY, **extra})


def test_train_ae_writes_a_model_directory_with_latent_statistics(tmp_path):
    AutoencoderTrainer(tiny(**{"train.steps": 3, "train.sample_every": 3, "train.num_samples": 2}), tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["rec"] > 0 and r["kl"] >= 0 for r in rows)
    assert (tmp_path / "samples" / "step_00000003.gif").is_file()
    ae = load_autoencoder(tmp_path / "model")
    assert ae.config.latent_channels == 2 and (ae.latent_scale > 0).all() and not torch.equal(
        ae.latent_scale, torch.ones(2))  # measured, not the initial 1
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["kind"] == "autoencoder" and config["data"] == {"size": 24, "num_frames": 3}


def test_train_ae_resume_is_exact(tmp_path):
    AutoencoderTrainer(tiny(**{"train.steps": 4}), tmp_path / "straight").fit()
    AutoencoderTrainer(tiny(**{"train.steps": 2}), tmp_path / "split").fit()
    AutoencoderTrainer(tiny(**{"train.steps": 4}), tmp_path / "split", resume=True).fit()
    a, b = (load_file(tmp_path / r / "model" / "model.safetensors") for r in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="autoencoder.latent_channels: 2 -> 3"):
        AutoencoderTrainer(tiny(**{"train.steps": 5, "autoencoder.latent_channels": 3}), tmp_path / "split",
                           resume=True)


def test_clips_that_do_not_fit_the_autoencoder_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="1 \\+ a multiple of 2"):
        AutoencoderTrainer(tiny(**{"autoencoder.temporal_factor": 2, "data.num_frames": 4}), tmp_path)


def test_cli_train_ae_trains_and_refuses_a_bad_config(tmp_path, capsys):
    assert main(["train-ae", "--out", str(tmp_path / "ae"), "--steps", "1",
                 *[a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]]) == 0
    assert load_autoencoder(tmp_path / "ae" / "model").config.in_channels == 1
    assert main(["train-ae", "--out", str(tmp_path / "x"), "--set", "autoencoder.spatial_factor=3"]) == 2
    assert "autoencoder.spatial_factor" in capsys.readouterr().err


def test_the_discriminator_joins_after_its_start_and_resumes_exactly(tmp_path):
    gan = {"ae_loss.disc_weight": 0.1, "ae_loss.disc_start": 2}
    AutoencoderTrainer(tiny(**gan, **{"train.steps": 4}), tmp_path / "straight").fit()
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert "gan" not in rows[0] and "gan" not in rows[1] and "gan" in rows[2] and "disc" in rows[3]
    AutoencoderTrainer(tiny(**gan, **{"train.steps": 3}), tmp_path / "split").fit()
    AutoencoderTrainer(tiny(**gan, **{"train.steps": 4}), tmp_path / "split", resume=True).fit()
    a, b = (load_file(tmp_path / r / "model" / "model.safetensors") for r in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the discriminator and its optimizer came back too


def test_a_shortcut_autoencoder_starts_at_the_pca_of_its_training_clips(tmp_path):
    trainer = AutoencoderTrainer(tiny(**{"autoencoder.shortcut": True, "train.steps": 1}), tmp_path)
    model = trainer.model
    clips = torch.stack([trainer.dataset[i]["video"] for i in range(32)])  # every clip of data.length 32
    with torch.no_grad():
        first = model.shortcut_in.weight.flatten(1)  # (2, 16): the two leading components
        latent, _ = model.moments(clips)
    assert torch.allclose(first @ first.T, torch.eye(2), atol=1e-5)  # orthonormal rows
    per_channel = latent.transpose(0, 1).flatten(1).var(1)
    assert per_channel[0] > per_channel[1] > 0  # ordered by the variance they carry
    trainer.fit()  # and it trains from there
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_train_ae_fine_tunes_from_an_autoencoder_and_refuses_another_network(tmp_path):
    AutoencoderTrainer(tiny(**{"train.steps": 2}), tmp_path / "base").fit()
    base = load_autoencoder(tmp_path / "base" / "model")
    tuned = AutoencoderTrainer(tiny(**{"train.steps": 1, "finetune.init_from": str(tmp_path / "base"),
                                       "ae_loss.latent_noise": 0.5}), tmp_path / "tuned")
    start = tuned.model.state_dict()
    assert all(torch.equal(start[k], v) for k, v in base.state_dict().items())
    tuned.fit()  # a step with noisy latents runs
    assert load_autoencoder(tmp_path / "tuned" / "model").config == base.config
    with pytest.raises(ValueError, match="autoencoder.latent_channels: 2 -> 3"):
        AutoencoderTrainer(tiny(**{"autoencoder.latent_channels": 3, "finetune.init_from": str(tmp_path / "base")}),
                           tmp_path / "other")


def test_decoder_only_keeps_the_encoder_and_the_latent_statistics_of_its_base(tmp_path):
    AutoencoderTrainer(tiny(**{"train.steps": 2}), tmp_path / "base").fit()
    base = load_autoencoder(tmp_path / "base" / "model")
    AutoencoderTrainer(tiny(**{"train.steps": 2, "finetune.init_from": str(tmp_path / "base"),
                               "ae_loss.decoder_only": True, "ae_loss.latent_noise": 0.5}), tmp_path / "dec").fit()
    tuned = load_autoencoder(tmp_path / "dec" / "model")
    before, after = base.state_dict(), tuned.state_dict()
    kept = [k for k in before if k.startswith("encoder.") or k.startswith("latent_")]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    with pytest.raises(ValueError, match="finetune.init_from"):
        AutoencoderTrainer(tiny(**{"ae_loss.decoder_only": True}), tmp_path / "none")
