"""Building blocks of the space-time UNet: time embedding, per-frame norm, (2+1)D residual blocks, attention.

Which kernel computes each convolution and attention, and the custom gradients, live in `kernels.py`.

Every layer maps (B, C, T, H, W) -> (B, C', T, H, W). Only the temporal layers (the temporal conv
and temporal attention) mix frames; everything else acts on each frame alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .kernels import Conv3d, attention, norm_act, norm_act_pays, recomputed

# ---- helpers ----


def timestep_embedding(step: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) diffusion steps, (B, dim) (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=step.device, dtype=torch.float32) / half)
    args = step.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def zero_(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place (residual branches start as the identity)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FrameNorm(nn.GroupNorm):
    """GroupNorm over each frame separately: statistics never mix frames or batch items.

    `forward(x, scale, shift, silu=True)` also applies FiLM (`* (1 + scale) + shift`) and SiLU: in a
    few passes each way (`kernels.norm_act`) where that is faster (`kernels.norm_act_pays`: small
    frames, few channels per group, on a CPU), else PyTorch's group norm and the elementwise ops one by
    one. `FrameNorm.fused = False` always takes the latter (same result up to float rounding;
    benchmarks time both).
    """

    fused = True

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
                silu: bool = False) -> torch.Tensor:
        """x (B, C, T, H, W); scale, shift (B, C, T or 1, 1, 1) or None -> (B, C, T, H, W)."""
        if self.fused and norm_act_pays(x, self.num_groups):
            return norm_act(x, self.num_groups, self.weight, self.bias, self.eps, scale, shift, silu)
        b = x.shape[0]
        h = rearrange(super().forward(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) c h w -> b c t h w", b=b)
        h = h if scale is None else h * (1 + scale)
        h = h if shift is None else h + shift
        return F.silu(h) if silu else h


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
        return self.norm1(x, silu=True)

    def act2(self, h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """SiLU(norm2(h) * (1 + scale) + shift): the FiLM-modulated activation; scale, shift (B, C, T or 1, 1, 1)."""
        return self.norm2(h, scale, shift, silu=True)


class SpatialAttention(nn.Module):
    """Self-attention among the pixels of each frame (pre-norm, residual); `whole_clip`: among all pixels of all frames.

    Space-time attention lets a pixel find an object wherever it moved in the other frames, which
    per-pixel temporal attention cannot; at a low resolution its T*H*W tokens are few.
    """

    def __init__(self, channels: int, head_dim: int, *, groups: int, whole_clip: bool = False):
        super().__init__()
        self.heads, self.whole_clip = channels // head_dim, whole_clip
        self.norm = FrameNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> same shape."""
        b, c, t, h, w = x.shape
        tokens = "b (t h w) c" if self.whole_clip else "(b t) (h w) c"  # a sequence per clip or per frame
        seq = rearrange(self.norm(x), f"b c t h w -> {tokens}")
        q, k, v = rearrange(self.qkv(seq), "n l (three nh d) -> three n nh l d", three=3, nh=self.heads)
        out = attention(q, k, v)  # (B or B*T, nh, L, d)
        out = self.proj(rearrange(out, "n nh l d -> n l (nh d)"))
        return x + rearrange(out, f"{tokens} -> b c t h w", b=b, t=t, h=h)


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
