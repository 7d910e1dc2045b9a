"""Building blocks of the space-time UNet: time embedding, per-frame norm, (2+1)D residual blocks, attention.

Every layer maps (B, C, T, H, W) -> (B, C', T, H, W). Only the temporal layers (the temporal conv
and temporal attention) mix frames; everything else acts on each frame alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

# ---- helpers ----


def timestep_embedding(step: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) diffusion steps, (B, dim) (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=step.device, dtype=torch.float32) / half)
    args = step.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def recomputed(enabled: bool, fn, *args):
    """fn(*args); if `enabled` and grad is on, only args are kept for backward and fn runs again there.

    For the cheap, memory-bound parts of a block (norm, SiLU, FiLM, attention over a few frames): their
    intermediates are most of a block's saved activations but little of its compute.
    """
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


# On a CPU without AMX tiles PyTorch's attention kernels run slower in bf16 than in float32 (with
# AVX-512-BF16: the flash kernel's backward 2-5x for spatial attention, its forward ~2x over 16 frames),
# so under bf16 autocast the self-attention layers compute in float32 there: train steps 8-10 % and
# one-clip denoiser calls 10-12 % faster at the peers benchmark's size
# (benchmarks/results/attention_precision.md). Cross-attention stays in bf16 (mixed there: its long
# queries cost more to cast than the kernel saves). Set False to keep bf16.
CPU_FLOAT32_ATTENTION = not getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", lambda: False)()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA with a float mask cast to q's dtype; bf16 CPU inputs compute in float32 if CPU_FLOAT32_ATTENTION."""
    if not (CPU_FLOAT32_ATTENTION and q.dtype == torch.bfloat16 and q.device.type == "cpu"):
        mask = mask.to(q.dtype) if mask is not None and mask.is_floating_point() else mask
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
        mask = mask.float() if mask is not None and mask.is_floating_point() else mask
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    return out.to(q.dtype)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (residual branches start as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame separately: statistics never mix frames or batch items."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h = rearrange(x, "b c t h w -> (b t) c h w")
        h = super().forward(h)
        return rearrange(h, "(b t) c h w -> b c t h w", b=b)


class Conv3d(nn.Conv3d):
    """nn.Conv3d that sends float32 CPU inputs to oneDNN, with faster weight gradients in training.

    PyTorch's backend choice, tuned for 2D, sends a small float32 batch (one clip, as in sampling
    without guidance) to the im2col kernel `slow_conv3d`, measured 6-8x slower than oneDNN here for
    the (1, 3, 3) and (3, 3, 3) kernels; oneDNN is also faster for the (3, 1, 1) kernel in training.
    When the weight needs a gradient and the input is channels-last-3d, oneDNN's 3D weight gradient
    (2-5x slower than its forward on a CPU without AMX) is avoided: a (1, k, k) kernel runs as a 2D
    convolution over the B*T frames (a view, no copy; oneDNN's 2D weight gradient is faster), and a
    (k, 1, 1) kernel takes its weight gradient from k GEMMs (`temporal_weight_grad`); frames with at
    most 16 output pixels take theirs from one GEMM over the unfolded patches (`patch_weight_grad`).
    A train step of configs/demo.yaml here is 10-16 % faster, of the peers benchmark's config A 13 %.
    `Conv3d.fast_weight_grad = False` uses oneDNN's 3D convolution in training too
    (benchmarks/train_step.py times a step both ways). Same parameters, same state-dict keys, same
    result up to float rounding. Under torch.compile the stock path is traced (the compiler chooses
    the kernel).
    """

    fast_weight_grad = True  # in training: per-frame kernels in 2D, weight gradients as GEMMs where faster

    def _onednn(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether this call takes the oneDNN route: float32 on the CPU, outside autocast and torch.compile."""
        return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and not torch.is_autocast_enabled("cpu")  # autocast casts at aten::conv3d, so keep that path
                and not torch.compiler.is_compiling()  # no fake-tensor kernel; inductor picks oneDNN itself
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self._onednn(x, weight):
            return super()._conv_forward(x, weight, bias)
        if (self.fast_weight_grad and torch.is_grad_enabled() and weight.requires_grad
                and x.is_contiguous(memory_format=torch.channels_last_3d)):
            k, stride, pad = self.kernel_size, self.stride, self.padding
            if k[0] == 1 and stride[0] == 1 and pad[0] == 0:  # per frame: a 2D convolution over B*T frames
                frames = rearrange(x, "b c t h w -> (b t) c h w")  # a view of (B, T, H, W, C) memory
                out_pixels = math.prod((n + 2 * p - kk) // s + 1 for n, p, kk, s in
                                       zip(x.shape[-2:], pad[1:], k[1:], stride[1:]))
                if out_pixels <= 16 and self.groups == 1 and self.dilation == (1, 1, 1):
                    out = _GemmWeightGrad.apply(frames, weight[:, :, 0], bias, pad[1:], stride[1:], patch_weight_grad)
                else:
                    out = torch.ops.aten.mkldnn_convolution(frames, weight[:, :, 0], bias, pad[1:], stride[1:],
                                                            self.dilation[1:], self.groups)
                return rearrange(out, "(b t) c h w -> b c t h w", b=x.shape[0])  # channels-last-3d again
            if k[1:] == (1, 1) and stride == (1, 1, 1) and pad[1:] == (0, 0) and self.dilation == (1, 1, 1) \
                    and self.groups == 1:  # across frames only
                return _GemmWeightGrad.apply(x, weight, bias, pad, stride, temporal_weight_grad)
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation,
                                                 self.groups)


class _GemmWeightGrad(torch.autograd.Function):
    """A convolution with oneDNN's forward and input gradient and `weight_grad`'s weight gradient (GEMMs, where
    oneDNN's float32 weight gradient is slow: 15-70 GFLOP/s on a CPU without AMX against 70-130 for the GEMMs)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple,
                stride: tuple, weight_grad) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.stride, ctx.weight_grad, ctx.has_bias = padding, stride, weight_grad, bias is not None
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, (1,) * len(padding), 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            n = len(ctx.padding)
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, ctx.stride, ctx.padding, (1,) * n,
                                                         False, (0,) * n, 1, (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            grad_w = ctx.weight_grad(x, grad, weight.shape, ctx.padding, ctx.stride)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum([0, *range(2, grad.ndim)])
        return grad_x, grad_w, grad_b, None, None, None


def patch_weight_grad(x: torch.Tensor, grad: torch.Tensor, shape: torch.Size, padding: tuple,
                      stride: tuple) -> torch.Tensor:
    """The weight gradient (C_out, C_in, kh, kw) of a 2D convolution: grad^T times the unfolded input patches.

    One GEMM of (C_out, N*Ho*Wo) by (N*Ho*Wo, kh*kw*C_in): the same FLOPs as the convolution's weight
    gradient; the patches take kh*kw times the input's memory, so this is for small frames.
    """
    (kh, kw), (ph, pw), (sh, sw) = shape[2:], padding, stride
    pixels = F.pad(rearrange(x, "n c h w -> n h w c"), (0, 0, pw, pw, ph, ph))  # (N, H + 2 ph, W + 2 pw, C_in)
    patches = pixels.unfold(1, kh, sh).unfold(2, kw, sw)  # (N, Ho, Wo, C_in, kh, kw), a view
    patches = rearrange(patches, "n ho wo c i j -> (n ho wo) (i j c)")  # the copy
    g = rearrange(grad, "n c h w -> (n h w) c")
    return rearrange(g.t() @ patches, "o (i j c) -> o c i j", i=kh, j=kw)


def temporal_weight_grad(x: torch.Tensor, grad: torch.Tensor, shape: torch.Size, padding: tuple,
                         stride: tuple) -> torch.Tensor:
    """The weight gradient (C_out, C_in, k, 1, 1) of a (k, 1, 1) convolution, stride 1, `pad` zero frames each side.

    out[t] = sum_i W_i x[t + i - pad], so dL/dW_i = sum over clips, frames and pixels of grad[t] x[t + i - pad]^T:
    one GEMM per tap over the zero-padded frames; the same FLOPs as the convolution's weight gradient.
    """
    assert shape[3:] == (1, 1) and tuple(stride) == (1, 1, 1) and tuple(padding[1:]) == (0, 0), (shape, stride, padding)
    k, pad = shape[2], padding[0]
    t, h, w = grad.shape[2:]  # output frames: T + 2 pad - k + 1
    frames = F.pad(rearrange(x, "b c t h w -> b t (h w) c"), (0, 0, 0, 0, pad, pad))  # (B, T + 2 pad, HW, C_in)
    frames = rearrange(frames, "b t p c -> b (t p) c")
    g = rearrange(grad, "b c t h w -> b c (t h w)")  # (B, C_out, T*HW): a view of channels-last-3d memory
    hw = h * w
    taps = [torch.bmm(g, frames[:, i * hw:(i + t) * hw]).sum(0) for i in range(k)]  # k x (C_out, C_in)
    return rearrange(torch.stack(taps), "k o i -> o i k 1 1")


def _mkldnn_conv_flops(x_shape, w_shape, _bias, _padding, _stride, _dilation, _groups, *, out_shape) -> int:
    """FLOPs of aten.mkldnn_convolution, counted as for aten.convolution."""
    return conv_flop_count(x_shape, w_shape, out_shape)


def flop_counter(display: bool = False) -> FlopCounterMode:
    """torch.utils.flop_counter.FlopCounterMode that also counts the oneDNN route of `Conv3d` (its backward is
    aten.convolution_backward, which the stock counter knows)."""
    return FlopCounterMode(display=display, custom_mapping={torch.ops.aten.mkldnn_convolution: _mkldnn_conv_flops})


def spatial_conv(c_in: int, c_out: int, stride: int = 1) -> Conv3d:
    """A 3x3 convolution applied to each frame, (1, 3, 3) kernel."""
    return Conv3d(c_in, c_out, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1))


class TemporalConv(Conv3d):
    """A size-3 convolution across frames at each pixel, initialised to the identity."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.weight[:, :, 1, 0, 0].copy_(torch.eye(channels))


# ---- blocks ----


class ResBlock(nn.Module):
    """Factorised (2+1)D residual block: per-frame 3x3 conv then temporal conv, twice, with time FiLM.

    `recompute = True`: in training the two norm-SiLU activations keep only their inputs for backward
    and run again there (same gradients, less memory).
    """

    recompute = False

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = FrameNorm(groups, c_in)
        self.conv1 = spatial_conv(c_in, c_out)
        self.time1 = TemporalConv(c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out)  # scale and shift from the step embedding
        self.norm2 = FrameNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_(spatial_conv(c_out, c_out))
        self.time2 = TemporalConv(c_out)
        self.skip = Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T, H, W), emb (B, E) or per frame (B, T, E) -> (B, C_out, T, H, W)."""
        h = self.time1(self.conv1(recomputed(self.recompute, self.act1, x)))
        emb = emb if emb.ndim == 3 else emb[:, None]  # (B, T or 1, E)
        scale, shift = rearrange(self.film(F.silu(emb)), "b t (two c) -> two b c t 1 1", two=2)
        h = self.time2(self.conv2(self.dropout(recomputed(self.recompute, self.act2, h, scale, shift))))
        return self.skip(x) + h

    def act1(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU(norm1(x))."""
        return F.silu(self.norm1(x))

    def act2(self, h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """SiLU(norm2(h) * (1 + scale) + shift): the FiLM-modulated activation; scale, shift (B, C, T or 1, 1, 1)."""
        return F.silu(self.norm2(h) * (1 + scale) + shift)


class SpatialAttention(nn.Module):
    """Self-attention among the pixels of each frame (pre-norm, residual)."""

    def __init__(self, channels: int, head_dim: int, *, groups: int):
        super().__init__()
        self.heads = channels // head_dim
        self.norm = FrameNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> same shape."""
        b, c, t, h, w = x.shape
        seq = rearrange(self.norm(x), "b c t h w -> (b t) (h w) c")
        q, k, v = rearrange(self.qkv(seq), "n l (three nh d) -> three n nh l d", three=3, nh=self.heads)
        out = attention(q, k, v)  # (B*T, nh, H*W, d)
        out = self.proj(rearrange(out, "n nh l d -> n l (nh d)"))
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", b=b, h=h)


class TemporalAttention(nn.Module):
    """Self-attention among the frames at each pixel, with a learned bias per relative frame offset.

    `recompute = True`: in training the norm, qkv projection and attention keep only their input for
    backward and run again there (same gradients, less memory: on CPU the learned bias sends PyTorch
    to its math attention, which keeps the scores and probabilities).
    """

    recompute = False

    def __init__(self, channels: int, head_dim: int, *, groups: int, max_relative_position: int = 32):
        super().__init__()
        self.heads = channels // head_dim
        self.max_rel = max_relative_position
        self.norm = FrameNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.rel_bias = nn.Parameter(torch.zeros(self.heads, 2 * max_relative_position + 1))
        self.proj = zero_(nn.Linear(channels, channels))

    def relative_bias(self, num_frames: int, device=None) -> torch.Tensor:
        """The additive attention bias (nh, T, T): entry [i, j] depends only on j - i (clipped)."""
        pos = torch.arange(num_frames, device=device)
        offset = (pos[None, :] - pos[:, None]).clamp(-self.max_rel, self.max_rel) + self.max_rel  # (T, T)
        return self.rel_bias[:, offset]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> same shape."""
        b, c, t, h, w = x.shape
        out = self.proj(recomputed(self.recompute, self.attend, x, self.relative_bias(t, x.device)))
        return x + rearrange(out, "(b h w) t c -> b c t h w", b=b, h=h, w=w)

    def attend(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attention among the frames of norm(x), x (B, C, T, H, W), bias (nh, T, T) -> (B*H*W, T, C) before proj."""
        # contiguous: for one clip this is a strided view, and F.linear on a view that does not fold into a matrix
        # runs a batched matmul over a copy of the weight per pixel when the weight needs no grad (as in sampling)
        seq = rearrange(self.norm(x), "b c t h w -> (b h w) t c").contiguous()
        q, k, v = rearrange(self.qkv(seq), "n t (three nh d) -> three n nh t d", three=3, nh=self.heads)
        # a 4-D mask (1, nh, T, T), broadcast over pixels: with a 3-D one PyTorch's CPU dispatch skips the
        # flash kernel (measured 1.6x slower there)
        out = attention(q, k, v, bias[None])  # (B*H*W, nh, T, d)
        return rearrange(out, "n nh t d -> n t (nh d)")


class CrossAttention(nn.Module):
    """Every pixel of every frame attends to the condition tokens, plus a learned null token (pre-norm, residual).

    The null token is always present, so a clip whose tokens are all masked (dropped or absent)
    attends to it alone: no condition and a dropped condition give the same output.
    """

    def __init__(self, channels: int, cond_dim: int, head_dim: int, *, groups: int):
        super().__init__()
        self.heads = channels // head_dim
        self.norm = FrameNorm(groups, channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(cond_dim, 2 * channels)
        self.null_kv = nn.Parameter(torch.zeros(2 * channels))
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, C, T, H, W), tokens (B, L, D) or None, mask (B, L) bool -> (B, C, T, H, W)."""
        b, c, t, h, w = x.shape
        kv = self.null_kv.to(x.dtype).expand(b, 1, -1)  # (B, 1, 2C)
        keep = torch.ones(b, 1, dtype=torch.bool, device=x.device)
        if tokens is not None:
            kv = torch.cat([kv, self.kv(tokens.to(kv.dtype))], dim=1)  # (B, 1 + L, 2C)
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
            keep = torch.cat([keep, mask], dim=1)
        seq = rearrange(self.norm(x), "b c t h w -> b (t h w) c")
        q = rearrange(self.q(seq), "b n (nh d) -> b nh n d", nh=self.heads)
        k, v = rearrange(kv, "b l (two nh d) -> two b nh l d", two=2, nh=self.heads)
        out = F.scaled_dot_product_attention(q, k, v.to(q.dtype), attn_mask=rearrange(keep, "b l -> b 1 1 l"))
        out = self.proj(rearrange(out, "b nh n d -> b n (nh d)"))
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h)


class Downsample(nn.Module):
    """Halve H and W with a strided per-frame conv; T is untouched."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = spatial_conv(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H/2, W/2)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (nearest) followed by a per-frame conv; T is untouched."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = spatial_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))
