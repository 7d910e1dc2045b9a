"""Denoiser wrappers: each takes a denoise function and returns one, so samplers never grow flags."""

from __future__ import annotations

import torch

from ..types import Prediction
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
