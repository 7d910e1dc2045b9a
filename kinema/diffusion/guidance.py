"""Denoiser wrappers: each takes a denoise function and returns one, so samplers never grow flags."""

from __future__ import annotations

import torch
from einops import rearrange

from ..types import FrameMask, Prediction
from .denoiser import DenoiseFn
from .process import alpha_bar_at
from .schedules import Schedule


def clip_x0(denoise: DenoiseFn, *, schedule: Schedule, lo: float = -1.0, hi: float = 1.0) -> DenoiseFn:
    """Clamp the predicted x0 to the data range and make eps consistent with it (DDPM's clip_denoised)."""

    def clipped(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        pred = denoise(x_t, t)
        x0 = pred.x0.clamp(lo, hi)
        ab = alpha_bar_at(schedule, t if t.ndim else t.expand(x_t.shape[0]), x_t)
        eps = ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()).to(x_t.dtype)
        return Prediction(x0=x0, eps=eps, var_frac=pred.var_frac)

    return clipped


def keep_known(denoise: DenoiseFn, frames: FrameMask, *, schedule: Schedule) -> DenoiseFn:
    """Replace the predicted x0 of known frames by the frames themselves, with eps made consistent.

    Every sampler's last step lands on x0 where the noise level reaches zero, so the known frames
    come out exactly as given (the network also sees them as input; see SpaceTimeUNet.frame_input).
    """
    known = frames.frames  # (B, C, T, H, W)

    def kept(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        pred = denoise(x_t, t)
        m = rearrange(frames.mask.bool(), "b t -> b 1 t 1 1").to(x_t.device)
        x0 = torch.where(m, known.to(pred.x0.dtype), pred.x0)
        ab = alpha_bar_at(schedule, t if t.ndim else t.expand(x_t.shape[0]), x_t)
        eps_known = ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()).to(pred.eps.dtype)
        return Prediction(x0=x0, eps=torch.where(m, eps_known, pred.eps), var_frac=pred.var_frac)

    return kept
