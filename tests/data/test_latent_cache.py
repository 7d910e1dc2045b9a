"""`kinema data cache --autoencoder`: every clip's latent stored once, read by latent training instead of encoding."""

import json

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.config import load_config
from kinema.data.cache import LATENTS_FILE, CachedClips, cache_kind
from kinema.models.model_dir import load_autoencoder
from kinema.training import Trainer
from kinema.training.autoencoder_trainer import AutoencoderTrainer

from video_fixtures import gradient_frames, write_av

DATA = {"data.kind": "folder", "data.size": 16, "data.num_frames": 4}
AE = {**DATA, "autoencoder.in_channels": 3, "autoencoder.channels": 8, "autoencoder.norm_groups": 4,
      "autoencoder.latent_channels": 3, "train.batch_size": 2, "train.steps": 1, "train.checkpoint_every": 1,
      "train.sample_every": 0, "train.mixed_precision": "no", "ae_loss.stats_clips": 2}
UNET = {**DATA, "model.channels": 8, "model.channel_mult": [1], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [], "model.in_channels": 3,
        "diffusion.num_steps": 50, "train.batch_size": 2, "train.steps": 1, "train.checkpoint_every": 1,
        "train.sample_every": 0, "train.mixed_precision": "no"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent-cache")
    clips = root / "clips"
    clips.mkdir()
    for i in range(5):
        write_av(clips / f"clip{i}.mp4", gradient_frames(t=8, h=20, w=24, seed=i))
    for name, seed in (("ae", 0), ("other", 1)):
        AutoencoderTrainer(load_config(None, {**AE, "data.root": str(clips), "train.seed": seed}), root / name).fit()
    cache = root / "cache"
    assert main(["data", "cache", str(clips), "--out", str(cache), "--set", "data.size=16", "--set",
                 "data.num_frames=4", "--autoencoder", str(root / "ae")]) == 0
    return root, cache


def test_the_cache_holds_each_clips_latent_under_the_named_autoencoder(setup):
    root, cache = setup
    index = json.loads((cache / "index.json").read_text())
    ae = load_autoencoder(root / "ae")
    assert index["latents"]["shape"] == [3, 4, 4, 4] and index["latents"]["autoencoder"] == str(root / "ae")
    assert cache_kind(cache) == "cache" and (cache / LATENTS_FILE).stat().st_size == 5 * 3 * 4 * 4 * 4 * 4
    data = CachedClips(cache, latents=True)
    for i in range(len(data)):
        item = data[i]
        with torch.no_grad():
            expected = ae.encode(item["video"][None])[0]  # the cached clip, encoded now
        torch.testing.assert_close(item["latent"], expected, atol=1e-5, rtol=1e-5)


def test_latent_training_reads_the_cached_latents_and_encodes_nothing(setup, tmp_path):
    root, cache = setup
    config = load_config(None, {**UNET, "data.kind": "cache", "data.root": str(cache),
                                "model.autoencoder": str(root / "ae")})
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.dataset.latents

    def refuse(*args, **kwargs):
        raise AssertionError("a clip was encoded although its latent is cached")

    trainer.autoencoder.encode = refuse
    trainer.fit()
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_latents_of_another_autoencoder_are_not_used(setup, tmp_path):
    root, cache = setup
    config = load_config(None, {**UNET, "data.kind": "cache", "data.root": str(cache),
                                "model.autoencoder": str(root / "other")})
    with pytest.warns(UserWarning, match="latents of another autoencoder"):
        trainer = Trainer(config, tmp_path / "run")
    assert not trainer.dataset.latents and "latent" not in trainer.dataset[0]


def test_cached_latents_cannot_be_flipped_or_read_where_there_are_none(setup, tmp_path):
    root, cache = setup
    with pytest.raises(ValueError, match="flip with cached latents"):
        CachedClips(cache, latents=True, flip=True)
    plain = tmp_path / "plain"
    assert main(["data", "cache", str(root / "clips"), "--out", str(plain), "--set", "data.size=16", "--set",
                 "data.num_frames=4"]) == 0
    with pytest.raises(ValueError, match="holds no latents"):
        CachedClips(plain, latents=True)
    assert np.array_equal(CachedClips(plain)[0]["video"], CachedClips(cache)[0]["video"])
