"""Small dataclasses shared by every package: what a denoiser returns and what conditions it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

PredictionType = Literal["eps", "v", "x0"]
PREDICTION_TYPES = ("eps", "v", "x0")


@dataclass
class Prediction:
    """A denoiser's answer at (x_t, t): the clean video, the noise, and optionally the learned variance.

    `var_frac` is the improved-DDPM interpolation weight v in [0, 1] between log beta (v=1) and
    the log posterior variance (v=0); samplers turn it into a variance for whichever step they take.
    """

    x0: torch.Tensor  # (B, C, T, H, W)
    eps: torch.Tensor  # (B, C, T, H, W)
    var_frac: Optional[torch.Tensor] = None  # (B, C, T, H, W) in [0, 1], or None for fixed variance


@dataclass
class Cond:
    """Condition tokens for cross-attention plus a pooled vector; any part may be absent."""

    tokens: Optional[torch.Tensor] = None  # (B, L, D)
    mask: Optional[torch.Tensor] = None  # (B, L) bool, True = real token
    pooled: Optional[torch.Tensor] = None  # (B, D)


@dataclass
class FrameMask:
    """Which frames are given: `mask` (B, T) with 1 = known, and their pixels `frames` (B, C, T, H, W)."""

    mask: torch.Tensor  # (B, T) float in {0, 1}
    frames: torch.Tensor  # (B, C, T, H, W), zeros where unknown
