"""Optical flow: a coarse-to-fine FlowNet (two frames -> (B, 2, H, W)) and differentiable backward warping.

Convention: `flow = net(f1, f2)` holds, for every pixel p of f1, the displacement d in pixels (x, y)
with f1(p) ~= f2(p + d). So `warp(f2, flow)` rebuilds f1, and a clip that moves by +s pixels from
f1 to f2 has flow +s. Each level of the pyramid refines the upsampled flow of the level below from
f1 and f2 warped towards f1 (the seed's conv estimator, applied coarse-to-fine as in SPyNet / PWC-Net).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import FlowConfig

# ---- warping and consistency ----


def _pixel_grid(h: int, w: int, device, dtype) -> Tensor:
    """(1, 2, H, W) pixel coordinates, x then y."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys])[None]


def warp(frame: Tensor, flow: Tensor) -> Tensor:
    """Backward warp: out(p) = frame(p + flow(p)), bilinear, borders repeated. frame (B, C, H, W), flow (B, 2, H, W)."""
    if frame.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"warp needs frame (B, C, H, W) and flow (B, 2, H, W), got {tuple(frame.shape)} "
                         f"and {tuple(flow.shape)}")
    if frame.shape[0] != flow.shape[0] or frame.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"frame {tuple(frame.shape)} and flow {tuple(flow.shape)} differ in batch or size")
    h, w = frame.shape[-2:]
    # float32 throughout: in bf16 a pixel position near 32 is only resolved to 1/8 px
    pos = _pixel_grid(h, w, flow.device, torch.float32) + flow.float()  # (B, 2, H, W) where each pixel samples
    scale = torch.tensor([max(w - 1, 1), max(h - 1, 1)], device=flow.device, dtype=torch.float32)
    grid = rearrange(pos, "b c h w -> b h w c") / scale * 2 - 1  # to [-1, 1] (align_corners=True)
    return F.grid_sample(frame.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def inside_mask(flow: Tensor) -> Tensor:
    """(B, 1, H, W) 1 where p + flow(p) lands inside the frame (its content was seen), else 0."""
    h, w = flow.shape[-2:]
    pos = _pixel_grid(h, w, flow.device, flow.dtype) + flow
    ok = (pos[:, 0] >= 0) & (pos[:, 0] <= w - 1) & (pos[:, 1] >= 0) & (pos[:, 1] <= h - 1)
    return ok[:, None].to(flow.dtype)


def occlusion_mask(flow_fw: Tensor, flow_bw: Tensor, alpha1: float = 0.01, alpha2: float = 0.5) -> Tensor:
    """(B, 1, H, W) 1 where the forward flow is undone by the backward flow (visible in both frames), else 0.

    Forward-backward check (Sundaram et al. 2010; UnFlow): p is occluded when
    |fw + bw(p + fw)|^2 > alpha1 (|fw|^2 + |bw(p + fw)|^2) + alpha2, or when p + fw leaves the frame.
    """
    bw_at = warp(flow_bw, flow_fw)  # (B, 2, H, W): the backward flow where each pixel lands
    mismatch = (flow_fw + bw_at).pow(2).sum(1, keepdim=True)
    bound = alpha1 * (flow_fw.pow(2).sum(1, keepdim=True) + bw_at.pow(2).sum(1, keepdim=True)) + alpha2
    return (mismatch <= bound).to(flow_fw.dtype) * inside_mask(flow_fw)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of (N, C, H, W) x over the pixels of mask (N, 1, H, W), per item (N,); 0 where the mask is empty."""
    return (x * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * x.shape[1]).clamp_min(1.0)


def end_point_error(flow: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean Euclidean distance between two (B, 2, H, W) flows, per sample (B,), over `mask` (B, 1, H, W) if given."""
    epe = (flow - target).pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, H, W)
    if mask is None:
        return epe.flatten(1).mean(1)
    return (epe * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)

# ---- the network ----


class FlowEstimator(nn.Module):
    """One pyramid level: (f1, f2 warped to f1, current flow) -> flow residual; the seed's conv stack."""

    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2 * in_channels + 2, width, 7, padding=3), nn.LeakyReLU(0.1),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.LeakyReLU(0.1),
            nn.Conv2d(2 * width, width, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(width, 2, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start from "no motion"
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, f1: Tensor, f2_warped: Tensor, flow: Tensor) -> Tensor:
        return self.net(torch.cat([f1, f2_warped, flow], dim=1))


class FlowNet(nn.Module):
    """Coarse-to-fine optical flow between two frames: (B, C, H, W) x 2 in [-1, 1] -> (B, 2, H, W) pixels."""

    def __init__(self, config: FlowConfig | None = None):
        super().__init__()
        self.config = config = config or FlowConfig()
        self.levels = nn.ModuleList(FlowEstimator(config.in_channels, config.width) for _ in range(config.levels))

    def forward(self, f1: Tensor, f2: Tensor) -> Tensor:
        if f1.shape != f2.shape or f1.ndim != 4:
            raise ValueError(f"FlowNet needs two frames of one shape (B, C, H, W), got {tuple(f1.shape)} "
                             f"and {tuple(f2.shape)}")
        if f1.shape[1] != self.config.in_channels:
            raise ValueError(f"FlowNet was built for {self.config.in_channels}-channel frames, got {f1.shape[1]}")
        n = len(self.levels)
        if min(f1.shape[-2:]) < 2 ** (n - 1):
            raise ValueError(f"frames {tuple(f1.shape[-2:])} are too small for {n} pyramid levels")
        pyramid = [(f1, f2)]
        for _ in range(n - 1):
            a, b = pyramid[-1]
            pyramid.append((F.avg_pool2d(a, 2, ceil_mode=True), F.avg_pool2d(b, 2, ceil_mode=True)))
        flow = None
        for level, (a, b) in zip(reversed(self.levels), reversed(pyramid)):  # coarsest first
            if flow is None:
                flow = a.new_zeros(a.shape[0], 2, *a.shape[-2:], dtype=torch.float32)
            else:  # double the resolution and the displacement
                flow = 2 * F.interpolate(flow, size=a.shape[-2:], mode="bilinear", align_corners=False)
            flow = flow + level(a, warp(b, flow).to(a.dtype), flow.to(a.dtype)).float()  # float32 sum
        return flow  # (B, 2, H, W)

    def video_flows(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """Forward and backward flows between consecutive frames of (B, C, T, H, W): each (B, T-1, 2, H, W).

        forward[:, t] = net(frame t, frame t+1), so warp(frame t+1, forward[:, t]) ~= frame t;
        backward[:, t] = net(frame t+1, frame t).
        """
        b, t = video.shape[0], video.shape[2]
        a = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
        n = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
        fw, bw = self(torch.cat([a, n]), torch.cat([n, a])).chunk(2)
        split = "(b t) c h w -> b t c h w"
        return rearrange(fw, split, b=b, t=t - 1), rearrange(bw, split, b=b, t=t - 1)


# ---- following a point through the flow ----


def sample_flow(flow: Tensor, points: Tensor) -> Tensor:
    """The flow (B, 2, H, W) at sub-pixel points (B, 2) as (x, y) pixels, bilinear, borders repeated -> (B, 2)."""
    h, w = flow.shape[-2:]
    scale = torch.tensor([max(w - 1, 1), max(h - 1, 1)], device=flow.device, dtype=torch.float32)
    grid = (points.float() / scale * 2 - 1)[:, None, None, :]  # (B, 1, 1, 2) in [-1, 1]
    return F.grid_sample(flow.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0, 0]


@torch.no_grad()
def track_points(net: "FlowNet", video: Tensor, start: Tensor) -> Tensor:
    """Follow points through a clip: video (B, C, T, H, W), start (B, 2) (x, y) pixels in frame 0 -> (B, T, 2).

    Each step moves the point by the forward flow sampled where it is: p(t+1) = p(t) + flow_t(p(t)).
    """
    forward, _ = net.video_flows(video)  # (B, T-1, 2, H, W)
    h, w = video.shape[-2:]
    limit = torch.tensor([w - 1, h - 1], device=start.device, dtype=torch.float32)
    path = [start.float()]
    for t in range(forward.shape[1]):
        path.append((path[-1] + sample_flow(forward[:, t], path[-1])).clamp(min=torch.zeros_like(limit), max=limit))
    return torch.stack(path, dim=1)


@torch.no_grad()
def motion_start(net: "FlowNet", video: Tensor, min_motion: float = 0.5) -> Tensor:
    """Where the main moving thing is in frame 0: the flow-magnitude-weighted centre of the pixels moving more than
    `min_motion` pixels from frame 0 to 1 -> (B, 2) (x, y); the frame's centre where nothing moves."""
    flow = net(video[:, :, 0], video[:, :, 1])  # (B, 2, H, W)
    h, w = flow.shape[-2:]
    speed = flow.norm(dim=1)  # (B, H, W)
    weight = torch.where(speed > min_motion, speed, torch.zeros_like(speed))
    grid = _pixel_grid(h, w, flow.device, torch.float32)[0]  # (2, H, W) x, y
    total = weight.sum(dim=(1, 2))  # (B,)
    centre = torch.einsum("bhw,chw->bc", weight, grid) / total.clamp_min(1e-6)[:, None]
    middle = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=flow.device)
    return torch.where((total > 0)[:, None], centre, middle)
