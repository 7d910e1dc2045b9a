"""The fused per-frame norm + FiLM + SiLU (`kernels.norm_act`, `FrameNorm`): values and gradients against PyTorch's
group norm in float64, layouts, bf16 precision, the FiLM shapes, and the UNet's output with it on and off."""

import pytest
import torch
import torch.nn.functional as F

from kinema.config import UNetConfig
from kinema.models import SpaceTimeUNet
from kinema.models.kernels import norm_act
from kinema.models.layers import FrameNorm


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def reference(x, groups, weight, bias, scale, shift, silu):
    """PyTorch's group norm on each frame, then FiLM and SiLU, op by op."""
    b = x.shape[0]
    h = F.group_norm(x.transpose(1, 2).flatten(0, 1), groups, weight, bias, 1e-5).unflatten(0, (b, -1)).transpose(1, 2)
    h = h if scale is None else h * (1 + scale)
    h = h if shift is None else h + shift
    return F.silu(h) if silu else h


def _inputs(shape, film_frames, dtype=torch.float64, offset=0.5, seed=0):
    g = _gen(seed)
    b, c, t = shape[:3]
    x = torch.randn(shape, generator=g, dtype=dtype) * 1.5 + offset
    weight, bias = torch.randn(c, generator=g, dtype=dtype), torch.randn(c, generator=g, dtype=dtype)
    film = None if film_frames is None else (b, c, film_frames, 1, 1)
    scale = None if film is None else torch.randn(film, generator=g, dtype=dtype) * 0.3
    shift = None if film is None else torch.randn(film, generator=g, dtype=dtype) * 0.3
    return x, weight, bias, scale, shift


def _values_and_grads(fn, x, weight, bias, scale, shift, upstream):
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, weight, bias, scale, shift)]
    y = fn(*leaves)
    y.backward(upstream)
    return y.detach(), [None if t is None else t.grad for t in leaves]


@pytest.mark.parametrize("film_frames", [None, 1, 5])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_matches_group_norm_film_silu_in_float64(film_frames, silu, layout):
    """Output and every gradient (x, weight, bias, scale, shift) equal the op-by-op reference to float64 rounding,
    in either memory layout, with FiLM per clip, per frame or none; the output keeps x's layout."""
    x, weight, bias, scale, shift = _inputs((2, 8, 5, 4, 6), film_frames)
    x = x.contiguous(memory_format=layout)
    upstream = torch.randn(x.shape, generator=_gen(9), dtype=x.dtype)
    want, want_grads = _values_and_grads(lambda *a: reference(a[0], 4, *a[1:], silu), x, weight, bias, scale, shift,
                                         upstream)
    got, got_grads = _values_and_grads(lambda *a: norm_act(a[0], 4, a[1], a[2], 1e-5, a[3], a[4], silu), x, weight,
                                       bias, scale, shift, upstream)
    assert got.dtype == torch.float64 and got.is_contiguous(memory_format=layout)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for name, g, w in zip(["x", "weight", "bias", "scale", "shift"], got_grads, want_grads):
        if w is None:
            assert g is None
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9, msg=name)


def test_statistics_never_mix_frames_or_clips():
    """Scaling one frame of one clip changes no other frame's output."""
    x, weight, bias, _, _ = _inputs((2, 8, 4, 4, 4), None)
    before = norm_act(x, 4, weight, bias, 1e-5)
    x2 = x.clone()
    x2[1, :, 2] = x2[1, :, 2] * 7 + 3
    after = norm_act(x2, 4, weight, bias, 1e-5)
    changed = (after - before).abs().amax(dim=(1, 3, 4)) > 1e-9  # (B, T)
    want = torch.zeros(2, 4, dtype=torch.bool)
    want[1, 2] = True
    assert torch.equal(changed, want), changed


@pytest.mark.parametrize("offset", [0.0, 4.0])
def test_bf16_is_as_close_to_float64_as_pytorchs_own_bf16_group_norm(offset):
    """In bf16 (as under autocast) the relative error of output and input gradient against float64 on the same
    rounded input stays within 1.5x that of PyTorch's bf16 group norm + FiLM + SiLU, also when the mean is large."""
    x, weight, bias, scale, shift = _inputs((4, 16, 4, 8, 8), 4, offset=offset)
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last_3d)
    x64 = xb.double()
    upstream = torch.randn(x.shape, generator=_gen(3), dtype=torch.float64)
    exact, exact_grads = _values_and_grads(lambda *a: reference(a[0], 4, *a[1:], True), x64, weight, bias, scale,
                                           shift, upstream)

    def error(fn):
        y, grads = _values_and_grads(fn, xb, weight.float(), bias.float(), scale.bfloat16(), shift.bfloat16(),
                                     upstream.bfloat16())
        rel = lambda a, b: ((a.double() - b).abs().mean() / b.abs().mean()).item()  # noqa: E731
        return rel(y, exact), rel(grads[0], exact_grads[0])

    stock = error(lambda *a: reference(a[0], 4, *a[1:], True))
    fused = error(lambda *a: norm_act(a[0], 4, a[1], a[2], 1e-5, a[3], a[4], True))
    assert fused[0] < 1.5 * stock[0] and fused[1] < 1.5 * stock[1], (fused, stock)
    assert fused[0] < 1e-2 and fused[1] < 1e-2


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match="6 channels do not split into 4 groups"):
        norm_act(torch.randn(1, 6, 2, 4, 4), 4, None, None, 1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_frame_norm_routes_agree(fused, monkeypatch):
    """FrameNorm with and without the fused kernel: same output and gradients (float32 rounding)."""
    x, weight, bias, scale, shift = _inputs((2, 8, 3, 4, 4), 3, dtype=torch.float32)
    norm = FrameNorm(4, 8)
    with torch.no_grad():
        norm.weight.copy_(weight), norm.bias.copy_(bias)
    monkeypatch.setattr(FrameNorm, "fused", fused)
    got = norm(x, scale, shift, silu=True)
    torch.testing.assert_close(got, reference(x, 4, weight, bias, scale, shift, True), rtol=1e-5, atol=1e-5)


def test_unet_output_and_gradients_agree_with_the_fused_norm_off(monkeypatch):
    """The whole UNet in float32: the fused norm changes nothing beyond float rounding."""
    cfg = UNetConfig(channels=16, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                     spatial_attention_levels=(1,))
    torch.manual_seed(0)
    model = SpaceTimeUNet(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=_gen(1)) * 0.1)
    x = torch.randn(2, 1, 4, 16, 16, generator=_gen(2))
    runs = {}
    for fused in (True, False):
        monkeypatch.setattr(FrameNorm, "fused", fused)
        model.zero_grad()
        out = model(x, torch.tensor([5, 600]))
        out.square().mean().backward()
        runs[fused] = out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=1e-4, atol=1e-5)
    for name, g in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][name], g, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("channels, hw, fused", [(32, 16, True), (64, 8, True), (48, 32, False), (384, 8, False)])
def test_frame_norm_takes_the_fused_kernel_only_where_it_pays(channels, hw, fused, monkeypatch):
    """On the CPU the fused kernel runs for at most 8 channels per group and 256 pixels per frame (where PyTorch's
    channels-last kernel is slow), PyTorch's group norm elsewhere; both give the same values."""
    from kinema.models import layers

    calls = []
    real = layers.norm_act
    monkeypatch.setattr(layers, "norm_act", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(1, channels, 2, hw, hw, generator=_gen(4))
    norm = FrameNorm(8, channels)
    out = norm(x, silu=True)
    assert bool(calls) == fused
    torch.testing.assert_close(out, reference(x, 8, norm.weight, norm.bias, None, None, True), rtol=1e-4, atol=1e-4)
