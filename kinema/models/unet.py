"""SpaceTimeUNet: a video UNet with factorised (2+1)D residual blocks, temporal and spatial attention.

Down/up-sampling acts on H and W only, so the network runs on any number of frames. It knows
nothing of noise schedules: it maps (x_t, step) to an output the diffusion code interprets.
With `patch_size` p > 1 each p x p patch of pixels is folded into channels before the stem and
unfolded after the head (Hoogeboom et al. 2023, "simple diffusion"): the same levels, with the
same widths, run on a p-times smaller grid, for about 1/p^2 of the FLOPs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from einops import rearrange, repeat
from torch import nn

from ..config import UNetConfig
from ..runtime import available_memory
from ..types import Cond, FrameMask
from .cache import FeatureCache
from .kernels import recomputed
from .layers import (
    CrossAttention,
    Downsample,
    FrameNorm,
    ResBlock,
    SpatialAttention,
    TemporalAttention,
    Upsample,
    spatial_conv,
    timestep_embedding,
    zero_,
)

# ---- one level's block: residual block + optional attention ----


class Block(nn.Module):
    """ResBlock, then spatial self-attention (low resolution), cross-attention (if conditioned), temporal attention."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, cfg: UNetConfig, *, level: int):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, groups=cfg.norm_groups, dropout=cfg.dropout)
        self.spatial = (SpatialAttention(c_out, cfg.head_dim, groups=cfg.norm_groups,
                                         whole_clip=level in cfg.spacetime_attention_levels)
                        if level in cfg.spatial_attention_levels else nn.Identity())
        self.cross = (CrossAttention(c_out, cfg.cond_dim, cfg.head_dim, groups=cfg.norm_groups)
                      if cfg.cond_dim else None)
        self.temporal = (TemporalAttention(c_out, cfg.head_dim, groups=cfg.norm_groups,
                                           max_relative_position=cfg.max_relative_position)
                         if cfg.temporal_attention else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor, cond: Optional[Cond] = None) -> torch.Tensor:
        """(B, C_in, T, H, W), emb (B, E) or (B, T, E) -> (B, C_out, T, H, W)."""
        h = self.spatial(self.res(x, emb))
        if self.cross is not None:
            h = self.cross(h, cond.tokens if cond else None, cond.mask if cond else None)
        return self.temporal(h)


# ---- the UNet ----


class SpaceTimeUNet(nn.Module):
    """Video UNet: (x (B, C, T, H, W), step (B,)) -> (B, C or 2C, T, H, W).

    Inside, activations are channels-last-3d (stored B, T, H, W, C): oneDNN and cuDNN run the
    convolutions faster in that layout (bf16 on AMX only reaches its speed there), and the per-frame
    norm and spatial attention become free views. Set `channels_last = False` to keep PyTorch's
    default layout; the output is the same up to float rounding and always contiguous.
    `gradient_checkpointing = True` trades compute for memory in training: each block keeps only its
    input and runs its forward again during backward (same gradients, about a third more compute).
    `recompute_activations = True` does so only for the cheap, memory-bound parts (norm-SiLU-FiLM in the
    res blocks, the temporal attention): 30-40 % fewer live tensors in a train step for ~2 % more FLOPs with
    PyTorch's norm; the fused norm (`FrameNorm.fused`) keeps only its input already, so ~15-20 % beside it.
    """

    channels_last = True
    gradient_checkpointing = False  # keep only each block's input for backward; recompute the rest there

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch = cfg.channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.cond_dim:  # no bias: a zero (dropped) vector adds exactly nothing
            self.pooled_proj = nn.Linear(cfg.cond_dim, emb_dim, bias=False)
            self.frame_proj = nn.Linear(cfg.cond_dim, emb_dim, bias=False)
        p2 = cfg.patch_size ** 2  # a p x p patch of pixels becomes p^2 channels (Simple Diffusion's patching)
        self.stem = spatial_conv(cfg.input_channels * p2, ch)

        widths = [ch * m for m in cfg.channel_mult]
        self.down, skips, c = nn.ModuleList(), [ch], ch
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(Block(c, width, emb_dim, cfg, level=level))
                c = width
                skips.append(c)
            if level < len(widths) - 1:
                self.down.append(Downsample(c))
                skips.append(c)

        deepest = len(widths) - 1  # the middle: attention as the deepest level has it, at least per frame
        mid_cfg = replace(cfg, spatial_attention_levels=(*cfg.spatial_attention_levels, deepest))
        self.mid = nn.ModuleList([Block(c, c, emb_dim, mid_cfg, level=deepest), Block(c, c, emb_dim, cfg, level=-1)])

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(Block(c + skips.pop(), width, emb_dim, cfg, level=level))
                c = width
            if level > 0:
                self.up.append(Upsample(c))
        assert not skips, "every skip connection must be consumed"

        self.head = nn.Sequential(FrameNorm(cfg.norm_groups, c), nn.SiLU(),
                                  zero_(spatial_conv(c, cfg.out_channels * p2)))
        # the top level's layers, the only ones a call reusing cached deep features runs (see .cache)
        downs = [i for i, layer in enumerate(self.down) if isinstance(layer, Downsample)]
        ups = [i for i, layer in enumerate(self.up) if isinstance(layer, Upsample)]
        self.top_down = downs[0] if downs else None  # down layers before the first Downsample
        self.top_up = ups[-1] + 1 if ups else None  # up layers from the one after the last Upsample

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the problem if x cannot go through this network."""
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"expected a video (B, {cfg.in_channels}, T, H, W), got shape {tuple(x.shape)}")
        f = cfg.downsample_factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"H and W must be divisible by {f} (patch_size {cfg.patch_size} x 2^(levels-1) for "
                             f"channel_mult {cfg.channel_mult}), got H={x.shape[-2]}, W={x.shape[-1]}")

    def frame_input(self, x: torch.Tensor, frames: Optional[FrameMask], maps: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """The stem's input: x, [known frames (0 where unknown), mask] on channels (MCVD), condition maps."""
        parts = [x]
        b, _, t, h, w = x.shape
        if not self.config.frame_conditioning:
            if frames is not None and bool(frames.mask.any()):
                raise ValueError("this model was trained without frame conditioning (model.frame_conditioning "
                                 "is false); it cannot take known frames")
        elif frames is None:
            parts += [torch.zeros_like(x), x.new_zeros(b, 1, t, h, w)]
        else:
            if frames.mask.shape != (b, t) or frames.frames.shape != x.shape:
                raise ValueError(f"frame mask {tuple(frames.mask.shape)} / frames {tuple(frames.frames.shape)} do "
                                 f"not match the video {tuple(x.shape)}")
            mask = repeat(frames.mask.to(x.dtype), "b t -> b 1 t h w", h=h, w=w)
            given = frames.frames.to(x.dtype) * mask
            if self.config.frame_fill == "nearest":
                given = fill_nearest(given, frames.mask)
            parts += [given, mask]
        m = self.config.map_channels
        if maps is not None and maps.shape != (b, m, t, h, w):
            raise ValueError(f"condition maps {tuple(maps.shape)} do not fit this model's (B, M, T, H, W) = "
                             f"{(b, m, t, h, w)} (model.map_channels = {m})")
        if m:
            parts.append(x.new_zeros(b, m, t, h, w) if maps is None else maps.to(x.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else x  # (B, C', T, H, W)

    def embedding(self, step: torch.Tensor, x: torch.Tensor, cond: Optional[Cond]) -> torch.Tensor:
        """The FiLM input: step embedding + pooled condition (B, E), + frame-aligned conditions -> (B, T, E)."""
        emb = self.time_mlp(timestep_embedding(step.reshape(-1).expand(x.shape[0]), self.config.channels))
        if cond is None:
            return emb
        if not self.config.cond_dim:
            raise ValueError("this model was trained without conditions (model.cond_dim is 0); it takes no cond")
        if cond.pooled is not None:
            emb = emb + self.pooled_proj(cond.pooled.to(emb.dtype))
        if cond.per_frame is not None:
            if cond.per_frame.shape[:2] != (x.shape[0], x.shape[2]):
                raise ValueError(f"per-frame condition {tuple(cond.per_frame.shape)} does not match "
                                 f"(B, T) = {(x.shape[0], x.shape[2])} of the video")
            emb = emb[:, None] + self.frame_proj(cond.per_frame.to(emb.dtype))  # (B, T, E)
        return emb

    def forward(self, x: torch.Tensor, step: torch.Tensor, frames: Optional[FrameMask] = None,
                cond: Optional[Cond] = None, cache: Optional[FeatureCache] = None) -> torch.Tensor:
        """x (B, C, T, H, W), step (B,) diffusion step, known frames, conditions -> (B, out_channels, T, H, W).

        With a `cache`, a full call stores the deep levels' output in it, and a call with `cache.reuse`
        runs only the top level on the stored one (DeepCache; see kinema.models.cache).
        """
        self.check_input(x)
        reuse = cache is not None and cache.reuse
        if cache is not None and self.top_down is None:
            raise ValueError("feature caching needs at least two levels (model.channel_mult has one entry)")
        if reuse and (cache.deep is None or cache.deep.shape[0] != x.shape[0] or cache.deep.shape[2] != x.shape[2]):
            shape = None if cache.deep is None else tuple(cache.deep.shape)
            raise ValueError(f"cache.reuse is set but the cached features {shape} do not fit the input {tuple(x.shape)}")
        emb = self.embedding(step, x, cond)  # (B, E) or (B, T, E)
        h = self.frame_input(x, frames, None if cond is None else cond.maps)  # (B, C', T, H, W)
        p = self.config.patch_size
        if p > 1:
            h = rearrange(h, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        h = self.stem(h)  # (B, ch, T, H/p, W/p)
        if self.channels_last:  # every later conv, norm and elementwise op keeps this layout
            h = h.contiguous(memory_format=torch.channels_last_3d)
        hs = [h]
        block = self.checkpointed if self.gradient_checkpointing and torch.is_grad_enabled() else Block.__call__
        for layer in self.down[:self.top_down] if reuse else self.down:
            h = block(layer, h, emb, cond) if isinstance(layer, Block) else layer(h)
            hs.append(h)
        if reuse:  # the deeper levels' output from the last full call
            h, first_up = cache.deep, self.top_up
        else:
            for layer in self.mid:
                h = block(layer, h, emb, cond)
            first_up = 0
        for i, layer in enumerate(self.up[first_up:], start=first_up):
            if isinstance(layer, Block):
                h = block(layer, torch.cat([h, hs.pop()], dim=1), emb, cond)
            else:
                h = layer(h)
            if cache is not None and not reuse and i == self.top_up - 1:
                cache.deep = h  # (B, C, T, H/p, W/p): what the top level's up blocks take
        out = self.head(h)  # (B, out_channels * p^2, T, H/p, W/p)
        if p > 1:
            out = rearrange(out, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
        return out.contiguous()

    @property
    def recompute_activations(self) -> bool:
        """Whether the res blocks and temporal attentions recompute their cheap parts in backward."""
        return any(m.recompute for m in self.modules() if isinstance(m, (ResBlock, TemporalAttention)))

    @recompute_activations.setter
    def recompute_activations(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, (ResBlock, TemporalAttention)):
                m.recompute = bool(on)

    @staticmethod
    def checkpointed(layer: Block, h: torch.Tensor, emb: torch.Tensor, cond: Optional[Cond]) -> torch.Tensor:
        """layer(h, emb, cond), saving only the inputs for backward (activation checkpointing)."""
        return recomputed(True, layer, h, emb, cond)


def fill_nearest(given: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Known frames (B, C, T, H, W) with every unknown frame replaced by its nearest known one (the earlier on a tie).

    A clip with no known frame stays as it is (zeros).
    """
    t = mask.shape[1]
    pos = torch.arange(t, device=mask.device)
    dist = (pos[:, None] - pos[None, :]).abs().float() + 0.5 * (pos[None, :] > pos[:, None])  # (T_to, T_from)
    dist = torch.where(mask[:, None, :] > 0, dist, torch.inf)  # (B, T_to, T_from): only known frames are sources
    source = dist.argmin(dim=-1)  # (B, T_to)
    index = source[:, None, :, None, None].expand(-1, given.shape[1], -1, *given.shape[-2:])
    return torch.gather(given, 2, index)  # (B, C, T, H, W); all-unknown rows gather frame 0 of zeros


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def activation_bytes(config: UNetConfig, batch: int, frames: int, height: int, width: int, *,
                     grad: bool = False) -> int:
    """Estimated peak bytes of the activations of one float32 call on (batch, C, frames, height, width).

    Without grad the skip connections stay alive and a few tensors of the widest level are in flight;
    with grad every block keeps about a dozen tensors of its width for backward. Attention adds its
    score matrices where they are formed in full (temporal attention: its relative bias takes PyTorch's math
    path; spatial attention runs the flash kernel, O(pixels)).
    Calibrated against the peak RSS of real calls of the bundled model (inference at 32 and 128 px, training
    at 32 and 64 px: 0.7-1.4x the measured); an estimate to refuse what cannot fit before allocating, not an
    accounting.
    """
    p = config.patch_size
    heads_of = [config.channels * m // config.head_dim for m in config.channel_mult]
    kept, widest, scores = 0, 0, 0
    for level, mult in enumerate(config.channel_mult):
        c = config.channels * mult
        pixels = max(1, height // p // 2**level) * max(1, width // p // 2**level)
        blocks = 2 * config.num_res_blocks + 1 + (2 if level == len(config.channel_mult) - 1 else 0)  # down, up, mid
        per_block = 22 if grad else 0
        kept += frames * pixels * c * ((config.num_res_blocks + 1) + blocks * per_block)
        widest = max(widest, frames * pixels * 3 * c)  # an up block's concatenated input, its norm and output
        temporal = pixels * heads_of[level] * frames**2 if config.temporal_attention else 0
        scores = max(scores, 3 * temporal * (blocks if grad else 1))
    return 4 * batch * (kept + 4 * widest + scores)


def check_activation_memory(config: UNetConfig, batch: int, frames: int, height: int, width: int, *, grad: bool,
                            device: str, what: str) -> int:
    """Refuse, before allocating, a call whose estimated activations exceed the memory free on `device`.

    `what` names the user's options behind the call (e.g. "num_videos=1000 x 16 frames"); returns the estimate.
    """
    need = activation_bytes(config, batch, frames, height, width, grad=grad)
    free = available_memory(device)
    if free is not None and need > free:
        raise ValueError(f"{what} at {height}x{width} needs about {need / 2**30:.1f} GiB of activations in one "
                         f"network call{' with gradients' if grad else ''}, more than the {free / 2**30:.1f} GiB "
                         f"free on {device}; ask for fewer clips, frames or pixels at a time")
    return need
