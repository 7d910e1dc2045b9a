"""The space-time UNet and its layers: shapes, errors, gradient flow, and which layers may mix frames."""

import dataclasses

import pytest
import torch
from einops import rearrange
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from kinema.config import UNetConfig
from kinema.models import SpaceTimeUNet, count_parameters
from kinema.models import kernels, layers
from kinema.models.kernels import Conv3d, flop_counter
from kinema.models.layers import ResBlock, TemporalAttention, TemporalConv, timestep_embedding
from kinema.models.model_dir import save_model_dir
from kinema.pipeline import VideoPipeline
from kinema.types import Cond, FrameMask


def _config(**overrides):
    kw = {"channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1, "head_dim": 8, "norm_groups": 4,
          "spatial_attention_levels": (1,)}
    kw.update(overrides)
    return UNetConfig(**kw)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _randomise(module: nn.Module, seed=0, std=0.2, keep=()):
    """Overwrite every parameter with noise (many are zero-initialised), except inside modules of types `keep`."""
    g = _gen(seed)
    kept = {id(p) for m in module.modules() if isinstance(m, keep) for p in m.parameters()}
    for p in module.parameters():
        if id(p) not in kept:
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _steps(b):
    return torch.arange(b) * 37 + 5


# ---- shapes and errors ----


@pytest.mark.parametrize("frames", [1, 3, 8])
@pytest.mark.parametrize("hw", [(8, 8), (16, 24)])
def test_output_shape(frames, hw):
    model = SpaceTimeUNet(_config(in_channels=3)).eval()
    x = torch.randn(2, 3, frames, *hw, generator=_gen())
    with torch.no_grad():
        out = model(x, _steps(2))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_learned_variance_doubles_channels():
    model = SpaceTimeUNet(_config(in_channels=3, learned_variance=True)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 2, 8, 8), _steps(1))
    assert out.shape == (1, 6, 2, 8, 8)
    assert model.config.out_channels == 6


@pytest.mark.parametrize("hw", [(9, 8), (8, 6), (12, 10)])
def test_size_not_divisible_raises(hw):
    model = SpaceTimeUNet(_config(channel_mult=(1, 2, 2)))  # downsample factor 4
    with pytest.raises(ValueError, match=rf"divisible by 4.*H={hw[0]}, W={hw[1]}"):
        model(torch.randn(1, 1, 2, *hw), _steps(1))


@pytest.mark.parametrize("shape", [(1, 3, 2, 8, 8), (1, 2, 8, 8), (1, 1, 1, 2, 8, 8)])
def test_wrong_input_raises(shape):
    model = SpaceTimeUNet(_config())
    with pytest.raises(ValueError, match=r"expected a video \(B, 1, T, H, W\)"):
        model(torch.randn(*shape), _steps(1))


def test_scalar_step_broadcasts_over_batch():
    model = _randomise(SpaceTimeUNet(_config())).eval()
    x = torch.randn(3, 1, 2, 8, 8, generator=_gen())
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor(7)), model(x, torch.full((3,), 7)))


# ---- gradients ----


def test_gradient_reaches_every_parameter():
    # with max_relative_position 2 and 4 frames, every relative-bias entry is used
    model = _randomise(SpaceTimeUNet(_config(max_relative_position=2)), std=0.1)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 1, 4, 8, 8, generator=_gen(1))
    out = model(x, _steps(2))
    (out * torch.randn(out.shape, generator=_gen(2))).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert bool(torch.isfinite(p.grad).all()), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum().item() > 0, f"{name} has an all-zero gradient"
        if name.endswith("rel_bias"):
            assert bool((p.grad != 0).all()), f"{name}: some relative offsets get no gradient"


# ---- which layers mix frames ----


def _outputs_before_and_after_shift(block, T, s):
    """The block's output on a random clip and on the clip delayed by s frames (zeros shifted in)."""
    x = torch.randn(2, 8, T, 5, 5, generator=_gen(1))
    emb = torch.randn(2, 12, generator=_gen(2))
    shifted = torch.zeros_like(x)
    shifted[:, :, s:] = x[:, :, :-s]
    with torch.no_grad():
        return block(x, emb), block(shifted, emb)


def test_resblock_is_shift_equivariant_in_time():
    # two size-3 temporal convs give a temporal radius of 2; away from both ends a shift of the
    # input shifts the output. Per-frame norms keep this exact: a norm over T would not.
    block = _randomise(ResBlock(8, 16, 12, groups=4), std=0.3).eval()
    T, s, r = 12, 3, 2
    y, y_shifted = _outputs_before_and_after_shift(block, T, s)
    interior = range(s + r, T - r)
    for t in interior:
        torch.testing.assert_close(y_shifted[:, :, t], y[:, :, t - s], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(y_shifted[:, :, s], y[:, :, 0], atol=1e-3)  # the padded boundary does differ


def test_resblock_temporal_receptive_field_is_two_frames():
    block = _randomise(ResBlock(8, 8, 12, groups=4), std=0.3).eval()
    x = torch.randn(1, 8, 10, 4, 4, generator=_gen(1))
    emb = torch.randn(1, 12, generator=_gen(2))
    poked = x.clone()
    poked[:, :, 5] += torch.randn(8, 4, 4, generator=_gen(3))  # not a constant: the norm would remove it
    with torch.no_grad():
        changed = (block(poked, emb) - block(x, emb)).abs().amax(dim=(0, 1, 3, 4))  # (T,)
    assert (changed > 1e-6).nonzero().flatten().tolist() == [3, 4, 5, 6, 7]


class _ClipNorm(nn.GroupNorm):
    """GroupNorm over whole clips (statistics pool frames), called as FrameNorm is."""

    def forward(self, x, silu=False):
        out = super().forward(x)
        return torch.nn.functional.silu(out) if silu else out


def test_a_norm_over_time_breaks_the_shift_check():
    # the equivariance test above can fail: the same check on a block whose first norm pools over T
    block = _randomise(ResBlock(8, 16, 12, groups=4), std=0.3).eval()
    block.norm1 = _ClipNorm(4, 8)  # normalises (C/G, T, H, W) together
    with torch.no_grad():
        block.norm1.weight.copy_(torch.randn(8, generator=_gen(3)))
    T, s = 12, 3
    y, y_shifted = _outputs_before_and_after_shift(block, T, s)
    assert not torch.allclose(y_shifted[:, :, s + 2], y[:, :, 2], rtol=1e-5, atol=1e-5)


def test_temporal_attention_bias_depends_only_on_offset():
    attn = TemporalAttention(16, 8, groups=4, max_relative_position=3)
    with torch.no_grad():
        attn.rel_bias.copy_(torch.randn(attn.rel_bias.shape, generator=_gen()))
    bias = attn.relative_bias(9)
    assert bias.shape == (2, 9, 9)
    torch.testing.assert_close(bias[:, 1:, 1:], bias[:, :-1, :-1], rtol=0, atol=0)  # Toeplitz
    for i in range(9):
        for j in range(9):
            offset = max(-3, min(3, j - i))  # offsets beyond the maximum share one bias
            assert torch.equal(bias[:, i, j], attn.rel_bias[:, offset + 3])


def _attention(seed=0, zero_bias=True):
    attn = _randomise(TemporalAttention(16, 8, groups=4, max_relative_position=4), seed=seed, std=0.3).eval()
    if zero_bias:
        with torch.no_grad():
            attn.rel_bias.zero_()
    return attn


def test_temporal_attention_without_bias_is_permutation_equivariant():
    attn = _attention()
    x = torch.randn(2, 16, 6, 3, 3, generator=_gen(1))
    for perm in (torch.roll(torch.arange(6), 2), torch.tensor([3, 0, 5, 1, 4, 2])):
        with torch.no_grad():
            torch.testing.assert_close(attn(x[:, :, perm]), attn(x)[:, :, perm], rtol=1e-5, atol=1e-5)


def test_temporal_attention_bias_is_position_information():
    attn = _attention()
    x = torch.randn(2, 16, 6, 3, 3, generator=_gen(1))
    perm = torch.roll(torch.arange(6), 2)
    with torch.no_grad():
        base = attn(x)
        attn.rel_bias.fill_(1.7)  # a constant bias shifts every logit equally: softmax ignores it
        torch.testing.assert_close(attn(x), base, rtol=1e-5, atol=1e-5)
        attn.rel_bias.copy_(torch.randn(attn.rel_bias.shape, generator=_gen(2)))
        assert not torch.allclose(attn(x[:, :, perm]), attn(x)[:, :, perm], atol=1e-4)


def test_temporal_attention_matches_reference_softmax():
    attn = _attention(zero_bias=False)
    x = torch.randn(1, 16, 5, 2, 2, generator=_gen(1))
    with torch.no_grad():
        out = attn(x)
        seq = rearrange(attn.norm(x), "b c t h w -> (b h w) t c")  # per-frame GroupNorm, then pixels as batch
        q, k, v = (rearrange(z, "n t (nh d) -> n nh t d", nh=2) for z in attn.qkv(seq).chunk(3, dim=-1))
        logits = q @ k.transpose(-1, -2) / 8**0.5 + attn.relative_bias(5)  # (B*H*W, nh, T, T)
        ref = attn.proj(rearrange(logits.softmax(-1) @ v, "n nh t d -> n t (nh d)"))
        ref = rearrange(ref, "(b h w) t c -> b c t h w", b=1, h=2, w=2)
    torch.testing.assert_close(out, x + ref, rtol=1e-5, atol=1e-5)


class _KernelDtypes(TorchDispatchMode):
    """The dtype of every attention kernel's first input (a fused kernel, or the math path's bmm), seen below
    autocast (after any cast it makes)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if ("scaled_dot_product" in name or name.startswith("bmm")) and "backward" not in name:
            self.seen.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("float32", [True, False])
def test_attention_computes_bf16_in_float32_where_asked(monkeypatch, float32):
    """CPU_FLOAT32_ATTENTION: bf16 inputs reach the kernel in float32 (autocast does not cast them back), the
    output comes back in bf16 and matches float32 attention on the same inputs; gradients reach q, k, v and the mask."""
    monkeypatch.setattr(kernels, "CPU_FLOAT32_ATTENTION", float32)
    q, k, v = (torch.randn(6, 2, 5, 8, generator=_gen(i)).bfloat16().requires_grad_() for i in range(3))
    mask = torch.randn(1, 2, 5, 5, generator=_gen(3), requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16), _KernelDtypes() as dtypes:
        kernels.attention(q.detach(), k.detach(), v.detach(), mask.detach())  # a mask needing grad: the math path
    assert dtypes.seen and set(dtypes.seen) == {torch.float32 if float32 else torch.bfloat16}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kernels.attention(q, k, v, mask)
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    logits = q.float() @ k.float().transpose(-1, -2) / 8**0.5 + mask
    ref = (logits.softmax(-1) @ v.float()).detach()
    tol = 1e-2 if float32 else 5e-2  # bf16 rounding of the output only, against bf16 arithmetic throughout
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)
    out.float().square().sum().backward()
    for t in (q, k, v, mask):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_every_self_attention_of_the_unet_goes_through_it(monkeypatch):
    """Under bf16 autocast with CPU_FLOAT32_ATTENTION, spatial and temporal attention compute in float32; the
    output stays close to the all-bf16 one."""
    model = _randomise(SpaceTimeUNet(_config()), std=0.1).eval()
    x = torch.randn(2, 1, 4, 16, 16, generator=_gen(1))
    outs = {}
    for float32 in (True, False):
        monkeypatch.setattr(kernels, "CPU_FLOAT32_ATTENTION", float32)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), _KernelDtypes() as dtypes:
            outs[float32] = model(x, _steps(2)).float()
        n_attention = sum(isinstance(m, (layers.SpatialAttention, TemporalAttention)) for m in model.modules())
        assert len(dtypes.seen) >= n_attention >= 4  # one fused kernel each, or the math path's two bmm
        assert set(dtypes.seen) == {torch.float32 if float32 else torch.bfloat16}
    torch.testing.assert_close(outs[True], outs[False], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("batch", [1, 2])
def test_temporal_attention_projects_pixels_with_one_matrix_product(batch):
    """As in sampling (no grad, frozen weights, channels-last activations, one clip or more), the qkv projection
    is one GEMM over all pixels, never a batched matmul against a per-pixel copy of the weight."""
    attn = _attention(zero_bias=False).requires_grad_(False)
    x = torch.randn(batch, 16, 5, 4, 4, generator=_gen(1)).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad(), _Ops() as ops:
        attn(x)
    names = [name for name, _ in ops.calls]
    assert "bmm" not in names and {"mm", "addmm"} & set(names), names


def test_unet_never_mixes_batch_items():
    model = _randomise(SpaceTimeUNet(_config()), std=0.1).eval()
    x = torch.randn(2, 1, 4, 8, 8, generator=_gen(1))
    other = x.clone()
    other[1] = torch.randn(1, 4, 8, 8, generator=_gen(2))
    with torch.no_grad():
        a, b = model(x, _steps(2)), model(other, _steps(2))
    assert torch.equal(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_only_temporal_layers_mix_frames():
    # no temporal attention and identity temporal convs: every other layer acts per frame
    model = _randomise(SpaceTimeUNet(_config(temporal_attention=False)), std=0.1, keep=(TemporalConv,)).eval()
    x = torch.randn(1, 1, 5, 8, 8, generator=_gen(1))
    poked = x.clone()
    poked[:, :, 3] = torch.randn(8, 8, generator=_gen(2))
    with torch.no_grad():
        a, b = model(x, _steps(1)), model(poked, _steps(1))
    others = [0, 1, 2, 4]
    torch.testing.assert_close(b[:, :, others], a[:, :, others], rtol=0, atol=1e-6)
    assert not torch.allclose(b[:, :, 3], a[:, :, 3], atol=1e-3)
    # and with the temporal convs randomised too, the poke does spread to the neighbours
    _randomise(model, seed=5, std=0.1)
    with torch.no_grad():
        a, b = model(x, _steps(1)), model(poked, _steps(1))
    assert not torch.allclose(b[:, :, 2], a[:, :, 2], atol=1e-6)



def test_spacetime_attention_mixes_frames_and_nothing_else_does():
    # with identity temporal convs and no temporal attention, only the whole-clip attention can carry a poke of
    # frame 3 to frame 0, and it never crosses from one clip of the batch to another
    cfg = _config(temporal_attention=False, spacetime_attention_levels=(1,))
    model = _randomise(SpaceTimeUNet(cfg), std=0.1, keep=(TemporalConv,)).eval()
    x = torch.randn(2, 1, 5, 8, 8, generator=_gen(1))
    poked = x.clone()
    poked[0, :, 3] = torch.randn(8, 8, generator=_gen(2))
    with torch.no_grad():
        a, b = model(x, _steps(2)), model(poked, _steps(2))
    assert not torch.allclose(b[0, :, 0], a[0, :, 0], atol=1e-4)
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=0)
    per_frame = SpaceTimeUNet(dataclasses.replace(cfg, spacetime_attention_levels=()))
    per_frame.load_state_dict(model.state_dict())  # the same parameters: only the tokens' grouping differs
    with torch.no_grad():
        a, b = per_frame(x, _steps(2)), per_frame(poked, _steps(2))
    torch.testing.assert_close(b[0, :, 0], a[0, :, 0], rtol=0, atol=1e-6)


def test_spacetime_attention_levels_must_have_attention():
    with pytest.raises(ValueError, match="spacetime_attention_levels"):
        _config(spatial_attention_levels=(1,), spacetime_attention_levels=(0,))


# ---- the step embedding ----


@pytest.mark.parametrize("dim", [16, 33])
def test_timestep_embedding(dim):
    steps = torch.arange(1000)
    emb = timestep_embedding(steps, dim)
    assert emb.shape == (1000, dim)
    half = dim // 2
    torch.testing.assert_close(emb[0, :half], torch.ones(half))  # cos(0)
    torch.testing.assert_close(emb[0, half:2 * half], torch.zeros(half))  # sin(0)
    if dim % 2:
        assert bool((emb[:, -1] == 0).all())  # odd dims are zero-padded
    distance = torch.cdist(emb, emb)
    distance.fill_diagonal_(float("inf"))
    assert distance.min().item() > 1e-3, "two steps share an embedding"


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel,stride,padding", [((1, 3, 3), (1, 2, 2), (0, 1, 1)), ((3, 1, 1), 1, (1, 0, 0)),
                                                   ((3, 3, 3), 1, 1), (1, 1, 0), ((1, 3, 3), 1, (0, 1, 1)),
                                                   ((3, 1, 1), 1, 0), ((5, 1, 1), 1, (1, 0, 0))])
def test_conv3d_matches_torch_conv3d_values_and_gradients(batch, kernel, stride, padding, layout):
    """Every route (oneDNN 3D, per-frame 2D on channels-last input, temporal) gives torch's values and gradients."""
    conv = Conv3d(4, 6, kernel, stride=stride, padding=padding)
    ref = nn.Conv3d(4, 6, kernel, stride=stride, padding=padding)
    ref.load_state_dict(conv.state_dict())  # same parameter names
    x = torch.randn(batch, 4, 5, 8, 8, generator=_gen()).contiguous(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = conv(xa), ref(xb)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(conv.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


class _Ops(TorchDispatchMode):
    """Records (op name, shape of its first argument) of every op run under it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func.__name__.split(".")[0], tuple(getattr(args[0], "shape", ()))))
        return func(*args, **(kwargs or {}))


def test_conv3d_routes_on_channels_last_input():
    """In training, a per-frame kernel runs as a 2D convolution over B*T frames and a temporal one takes its
    weight gradient from GEMMs (oneDNN computes only the input gradient); in the default layout both stay 3D."""
    x = torch.randn(2, 4, 5, 8, 8, generator=_gen())
    spatial, temporal = Conv3d(4, 6, (1, 3, 3), padding=(0, 1, 1)), Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0))
    for layout, frames in ((torch.channels_last_3d, True), (torch.contiguous_format, False)):
        with _Ops() as ops:
            spatial(x.contiguous(memory_format=layout)).sum().backward()
        convs = [shape for name, shape in ops.calls if name == "mkldnn_convolution"]
        assert convs == [(10, 4, 8, 8) if frames else (2, 4, 5, 8, 8)], convs
        xt = x.contiguous(memory_format=layout).requires_grad_()
        with _Ops() as ops:
            temporal(xt).sum().backward()
        names = [name for name, _ in ops.calls]
        assert names.count("bmm") == (3 if frames else 0), names
        assert "convolution_backward" in names
    with torch.no_grad(), _Ops() as ops:  # sampling: the 3D convolution, as tuned for it
        spatial(x.contiguous(memory_format=torch.channels_last_3d))
    assert [shape for name, shape in ops.calls if name == "mkldnn_convolution"] == [(2, 4, 5, 8, 8)]
    spatial.fast_weight_grad = False  # the switch: oneDNN's 3D convolution in training too
    with _Ops() as ops:
        spatial(x.contiguous(memory_format=torch.channels_last_3d)).sum().backward()
    assert [shape for name, shape in ops.calls if name == "mkldnn_convolution"] == [(2, 4, 5, 8, 8)]


@pytest.mark.parametrize("size,stride,padding", [(2, 1, 1), (3, 1, 1), (4, 1, 1), (4, 2, 1), (5, 1, 0), (8, 2, 1),
                                                     (6, 1, 1)])
def test_conv3d_small_frames_match_torch_and_take_the_patch_gemm(size, stride, padding):
    """<= 16 output pixels per frame: the weight gradient from one GEMM over unfolded patches, equal to torch's."""
    conv = Conv3d(4, 6, (1, 3, 3), stride=(1, stride, stride), padding=(0, padding, padding))
    ref = nn.Conv3d(4, 6, (1, 3, 3), stride=(1, stride, stride), padding=(0, padding, padding))
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(3, 4, 5, size, size, generator=_gen()).contiguous(memory_format=torch.channels_last_3d)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with _Ops() as ops:
        ya = conv(xa)
        (ya * torch.linspace(-1, 1, ya.numel()).reshape(ya.shape)).sum().backward()
    yb = ref(xb)
    (yb * torch.linspace(-1, 1, yb.numel()).reshape(yb.shape)).sum().backward()
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    for a, b in ((xa.grad, xb.grad), (conv.weight.grad, ref.weight.grad), (conv.bias.grad, ref.bias.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    pixels = ya.shape[-1] * ya.shape[-2]
    assert (pixels <= 16) == any(name == "mm" and shape == (6, 15 * pixels) for name, shape in ops.calls), ops.calls


def test_conv3d_bf16_and_channels_last_follow_torch():
    conv = Conv3d(4, 4, (1, 3, 3), padding=(0, 1, 1))
    x = torch.randn(2, 4, 3, 6, 6, generator=_gen())
    ref = nn.functional.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x.contiguous(memory_format=torch.channels_last_3d)), ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), ref, rtol=5e-2, atol=5e-2)


def _conv_input_layouts(model, x, step):
    """Whether each Conv3d after the stem saw a channels-last-3d input, in call order."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen.append(
        inp[0].is_contiguous(memory_format=torch.channels_last_3d)))
        for m in model.modules() if isinstance(m, Conv3d) and m is not model.stem]
    try:
        out = model(x, step)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


@pytest.mark.parametrize("channels_last", [True, False])
def test_activations_are_channels_last_inside_only_when_asked(channels_last):
    model = _randomise(SpaceTimeUNet(_config(in_channels=3)), std=0.1)
    model.channels_last = channels_last
    with torch.no_grad():
        out, seen = _conv_input_layouts(model, torch.randn(2, 3, 4, 8, 8, generator=_gen(1)), _steps(2))
    assert len(seen) > 10 and all(s == channels_last for s in seen), seen
    assert out.is_contiguous()  # callers get the default layout either way


def test_channels_last_gives_the_same_output_and_gradients():
    model = _randomise(SpaceTimeUNet(_config(in_channels=3, cond_dim=8)), std=0.1)
    x = torch.randn(2, 3, 4, 8, 8, generator=_gen(1))
    cond = Cond(tokens=torch.randn(2, 3, 8, generator=_gen(2)), mask=torch.tensor([[1, 1, 0], [1, 0, 0]]).bool())
    results = []
    for channels_last in (True, False):
        model.channels_last = channels_last
        model.zero_grad()
        out = model(x, _steps(2), cond=cond)
        (out * torch.randn(out.shape, generator=_gen(3))).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out_cl, grads_cl), (out_ref, grads_ref) = results
    torch.testing.assert_close(out_cl, out_ref, rtol=1e-4, atol=1e-5)
    assert grads_cl.keys() == grads_ref.keys() and len(grads_ref) > 50
    for name in grads_ref:
        torch.testing.assert_close(grads_cl[name], grads_ref[name], rtol=1e-3, atol=1e-4, msg=name)


def test_flop_counter_counts_the_onednn_route_like_torch_conv3d():
    model = SpaceTimeUNet(_config())
    x = torch.randn(1, 1, 4, 8, 8, generator=_gen())  # float32 CPU: Conv3d takes the oneDNN route

    def count(counter, **flags):
        with torch.backends.mkldnn.flags(**flags), counter as fc:
            model(x, _steps(1)).sum().backward()
        return fc.get_total_flops()

    routed = count(flop_counter(), enabled=True)
    assert routed == count(flop_counter(), enabled=False)  # the stock path: aten.convolution
    assert count(FlopCounterMode(display=False), enabled=True) < routed  # what the stock counter misses


# ---- patching ----


def _pixel_unshuffle_frames(x, p):
    """torch's pixel_unshuffle (channels c, i, j) on every frame: (B, C, T, H, W) -> (B, C p^2, T, H/p, W/p)."""
    b = x.shape[0]
    folded = torch.nn.functional.pixel_unshuffle(rearrange(x, "b c t h w -> (b t) c h w"), p)
    return rearrange(folded, "(b t) c h w -> b c t h w", b=b)


@pytest.mark.parametrize("frame_conditioning", [False, True])
def test_patching_folds_pixels_into_channels_and_back(frame_conditioning):
    model = _randomise(SpaceTimeUNet(_config(in_channels=3, patch_size=2, frame_conditioning=frame_conditioning)),
                       std=0.1).eval()
    x = torch.randn(2, 3, 3, 16, 8, generator=_gen(1))
    seen = {}
    hooks = [model.stem.register_forward_hook(lambda m, args, out: seen.update(stem_in=args[0], stem_out=out)),
             model.head.register_forward_hook(lambda m, args, out: seen.update(head_out=out))]
    try:
        with torch.no_grad():
            out = model(x, _steps(2))
    finally:
        for h in hooks:
            h.remove()
    assert out.shape == x.shape and out.is_contiguous()
    assert seen["stem_out"].shape == (2, 16, 3, 8, 4)  # every level runs on the half-size grid
    stem_in = model.frame_input(x, None)
    torch.testing.assert_close(seen["stem_in"], _pixel_unshuffle_frames(stem_in, 2), rtol=0, atol=0)
    torch.testing.assert_close(_pixel_unshuffle_frames(out, 2), seen["head_out"], rtol=0, atol=0)


def test_patching_divides_the_flops_by_about_p_squared():
    x = torch.randn(1, 3, 4, 32, 32, generator=_gen())

    def flops(patch_size):
        model = SpaceTimeUNet(_config(in_channels=3, patch_size=patch_size))
        with torch.no_grad(), flop_counter() as fc:
            model(x, _steps(1))
        return fc.get_total_flops()

    ratio = flops(2) / flops(1)
    assert 0.2 < ratio < 0.3, ratio  # 1/4 of the positions everywhere; spatial attention falls faster


def test_patch_size_enters_the_divisibility_check():
    model = SpaceTimeUNet(_config(channel_mult=(1, 2), patch_size=2))  # 2 x 2^1 = 4
    assert model.config.downsample_factor == 4
    with pytest.raises(ValueError, match=r"divisible by 4 \(patch_size 2.*H=6, W=8"):
        model(torch.randn(1, 1, 2, 6, 8), _steps(1))


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_patch_size_is_named(bad):
    with pytest.raises(ValueError, match=rf"model.patch_size = {bad!r} is invalid"):
        _config(patch_size=bad)


def test_a_patched_model_dir_loads_and_samples(tmp_path):
    cfg = _config(patch_size=2)
    net = _randomise(SpaceTimeUNet(cfg), std=0.05).eval()
    save_model_dir(tmp_path / "m", net, {"model": dataclasses.asdict(cfg), "diffusion": {"num_steps": 50},
                                         "data": {"kind": "moving-digits", "size": 8, "num_frames": 4}})
    pipe = VideoPipeline.from_pretrained(tmp_path / "m")
    assert pipe.model.config.patch_size == 2
    x = torch.randn(1, 1, 4, 8, 8, generator=_gen(1))
    with torch.no_grad():
        torch.testing.assert_close(pipe.model(x, _steps(1)), net(x, _steps(1)), rtol=0, atol=0)
    assert pipe(1, steps=2, seed=0, progress=False).numpy().shape == (1, 4, 8, 8, 1)


# ---- activation checkpointing ----


def _saved_bytes_and_grads(model, x, cond):
    """Bytes autograd keeps for backward during one forward, then the parameter gradients."""
    saved = []

    def pack(t):
        saved.append(t.untyped_storage().nbytes())
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, _steps(2), cond=cond)
    (out * torch.randn(out.shape, generator=_gen(3))).sum().backward()
    return sum(saved), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("whole_blocks, fused_norm", [(False, False), (False, True), (True, True)])
def test_recomputed_activations_give_the_same_gradients_from_fewer_saved_tensors(whole_blocks, fused_norm,
                                                                                  monkeypatch):
    """recompute_activations: norm-SiLU-FiLM and temporal attention run again in backward; alone and inside
    checkpointed blocks the gradients are those of the plain step. The fused norm keeps only its input
    already, so recomputing saves less beside it."""
    monkeypatch.setattr(layers.FrameNorm, "fused", fused_norm)
    model = _randomise(SpaceTimeUNet(_config(in_channels=3, cond_dim=8, dropout=0.1)), std=0.1).train()
    x = torch.randn(2, 3, 4, 16, 16, generator=_gen(1))
    cond = Cond(tokens=torch.randn(2, 3, 8, generator=_gen(2)))
    torch.manual_seed(0)
    full, grads_full = _saved_bytes_and_grads(model, x, cond)
    assert not model.recompute_activations
    model.recompute_activations = True
    assert model.recompute_activations
    assert all(m.recompute for m in model.modules() if isinstance(m, (ResBlock, TemporalAttention)))
    model.gradient_checkpointing = whole_blocks
    torch.manual_seed(0)
    kept, grads = _saved_bytes_and_grads(model, x, cond)
    if not whole_blocks:
        assert kept < (0.9 if fused_norm else 0.75) * full, (kept, full)
    assert grads.keys() == grads_full.keys() and len(grads_full) > 50
    for name in grads_full:
        torch.testing.assert_close(grads[name], grads_full[name], rtol=1e-4, atol=1e-5, msg=name)
    model.recompute_activations = False
    assert not any(m.recompute for m in model.modules() if isinstance(m, (ResBlock, TemporalAttention)))


def test_gradient_checkpointing_gives_the_same_gradients_from_fewer_saved_tensors():
    model = _randomise(SpaceTimeUNet(_config(in_channels=3, cond_dim=8, dropout=0.1)), std=0.1).train()
    x = torch.randn(2, 3, 4, 16, 16, generator=_gen(1))
    cond = Cond(tokens=torch.randn(2, 3, 8, generator=_gen(2)))
    torch.manual_seed(0)  # the same dropout masks: checkpointing replays the RNG state
    full, grads_full = _saved_bytes_and_grads(model, x, cond)
    model.gradient_checkpointing = True
    torch.manual_seed(0)
    kept, grads_ckpt = _saved_bytes_and_grads(model, x, cond)
    assert kept < 0.5 * full, (kept, full)
    assert grads_ckpt.keys() == grads_full.keys() and len(grads_full) > 50
    for name in grads_full:
        torch.testing.assert_close(grads_ckpt[name], grads_full[name], rtol=1e-4, atol=1e-5, msg=name)


def test_nearest_fill_puts_the_nearest_given_frame_at_every_unknown_frame():
    model = SpaceTimeUNet(_config(frame_conditioning=True, frame_fill="nearest"))
    x = torch.randn(2, 1, 6, 8, 8, generator=_gen(2))
    video = torch.randn(2, 1, 6, 8, 8, generator=_gen(3))
    mask = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 0, 1, 0, 0, 0]], dtype=torch.float32)
    stem_in = model.frame_input(x, FrameMask(mask=mask, frames=video * mask[:, None, :, None, None]))
    given, stem_mask = stem_in[:, 1:2], stem_in[:, 2]
    nearest = [[1, 1, 1, 4, 4, 4], [0, 0, 2, 2, 2, 2]]  # a tie goes to the earlier frame
    for b, sources in enumerate(nearest):
        for t, s in enumerate(sources):
            torch.testing.assert_close(given[b, :, t], video[b, :, s], rtol=0, atol=0)
    torch.testing.assert_close(stem_mask[:, :, 0, 0], mask, rtol=0, atol=0)  # the mask still says what is given
    zero = SpaceTimeUNet(_config(frame_conditioning=True))
    plain = zero.frame_input(x, FrameMask(mask=mask, frames=video * mask[:, None, :, None, None]))[:, 1:2]
    assert not plain[0, :, 0].any() and not given[0, :, 0].eq(0).all()
    nothing = model.frame_input(x, FrameMask(mask=torch.zeros(2, 6), frames=torch.zeros_like(video)))
    assert not nothing[:, 1:].any()


def test_frame_fill_is_checked():
    with pytest.raises(ValueError, match="model.frame_fill.*nearest"):
        _config(frame_conditioning=True, frame_fill="previous")
