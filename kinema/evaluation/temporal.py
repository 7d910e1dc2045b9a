"""Temporal metrics: occlusion-masked warping error, a flicker index of the static background, and the
end-point error of a flow network on synthetic translations with known flow.

Videos are (B, C, T, H, W) in [-1, 1]; every metric returns one value per clip, (B,).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..data.datasets import _digit_sprites, digit_split
from ..models.flow import FlowNet, end_point_error, occlusion_mask, warp

# ---- warping error ----


@torch.no_grad()
def warping_error(video: Tensor, flow_net: FlowNet, batch: int = 256) -> Tensor:
    """Mean |warp(frame t+1, flow t->t+1) - frame t| over pixels visible in both frames, per clip (B,).

    The flow is estimated on the clip itself, as the usual warping-error metric does; values are in the
    units of the video ([-1, 1] range, so 0.02 = 1 % of full scale).
    """
    _check_video(video, min_frames=2)
    b, t = video.shape[0], video.shape[2]
    a = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w").float()
    n = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w").float()
    errors = []
    for i in range(0, a.shape[0], batch):
        f1, f2 = a[i:i + batch], n[i:i + batch]
        fw, bw = flow_net(torch.cat([f1, f2]), torch.cat([f2, f1])).chunk(2)
        visible = occlusion_mask(fw, bw)  # (N, 1, H, W)
        diff = (warp(f2, fw) - f1).abs().mean(1, keepdim=True)
        errors.append((diff * visible).flatten(1).sum(1) / visible.flatten(1).sum(1).clamp_min(1.0))
    return rearrange(torch.cat(errors), "(b t) -> b t", b=b, t=t - 1).mean(1)

# ---- flicker ----


@torch.no_grad()
def flicker_index(video: Tensor, motion_threshold: float = 0.25, margin: int = 2) -> Tensor:
    """Mean |frame t+1 - frame t| over the static background, per clip (B,).

    A pixel of a frame pair is "static background" unless it lies within `margin` pixels of a change
    larger than `motion_threshold` (moving content). What remains are small frame-to-frame changes
    where nothing moves: flicker. 0 for a perfectly steady background.
    """
    _check_video(video, min_frames=2)
    diff = (video[:, :, 1:] - video[:, :, :-1]).float().abs().amax(1)  # (B, T-1, H, W)
    moving = (diff > motion_threshold).float()
    if margin > 0:
        k = 2 * margin + 1
        moving = F.max_pool2d(moving, k, stride=1, padding=margin)
    static = 1 - moving
    return (diff * static).flatten(1).sum(1) / static.flatten(1).sum(1).clamp_min(1.0)


def _check_video(video: Tensor, min_frames: int) -> None:
    if video.ndim != 5 or video.shape[2] < min_frames:
        raise ValueError(f"need a video (B, C, T, H, W) with T >= {min_frames}, got {tuple(video.shape)}")

# ---- flow accuracy on synthetic translations ----


def translated_digits(n: int, size: int = 32, max_shift: float = 3.0, seed: int = 0,
                      split: str = "test", digit_size: int = 14) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digit frames moved by known sub-pixel shifts: (f1, f2, flow, mask), frames (n, 1, S, S), flow (n, 2, S, S).

    f2 is f1 translated by d = (dx, dy) with |dx|, |dy| <= max_shift, so the true flow f1 -> f2 is d at
    every pixel; `mask` (n, 1, S, S) marks the digit (where the flow is observable).
    """
    rng = np.random.default_rng(seed)
    sprites = _digit_sprites(digit_size)[digit_split(split)]  # (N, S, S) float in [0, 1]
    h, w = sprites.shape[1:]
    f1 = torch.zeros(n, 1, size, size)
    for i in range(n):
        y, x = rng.integers(int(max_shift) + 1, size - h - int(max_shift), size=2)
        f1[i, 0, y:y + h, x:x + w] = torch.from_numpy(sprites[rng.integers(len(sprites))]).float()
    shift = torch.from_numpy(rng.uniform(-max_shift, max_shift, size=(n, 2))).float()  # (n, 2) x, y
    flow = shift[:, :, None, None].expand(n, 2, size, size).contiguous()
    f2 = warp(f1, -flow)  # f2(p) = f1(p - d)
    mask = (f1 > 0.1).float()
    return f1 * 2 - 1, f2 * 2 - 1, flow, mask


@torch.no_grad()
def translation_epe(flow_net: FlowNet, n: int = 256, size: int = 32, max_shift: float = 3.0, seed: int = 0) -> float:
    """Mean end-point error (pixels) of `flow_net` on `translated_digits`, over the digit pixels."""
    f1, f2, flow, mask = translated_digits(n, size, max_shift, seed)
    return float(end_point_error(flow_net(f1, f2), flow, mask).mean())
