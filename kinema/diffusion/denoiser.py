"""The one meeting point of networks and the diffusion parameterization: any network -> denoise(x_t, t).

`sampling_denoiser` is the one builder of what a sampler calls: network -> Prediction -> guidance over a
chain of conditions -> x0 clipped to the data range -> given frames kept exact.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..types import PREDICTION_TYPES, Cond, FrameMask, Prediction
from .guidance import clip_x0, guided, keep_known
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


def batch_branches(branches: list[dict], batch: int) -> dict:
    """The model kwargs of several guidance branches (`cond`, `frames`) as one call on len(branches) * batch clips."""
    out = {"cond": Cond.stack([b.get("cond") for b in branches], batch)}
    if "frames" in branches[0]:
        frames = [b["frames"] for b in branches]
        out["frames"] = FrameMask(mask=torch.cat([f.mask for f in frames]), frames=torch.cat([f.frames for f in frames]))
    return out


def sampling_denoiser(model: Callable[..., torch.Tensor], schedule: Schedule, *, prediction: str,
                      learned_variance: bool = False, chain: Sequence[dict] = ({},), scales: Sequence[float] = (),
                      frames: Optional[FrameMask] = None, batch_guidance: bool = True, latent: bool = False
                      ) -> DenoiseFn:
    """What a sampler calls: `model` (a network, or a feature cache around one) as a Denoiser, guided over `chain`.

    `chain` holds model kwargs (`cond`, `frames`) with no guided condition first, then one more each
    (see `guided`); without `scales` only its last entry is used, in one call. `batch_guidance` runs the
    branches as one call on a repeated batch. The predicted x0 is clipped to the pixels' [-1, 1] unless
    `latent` (an autoencoder's latents have no such range: unit variance, tails of many stds) and, with
    `frames`, the given frames are kept exact.
    """
    denoise = Denoiser(model, schedule, prediction=prediction, learned_variance=learned_variance)
    if scales:
        denoise = guided(denoise, list(chain), list(scales), batch_branches if batch_guidance else None)
    else:
        denoise = bind(denoise, **chain[-1])
    if not latent:
        denoise = clip_x0(denoise, schedule=schedule)
    return keep_known(denoise, frames, schedule=schedule) if frames is not None else denoise
