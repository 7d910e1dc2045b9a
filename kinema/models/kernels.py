"""CPU kernel routing and custom autograd for the UNet's layers: which kernel computes a convolution or an
attention, and gradients computed where PyTorch's own are slow on a CPU.

`Conv3d` sends float32 CPU work to oneDNN and takes weight gradients from GEMMs where oneDNN's are slow;
`attention` computes bf16 self-attention in float32 on CPUs without AMX; `recomputed` reruns cheap,
memory-bound parts in backward; `flop_counter` counts FLOPs along these routes. `layers.py` builds the
blocks from them. Every route is measured in `benchmarks/` and can be switched off.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import rearrange
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

# ---- activation recomputation ----


def recomputed(enabled: bool, fn, *args):
    """fn(*args); if `enabled` and grad is on, only args are kept for backward and fn runs again there.

    For the cheap, memory-bound parts of a block (norm, SiLU, FiLM, attention over a few frames): their
    intermediates are most of a block's saved activations but little of its compute.
    """
    if enabled and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


# ---- per-frame group norm, FiLM and SiLU in one pass each way ----


def frames_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T, H*W, C), a view in either memory layout (free for channels-last-3d)."""
    return x.permute(0, 2, 3, 4, 1).flatten(2, 3)


def norm_act(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
             scale: torch.Tensor | None = None, shift: torch.Tensor | None = None, silu: bool = False) -> torch.Tensor:
    """GroupNorm of each frame of x (B, C, T, H, W), then `* (1 + scale) + shift`, then SiLU if `silu`.

    scale, shift: (B, C, T or 1, 1, 1) or None. Equals `F.silu(group_norm(frame) * (1 + scale) + shift)`
    up to float rounding, in x's dtype and memory layout. PyTorch's CPU group norm on small channels-last
    bf16 frames with few channels per group runs 10-20x slower than on contiguous ones (`norm_act_pays`
    says where this pays), and FiLM and SiLU each add a pass and keep a tensor for backward; here each
    direction is a few passes over a (B, T, H*W, C) view (a view in either layout) and only x and
    per-frame statistics are kept for backward. Train steps of the bundled recipe: 15 % faster at
    patch 2, 8 % at patch 1 (benchmarks/results/train_throughput.md).
    """
    b, c, t = x.shape[:3]
    if c % groups:
        raise ValueError(f"{c} channels do not split into {groups} groups")
    ones = x.new_ones(c, dtype=_acc(x))
    weight = ones if weight is None else weight
    bias = torch.zeros_like(ones) if bias is None else bias
    # contiguous (B, T, C): a strided per-channel operand stops the full-size passes from vectorising over C
    k = ones.expand(b, 1, c) if scale is None else (1 + rearrange(scale, "b c t 1 1 -> b t c").to(ones.dtype)).contiguous()
    shift = torch.zeros_like(k) if shift is None else rearrange(shift, "b c t 1 1 -> b t c").to(ones.dtype).contiguous()
    out = _NormAct.apply(x, groups, eps, weight, bias, k, shift, silu)  # (B, T, H*W, C)
    return rearrange(out, "b t (h w) c -> b c t h w", h=x.shape[3])


def norm_act_pays(x: torch.Tensor, groups: int) -> bool:
    """Whether `norm_act` beats PyTorch's group norm for x (B, C, T, H, W): on the CPU, at most 8 channels per
    group and at most 256 pixels per frame.

    PyTorch's channels-last CPU kernel is slow where it loops over many small groups of frames with
    few pixels (bf16, 2 cores, forward + backward with SiLU: 8.7 against 3.2 ms at 128 frames x 32
    channels x 16 x 16, 2.6 against 2.0 at 128 x 64 x 8 x 8) and fast elsewhere (13.0 against 14.0 ms
    at 16 frames x 48 x 64 x 64, 1.3 against 2.4 at 32 x 384 x 8 x 8; forward alone 1.9 against
    5.4 ms at 16 x 48 x 64 x 64). On a GPU its own fused kernel is the better one.
    """
    return x.device.type == "cpu" and x.shape[1] // groups <= 8 and x.shape[3] * x.shape[4] <= 256


class _NormAct(torch.autograd.Function):
    """`norm_act` on canonical shapes: per-channel multiplier k and shift (B, T or 1, C); returns (B, T, L, C).

    Memory traffic decides the speed, so every full-size pass reads and writes x's dtype (bf16 under
    autocast; a reduction accumulates in float32 and rounds only its small result). x is centred on
    a first estimate of its group mean, rounded to x's dtype, before anything is summed or scaled:
    the sums are then of small numbers and the remaining offset is carried in float32, so a large
    mean costs no precision (the result is as close to float64's as PyTorch's own bf16 group norm).
    """

    @staticmethod
    def forward(ctx, x, groups, eps, weight, bias, k, shift, silu):
        xv, acc = frames_last(x), _acc(x)  # (B, T, L, C)
        n = xv.shape[2] * xv.shape[3] // groups  # elements per group
        centre = _group_mean(xv.sum(2).to(acc), groups, n).to(x.dtype)  # (B, T, C)
        xc = xv - centre[:, :, None]
        offset = _group_mean(xc.sum(2).to(acc), groups, n)  # mean - centre
        var = _group_mean((xc * xc).sum(2).to(acc), groups, n) - offset * offset
        rstd = torch.rsqrt(var.clamp_min(0) + eps)
        a, c = _coefficients(x.dtype, offset, rstd, weight, bias, k, shift)
        z = xc.mul_(a[:, :, None]).add_(c[:, :, None])  # the normalised, modulated x
        ctx.save_for_backward(x, weight, bias, k, shift, centre, offset, rstd)
        ctx.groups, ctx.silu = groups, silu
        return F.silu(z, inplace=True) if silu else z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, bias, k, shift, centre, offset, rstd = ctx.saved_tensors
        dt, acc = x.dtype, offset.dtype
        xc = frames_last(x) - centre[:, :, None]  # (B, T, L, C) in x's dtype
        gz = grad.to(dt)
        if ctx.silu:
            a, c = _coefficients(dt, offset, rstd, weight, bias, k, shift)
            gz = torch.ops.aten.silu_backward(gz, torch.addcmul(c[:, :, None], xc, a[:, :, None]))
        s_gz = gz.sum(2).to(acc)  # (B, T, C)
        s_gzxhat = ((gz * xc).sum(2).to(acc) - offset * s_gz) * rstd  # the sum of gz * xhat
        w, b = weight.to(acc), bias.to(acc)
        e = w * k  # d z / d xhat per channel
        # gx = rstd (gxhat - mean_g(gxhat) - xhat mean_g(gxhat xhat)), gxhat = gz e: gz * ga + xc * gb + gc
        n = x.shape[3] * x.shape[4] * x.shape[1] // ctx.groups  # elements per group
        m1, m2 = _group_mean(e * s_gz, ctx.groups, n), _group_mean(e * s_gzxhat, ctx.groups, n)
        ga, gb = rstd * e, -rstd * rstd * m2
        gc = -rstd * m1 - gb * offset
        gx = torch.addcmul(gc.to(dt)[:, :, None], gz, ga.to(dt)[:, :, None]).addcmul_(xc, gb.to(dt)[:, :, None])
        g_k = w * s_gzxhat + b * s_gz  # (B, T, C)
        s_gz_k = s_gz
        if k.shape[1] == 1:  # one FiLM per clip: sum over its frames
            g_k, s_gz_k = g_k.sum(1, keepdim=True), s_gz.sum(1, keepdim=True)
        g_w = (k * s_gzxhat).sum((0, 1)) if ctx.needs_input_grad[3] else None
        g_b = (k * s_gz).sum((0, 1)) if ctx.needs_input_grad[4] else None
        return rearrange(gx, "b t (h w) c -> b c t h w", h=x.shape[3]), None, None, g_w, g_b, g_k, s_gz_k, None


def _coefficients(dtype, offset, rstd, weight, bias, k, shift) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel a, c (B, T, C) in `dtype`: the modulated norm(x) * w + b = (x - centre) * a + c."""
    a = rstd * weight.to(k.dtype) * k
    return a.to(dtype), (bias.to(k.dtype) * k + shift - offset * a).to(dtype)


def _acc(x: torch.Tensor) -> torch.dtype:
    """The dtype norm statistics and arithmetic run in: float32, or x's if wider."""
    return torch.promote_types(x.dtype, torch.float32)


def _group_mean(per_channel: torch.Tensor, groups: int, n: int) -> torch.Tensor:
    """Per-channel sums (B, T, C) -> their group's sum / n, repeated over the group's channels (B, T, C)."""
    sums = rearrange(per_channel, "b t (g c) -> b t g c", g=groups).sum(-1, keepdim=True) / n
    return rearrange(sums.expand(-1, -1, -1, per_channel.shape[-1] // groups), "b t g c -> b t (g c)")


# ---- attention ----


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


# ---- convolution ----


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
