"""The one meeting point of networks and the diffusion parameterization: any network -> denoise(x_t, t)."""

from __future__ import annotations

from typing import Callable

import torch

from ..types import PREDICTION_TYPES, Prediction
from .process import to_prediction
from .schedules import Schedule

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], Prediction]


class Denoiser:
    """Wrap a plain network `model(x_t, t, **kwargs) -> output` as `denoise(x_t, t, **kwargs) -> Prediction`."""

    def __init__(self, model: Callable[..., torch.Tensor], schedule: Schedule, *, prediction: str = "eps",
                 learned_variance: bool = False):
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTION_TYPES}")
        self.model, self.schedule = model, schedule
        self.prediction, self.learned_variance = prediction, learned_variance

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, **model_kwargs) -> Prediction:
        """The model's Prediction at x_t (B, C, T, H, W) and integer timesteps t (B,) or scalar."""
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        output = self.model(x_t, t, **model_kwargs)
        return to_prediction(output.float(), x_t.float(), t, schedule=self.schedule,
                             prediction=self.prediction, learned_variance=self.learned_variance)


def bind(denoise: DenoiseFn, **model_kwargs) -> DenoiseFn:
    """`denoise` with keyword arguments (conditions) fixed, in the two-argument form samplers call."""

    def bound(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        return denoise(x_t, t, **model_kwargs)

    return bound
