"""diffusers autoencoders behind kinema's interface: tiny random models diffusers itself saves; nothing downloads."""

import shutil

import numpy as np
import pytest
import torch

from kinema.config import UNetConfig, load_config
from kinema.models.model_dir import latent_autoencoder, load_autoencoder
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer

diffusers = pytest.importorskip("diffusers")


def _kl(channels=1):
    blocks = dict(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    return diffusers.AutoencoderKL(in_channels=channels, out_channels=channels, latent_channels=2, **blocks,
                                   block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4)


def _cog():
    return diffusers.AutoencoderKLCogVideoX(in_channels=3, out_channels=3, latent_channels=2,
                                            down_block_types=("CogVideoXDownBlock3D",) * 3,
                                            up_block_types=("CogVideoXUpBlock3D",) * 3, block_out_channels=(8, 8, 8),
                                            layers_per_block=1, norm_num_groups=4, temporal_compression_ratio=4)


def _wan():
    return diffusers.AutoencoderKLWan(base_dim=8, z_dim=2, dim_mult=[1, 1, 1], num_res_blocks=1,
                                      temperal_downsample=[True, True], latents_mean=[0.5, -0.5],
                                      latents_std=[2.0, 0.5])


@pytest.mark.parametrize("build, frames, factors", [(_kl, 3, (4, 1)), (_cog, 5, (4, 4)), (_wan, 5, (4, 4))])
def test_the_adapter_reproduces_diffusers_own_encode_and_decode(tmp_path, build, frames, factors):
    torch.manual_seed(0)
    vae = build().eval()
    vae.save_pretrained(tmp_path / "vae")
    ae = load_autoencoder(f"diffusers:{tmp_path / 'vae'}")
    assert (ae.config.spatial_factor, ae.config.temporal_factor) == factors and ae.config.latent_channels == 2
    c = ae.config.in_channels
    x = torch.rand(2, c, frames, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        if ae.per_frame:
            frames_in = x.transpose(1, 2).flatten(0, 1)  # (B T, C, H, W): diffusers' image autoencoder per frame
            mean = vae.encode(frames_in).latent_dist.mean
            expected_decode = vae.decode(mean).sample.unflatten(0, (2, frames)).transpose(1, 2)
            mean = mean.unflatten(0, (2, frames)).transpose(1, 2)
        else:
            mean = vae.encode(x).latent_dist.mean
            expected_decode = vae.decode(mean).sample
        got_mean, _ = ae.moments(x)
        torch.testing.assert_close(got_mean, mean, rtol=1e-5, atol=1e-5)
        z = ae.encode(x)  # normalised as diffusers' pipelines do: (mean - shift) / scale
        torch.testing.assert_close(ae.decode(z), expected_decode, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ae.decode(z, chunk=1), expected_decode, rtol=1e-4, atol=1e-4)
    if isinstance(vae, diffusers.AutoencoderKLWan):  # Wan's per-channel statistics
        torch.testing.assert_close(z[:, 0], (mean[:, 0] - 0.5) / 2.0)
    elif isinstance(vae, diffusers.AutoencoderKLCogVideoX):
        torch.testing.assert_close(z, mean * vae.config.scaling_factor)


def test_a_foreign_class_or_path_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_autoencoder(f"diffusers:{tmp_path}")
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match="UNet2DModel"):
        load_autoencoder(f"diffusers:{tmp_path}")


def test_latent_diffusion_on_a_diffusers_image_autoencoder(tmp_path):
    torch.manual_seed(0)
    _kl().save_pretrained(tmp_path / "vae")
    config = load_config(None, {
        "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.in_channels": 2,
        "model.frame_conditioning": True, "model.autoencoder": f"diffusers:{tmp_path / 'vae'}",
        "diffusion.num_steps": 100, "data.size": 32, "data.num_frames": 4, "data.length": 16, "data.max_digits": 1,
        "train.batch_size": 2, "train.steps": 2, "train.checkpoint_every": 2, "train.sample_every": 0,
        "train.mixed_precision": "no"})
    Trainer(config, tmp_path / "run").fit()
    shutil.rmtree(tmp_path / "vae")  # the model directory carries the diffusers autoencoder's weights and config
    pipe = VideoPipeline.from_pretrained(tmp_path / "run", device="cpu")
    assert type(pipe.autoencoder.vae).__name__ == "AutoencoderKL" and pipe.grid == 8
    clip = np.zeros((2, 32, 32, 1), np.uint8)
    assert pipe(context=clip, num_frames=4, steps=2, seed=0, progress=False).numpy().shape == (1, 4, 32, 32, 1)


def test_latent_diffusion_refuses_a_diffusers_autoencoder_that_compresses_time(tmp_path):
    torch.manual_seed(0)
    _cog().save_pretrained(tmp_path / "vae")
    ae = load_autoencoder(f"diffusers:{tmp_path / 'vae'}")
    x = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():  # the reason: its first latent frames change with the frames after them
        assert not torch.allclose(ae.encode(x[:, :, :5]), ae.encode(x)[:, :, :2], atol=1e-3)
    with pytest.raises(ValueError, match=r"AutoencoderKLCogVideoX that compresses time \(4x\).*CogVideoX's do not"):
        latent_autoencoder(UNetConfig(autoencoder=f"diffusers:{tmp_path / 'vae'}", in_channels=2), 16, 5)
