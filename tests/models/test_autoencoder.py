"""The video autoencoder: shapes, the KL in closed form, causality, unit-variance latents, chunked and tiled decodes."""

import pytest
import torch
from einops import rearrange

from kinema.config import AutoencoderConfig
from kinema.models.autoencoder import VideoAutoencoder, gaussian_kl, init_shortcut, measure_latent_stats


def _ae(**kw):
    torch.manual_seed(0)
    return VideoAutoencoder(AutoencoderConfig(channels=8, norm_groups=4, **kw)).eval()


def _video(b=2, c=1, t=5, size=16, seed=1):
    return torch.rand(b, c, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("spatial", [4, 8])
@pytest.mark.parametrize("temporal", [1, 2, 4])
def test_shapes_for_every_spatial_and_temporal_factor(spatial, temporal):
    ae = _ae(spatial_factor=spatial, temporal_factor=temporal, latent_channels=3, in_channels=3)
    t = 1 + 2 * temporal
    with torch.no_grad():
        z = ae.encode(_video(c=3, t=t, size=32))
        assert z.shape == (2, 3, 3, 32 // spatial, 32 // spatial) == (2, *ae.latent_shape(3, t, 32, 32))
        assert ae.decode(z).shape == (2, 3, t, 32, 32)
        assert ae.decode(ae.encode(_video(b=1, c=3, t=1, size=32))).shape == (1, 3, 1, 32, 32)  # an image


def test_frames_and_sizes_that_do_not_fit_are_refused():
    ae = _ae(temporal_factor=4)
    with pytest.raises(ValueError, match="1 \\+ a multiple of 4"):
        ae.encode(_video(t=4))
    with pytest.raises(ValueError, match="multiples of the spatial factor 4"):
        ae.encode(_video(t=5, size=18))
    with pytest.raises(ValueError, match="spatial_factor"):
        AutoencoderConfig(spatial_factor=2)


def test_kl_matches_the_closed_form_of_torch_distributions():
    mean, log_var = torch.randn(3, 4, 2, 2, 2), torch.randn(3, 4, 2, 2, 2)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_kl(mean, log_var), expected)
    assert gaussian_kl(torch.zeros(1, 5), torch.zeros(1, 5)).item() == 0


@pytest.mark.parametrize("temporal", [1, 2, 4])
def test_the_first_frames_latent_ignores_later_frames(temporal):
    ae = _ae(temporal_factor=temporal)
    x = _video(t=1 + 2 * temporal)
    y = x.clone()
    y[:, :, 1:] = -y[:, :, 1:]  # every later frame changed
    with torch.no_grad():
        zx, zy = ae.encode(x), ae.encode(y)
    torch.testing.assert_close(zx[:, :, 0], zy[:, :, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(zx[:, :, 1:], zy[:, :, 1:], atol=1e-3)
    with torch.no_grad():  # and the decoder: frame 0 comes from latent frame 0 alone
        dx, dy = ae.decode(zx), ae.decode(zy)
    torch.testing.assert_close(dx[:, :, 0], dy[:, :, 0], rtol=0, atol=1e-6)


def test_the_shortcut_folds_pixel_squares_into_channels_and_back_exactly():
    ae = _ae(latent_channels=16, shortcut=True)  # 1 channel x 4 x 4 pixels = 16 latent channels: a bijection
    with torch.no_grad():
        for conv in (ae.shortcut_in, ae.shortcut_out):
            conv.weight.copy_(torch.eye(16).view(16, 16, 1, 1, 1))
            torch.nn.init.zeros_(conv.bias)
        x = _video(t=3)
        z = ae.encode(x)
        torch.testing.assert_close(z[0, :, 1, 2, 3], x[0, 0, 1, 8:12, 12:16].flatten())  # latent (2, 3) = that square
        torch.testing.assert_close(ae.decode(z), x)
        torch.testing.assert_close(ae.decode(z, chunk=1, tile=2), x)


def test_the_shortcut_maps_each_frame_alone_and_is_refused_where_frames_are_grouped():
    ae = _ae(shortcut=True)  # the networks start silent: only the linear path acts
    x = _video(t=4)
    y = x.clone()
    y[:, :, 2] = -y[:, :, 2]
    with torch.no_grad():
        zx, zy = ae.encode(x), ae.encode(y)
        torch.testing.assert_close(ae.encode(2 * x - y), 2 * zx - zy)  # linear once the networks are silent
    changed = (zx - zy).abs().amax(dim=(0, 1, 3, 4))
    assert changed[2] > 0 and (changed[[0, 1, 3]] == 0).all()
    with pytest.raises(ValueError, match="autoencoder.shortcut"):
        AutoencoderConfig(shortcut=True, temporal_factor=2)


@pytest.mark.parametrize("latent", [3, 8])
def test_the_shortcut_starts_as_the_pca_of_pixel_squares_with_its_closed_form_error(latent):
    ae = _ae(latent_channels=latent, shortcut=True)
    clips = _video(b=4, t=2) * _video(b=4, t=2, seed=5)  # squares whose 16 pixels are not all alike
    init_shortcut(ae, clips)
    squares = rearrange(clips, "n c t (h p) (w q) -> (n t h w) (c p q)", p=4, q=4)
    values = torch.linalg.svdvals(squares - squares.mean(0))  # (16,), by size
    with torch.no_grad():
        recon = ae.decode(ae.encode(clips))
    error = (recon - clips).square().sum() / squares.shape[0]  # per square
    torch.testing.assert_close(error, values[latent:].square().sum() / squares.shape[0], rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="autoencoder.shortcut true"):
        init_shortcut(_ae(), clips)


def test_measured_shift_and_scale_give_the_latent_unit_variance():
    ae = _ae()
    clips = [_video(t=3, seed=s) * 0.5 + 0.2 for s in range(4)]
    stats = measure_latent_stats(ae, clips)
    assert stats["scale"].shape == (4,) and (stats["scale"] > 0).all()
    with torch.no_grad():
        z = torch.cat([ae.encode(x) for x in clips])  # (N, Z, T, H, W)
    per_channel = z.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), rtol=0, atol=1e-4)
    torch.testing.assert_close(per_channel.std(1, correction=0), torch.ones(4), rtol=0, atol=1e-3)
    with torch.no_grad():  # decoding undoes the scaling: the same video as the raw latent gives
        mean, _ = ae.moments(clips[0])
        torch.testing.assert_close(ae.decode(ae.encode(clips[0])), ae.decoder(mean), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("temporal", [1, 4])
def test_chunked_decoding_equals_whole_clip_decoding(temporal):
    ae = _ae(temporal_factor=temporal)
    z = torch.randn(1, 4, 9, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = ae.decode(z)
        for chunk in (1, 2, 4):
            torch.testing.assert_close(ae.decode(z, chunk=chunk), whole, rtol=1e-4, atol=1e-5)


class _LocalDecoder(torch.nn.Module):
    """A decoder whose every output pixel depends only on its own latent position: tiles must add up exactly."""

    def __init__(self, latent_channels, out_channels, scale):
        super().__init__()
        self.mix, self.scale = torch.nn.Conv3d(latent_channels, out_channels, 1), scale

    def forward(self, z):
        return torch.nn.functional.interpolate(self.mix(z), scale_factor=(1, self.scale, self.scale))


@pytest.mark.parametrize("tile", [2, 3, 5, 8])
def test_tiles_cross_fade_into_exactly_the_whole_decode_when_the_decoder_is_local(tile):
    ae = _ae()
    ae.decoder = _LocalDecoder(4, 1, ae.config.spatial_factor)
    z = torch.randn(2, 4, 3, 9, 13, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ae.decode(z, tile=tile), ae.decode(z), rtol=1e-5, atol=1e-6)


def test_a_tile_as_large_as_the_frame_is_the_whole_decode_and_a_tiny_tile_is_refused():
    ae = _ae()
    z = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(ae.decode(z, tile=4), ae.decode(z))
        with pytest.raises(ValueError, match="tile must be >= 2"):
            ae.decode(z, tile=1)


def _largest_activation(ae, z, **decode_options):
    """The decoded video of latent z and the largest output (in numbers) of any decoder layer on the way."""
    largest = []
    hook = lambda module, args, out: largest.append(out.numel())  # noqa: E731
    handles = [m.register_forward_hook(hook) for m in ae.decoder]
    try:
        with torch.no_grad():
            video = ae.decode(z, **decode_options)
    finally:
        for h in handles:
            h.remove()
    return video, max(largest)


def test_tiled_decoding_keeps_its_largest_activation_whatever_the_frame_size():
    ae = _ae()
    sizes = {}
    for side in (8, 32):
        video, sizes[side] = _largest_activation(ae, torch.randn(1, 4, 2, side, side), chunk=1, tile=4)
        assert video.shape[-2:] == (side * 4, side * 4)
    assert sizes[8] == sizes[32]  # set by the tile, not the frame


def test_the_variational_latent_is_sampled_in_training_and_a_plain_one_has_no_kl():
    ae = _ae()
    x = _video(t=3)
    out = ae(x, generator=torch.Generator().manual_seed(0))
    assert out["recon"].shape == x.shape and out["kl"].shape == (2,) and (out["kl"] > 0).all()
    plain = _ae(variational=False)
    out = plain(x)
    assert out["recon"].shape == x.shape and not out["kl"].any()
    with torch.no_grad():
        torch.testing.assert_close(plain.encode(x, sample=True), plain.encode(x))


def test_latent_noise_has_a_per_clip_std_uniform_up_to_its_bound_in_latent_stds():
    ae = _ae(variational=False, latent_channels=3)
    seen = []
    ae.decoded = lambda z: seen.append(z) or z  # what the decoder is handed
    x = _video(b=200, t=2, size=32)
    with torch.no_grad():
        mean, _ = ae.moments(x)  # (200, 3, 2, 8, 8)
        ae(x, generator=torch.Generator().manual_seed(0), latent_noise=0.0)
        ae(x, generator=torch.Generator().manual_seed(0), latent_noise=0.6)
    assert torch.equal(seen[0], mean)  # no noise asked, none added
    std = mean.transpose(0, 1).flatten(1).std(1).view(1, -1, 1, 1, 1)  # (1, Z, 1, 1, 1) the batch's spread
    ratio = ((seen[1] - mean) / std).flatten(1).std(1)  # (200,) each clip's noise in latent stds
    assert ratio.max() < 0.6 * 1.15 and ratio.min() < 0.05  # u * 0.6, u uniform in [0, 1]
    assert abs(ratio.mean() - 0.3) < 0.05  # E[u] * 0.6
    per_channel = ((seen[1] - mean) / std).transpose(0, 1).flatten(1).std(1)  # (Z,) the same for every channel
    assert (per_channel.max() - per_channel.min()) / per_channel.mean() < 0.1


def test_chunked_decoding_keeps_its_largest_activation_whatever_the_length():
    ae = _ae(temporal_factor=2)
    sizes = {}
    for frames in (32, 256):
        video, sizes[frames] = _largest_activation(ae, torch.randn(1, 4, frames, 4, 4), chunk=8)
        assert video.shape[2] == 1 + (frames - 1) * 2
    assert sizes[32] == sizes[256]  # memory for activations is set by the chunk, not the video's length


def test_the_bundled_digits_autoencoder_reconstructs_held_out_digits_and_its_latent_has_unit_scale():
    from kinema.config import DataConfig
    from kinema.data.datasets import build_dataset, dataset_options
    from kinema.evaluation.frame_metrics import psnr_per_frame
    from kinema.models.model_dir import load_autoencoder

    ae = load_autoencoder("ae-moving-digits")
    config = DataConfig(kind="moving-digits", size=32, num_frames=8, max_digits=1, length=4, seed=7)
    data = build_dataset("moving-digits", **dataset_options(config, split="test"))
    video = torch.stack([data[i]["video"] for i in range(4)])  # (4, 1, 8, 32, 32), digits it never saw
    with torch.no_grad():
        z = ae.encode(video)
        out = ae.decode(z).clamp(-1, 1)
    assert z.shape == (4, 4, 8, 8, 8)
    assert 0.5 < float(z.std()) < 2.0  # the stored shift and scale bring the latent near unit variance
    psnr = psnr_per_frame(out, video)  # data range [-1, 1]
    assert float(psnr.mean()) > 33.0, psnr  # 36.95 dB mean over 64 clips (benchmarks/results/ae-digits)


def test_tiles_of_the_bundled_digits_autoencoder_agree_with_its_whole_decode():
    from kinema.config import DataConfig
    from kinema.data.datasets import build_dataset, dataset_options
    from kinema.evaluation.frame_metrics import psnr_per_frame
    from kinema.models.model_dir import load_autoencoder

    ae = load_autoencoder("ae-moving-digits")
    config = DataConfig(kind="moving-digits", size=64, num_frames=4, max_digits=2, length=2, seed=7)
    data = build_dataset("moving-digits", **dataset_options(config, split="test"))
    video = torch.stack([data[i]["video"] for i in range(2)])  # (2, 1, 4, 64, 64): a 16 x 16 latent
    with torch.no_grad():
        z = ae.encode(video)
        whole, tiled = ae.decode(z).clamp(-1, 1), ae.decode(z, tile=8).clamp(-1, 1)
    # the tiles' group norms measure 32 x 32 pixels instead of 64 x 64: 44 dB apart when measured
    assert float(psnr_per_frame(tiled, whole).mean()) > 38.0
    assert float(psnr_per_frame(tiled, video).mean()) > float(psnr_per_frame(whole, video).mean()) - 3.0


def test_the_bundled_natural_autoencoder_reconstructs_footage_it_never_saw():
    pytest.importorskip("skimage")
    from kinema.config import DataConfig
    from kinema.data.datasets import build_dataset, dataset_options
    from kinema.evaluation.frame_metrics import psnr_per_frame
    from kinema.models.model_dir import load_autoencoder

    ae = load_autoencoder("ae-natural")
    config = DataConfig(kind="natural", size=128, num_frames=4, length=2, seed=5)
    data = build_dataset("natural", **{**dataset_options(config, split="test"), "clip_share": 1.0})  # bikes.mp4
    video = torch.stack([data[i]["video"] for i in range(2)])  # (2, 3, 4, 128, 128)
    with torch.no_grad():
        z = ae.encode(video)
        out = ae.decode(z).clamp(-1, 1)
    assert z.shape == (2, 16, 4, 32, 32) and 0.5 < float(z.std()) < 2.0
    assert float(psnr_per_frame(out, video).mean()) > 38.0  # 43.8 dB over 64 clips (benchmarks/results/ae-natural)
