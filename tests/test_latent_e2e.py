"""Latent diffusion end to end: a tiny autoencoder, a UNet trained on its latents, every task through the latents."""

import json
import shutil

import numpy as np
import pytest

from kinema.cli import main
from kinema.config import load_config
from kinema.diffusion import SAMPLERS
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer
from kinema.training.autoencoder_trainer import AutoencoderTrainer

AE = {
    "autoencoder.channels": 8, "autoencoder.norm_groups": 4, "autoencoder.latent_channels": 3,
    "data.size": 32, "data.num_frames": 4, "data.length": 32, "data.max_digits": 1, "train.batch_size": 2,
    "train.checkpoint_every": 2, "train.sample_every": 0, "train.mixed_precision": "no", "train.steps": 2,
    "ae_loss.stats_clips": 4,
}
UNET = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 8, "model.in_channels": 3,
    "model.frame_conditioning": True, "diffusion.num_steps": 100, "data.size": 32, "data.num_frames": 4,
    "data.length": 32, "data.max_digits": 1, "cond.text": "gru", "cond.image": True, "train.batch_size": 2,
    "train.checkpoint_every": 2, "train.sample_every": 2, "train.num_samples": 2, "train.sample_steps": 2,
    "train.mixed_precision": "no", "train.steps": 2,
}


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    AutoencoderTrainer(load_config(None, AE), root / "ae").fit()
    Trainer(load_config(None, {**UNET, "model.autoencoder": str(root / "ae" / "model")}), root / "unet").fit()
    shutil.rmtree(root / "ae")  # the model directory carries its own copy of the autoencoder
    return root / "unet"


def test_the_unet_runs_on_the_latent_grid_and_the_model_directory_holds_the_autoencoder(latent_run):
    pipe = VideoPipeline.from_pretrained(latent_run, device="cpu")
    assert pipe.autoencoder is not None and pipe.grid == 8 and pipe.size == 32 and pipe.channels == 1
    assert (latent_run / "model" / "autoencoder.safetensors").is_file()
    assert json.loads((latent_run / "model" / "config.json").read_text())["autoencoder"]["latent_channels"] == 3
    assert (latent_run / "samples" / "step_00000002.gif").is_file()  # training grids are decoded


def test_every_task_runs_through_the_latents(latent_run):
    pipe = VideoPipeline.from_pretrained(latent_run, device="cpu")
    clip = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 1), dtype=np.uint8)
    kw = dict(steps=2, seed=0, progress=False)
    assert pipe(2, prompt="digit 3 moving up", guidance=3, **kw).numpy().shape == (2, 4, 32, 32, 1)
    predicted = pipe(context=clip, context_frames=2, **kw).numpy()
    assert predicted.shape == (1, 4, 32, 32, 1) and np.array_equal(predicted[0, :2], clip[2:])  # the last 2, exact
    between = pipe(first_frame=clip[0], last_frame=clip[-1], **kw).numpy()
    assert np.array_equal(between[0, 0], clip[0]) and np.array_equal(between[0, -1], clip[-1])
    assert pipe(first_frame=clip[0], image=clip[1], image_guidance=2, **kw).numpy().shape == (1, 4, 32, 32, 1)
    assert pipe(1, num_frames=9, overlap=2, **kw).numpy().shape == (1, 9, 32, 32, 1)  # windows slide over latents
    assert pipe(1, num_frames=7, long_mode="keyframes", **kw).numpy().shape == (1, 7, 32, 32, 1)
    assert pipe.edit(clip, prompt="digit 1 moving left", strength=0.5, **kw).numpy().shape == (1, 4, 32, 32, 1)
    assert pipe(1, cache_interval=2, steps=4, seed=0, progress=False).numpy().shape == (1, 4, 32, 32, 1)
    for sampler in sorted(SAMPLERS):
        assert pipe(1, sampler=sampler, **kw).numpy().shape == (1, 4, 32, 32, 1), sampler


def test_a_latent_pipeline_does_not_clip_the_predicted_latent_to_the_pixel_range(latent_run, monkeypatch):
    import kinema.pipeline

    pipe = VideoPipeline.from_pretrained(latent_run, device="cpu")
    asked = []
    build = kinema.pipeline.sampling_denoiser
    monkeypatch.setattr(kinema.pipeline, "sampling_denoiser", lambda *a, **kw: asked.append(kw["latent"]) or build(
        *a, **kw))
    pipe(1, steps=2, seed=0, progress=False)
    pipe(first_frame=np.zeros((32, 32, 1), np.uint8), prompt="digit 3 moving up", guidance=2, steps=2, seed=0,
         progress=False)
    assert asked == [True, True]


def test_the_pipeline_decodes_in_tiles_when_asked(latent_run, monkeypatch):
    pipe = VideoPipeline.from_pretrained(latent_run, device="cpu")
    tiles = []
    decode_tiles = type(pipe.autoencoder).decode_tiles
    monkeypatch.setattr(type(pipe.autoencoder), "decode_tiles",
                        lambda self, raw, tile: tiles.append(tile) or decode_tiles(self, raw, tile))
    whole = pipe(1, steps=2, seed=0, progress=False).numpy()
    pipe.decode_tile = 4  # half the 8 x 8 latent grid: four tiles a frame
    tiled = pipe(1, steps=2, seed=0, progress=False).numpy()
    assert tiles[0] is None and tiles[-1] == 4 and tiled.shape == whole.shape == (1, 4, 32, 32, 1)


def test_kinema_eval_and_demo_on_a_latent_model(latent_run, tmp_path):
    assert main(["eval", "--model", str(latent_run), "--task", "predict", "--context", "2", "--num", "4",
                 "--batch", "4", "--steps", "2", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["results"][0]["frame_metrics"]["mean_over_draws"]["psnr"] > 0
    assert main(["demo", "--model", str(latent_run), "--steps", "2", "--out", str(tmp_path / "demo")]) == 0


def test_an_autoencoder_that_does_not_fit_the_unet_is_refused(tmp_path):
    AutoencoderTrainer(load_config(None, {**AE, "train.steps": 1}), tmp_path / "ae").fit()
    with pytest.raises(ValueError, match="set model.in_channels to 3"):
        Trainer(load_config(None, {**UNET, "model.in_channels": 4, "model.autoencoder": str(tmp_path / "ae")}),
                tmp_path / "x")
    with pytest.raises(ValueError, match="not divisible by 8"):
        Trainer(load_config(None, {**UNET, "data.size": 36, "model.autoencoder": str(tmp_path / "ae")}),
                tmp_path / "y")
