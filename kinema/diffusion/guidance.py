"""Denoiser wrappers: each takes a denoise function and returns one, so samplers never grow flags."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import rearrange

from ..types import FrameMask, Prediction
from .process import eps_from_x0
from .schedules import Schedule

if TYPE_CHECKING:  # denoiser.py builds on these wrappers; the type alias is only needed for annotations
    from .denoiser import DenoiseFn


def clip_x0(denoise: DenoiseFn, *, schedule: Schedule, lo: float = -1.0, hi: float = 1.0) -> DenoiseFn:
    """Clamp the predicted x0 to the data range and make eps consistent with it (DDPM's clip_denoised)."""

    def clipped(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        pred = denoise(x_t, t)
        x0 = pred.x0.clamp(lo, hi)
        return Prediction(x0=x0, eps=eps_from_x0(x_t, x0, t, schedule=schedule), var_frac=pred.var_frac)

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
        eps_known = eps_from_x0(x_t, x0, t, schedule=schedule).to(pred.eps.dtype)
        return Prediction(x0=x0, eps=torch.where(m, eps_known, pred.eps), var_frac=pred.var_frac)

    return kept


def guided(denoise, chain: list[dict], scales: list[float], batch_inputs=None) -> DenoiseFn:
    """Classifier-free guidance over a chain of conditions, one scale per added condition (Ho & Salimans 2022).

    `chain[0]` holds the model kwargs with every guided condition dropped (or a negative prompt),
    and each `chain[k]` adds one more condition to `chain[k-1]`. With p_k the prediction under
    chain[k], the result is p_0 + sum_k scales[k-1] (p_k - p_{k-1}); all scales 1 give p_K, the
    fully conditional prediction. x0 and eps are combined with the same weights (which sum to 1),
    so they stay consistent with x_t. With `batch_inputs(list of kwargs, batch) -> kwargs` the branches
    run as one call on the batch repeated once per branch (faster per clip than separate calls).
    """
    if len(chain) != len(scales) + 1 or not scales:
        raise ValueError(f"need one scale per added condition: {len(chain)} chain entries, {len(scales)} scales")
    # p_0 + sum_k s_k (p_k - p_{k-1}) = sum_k w_k p_k with w_K = s_K, w_k = s_k - s_{k+1}, w_0 = 1 - s_1
    weights = [1 - scales[0]] + [a - b for a, b in zip(scales, scales[1:])] + [scales[-1]]

    terms = [(w, kwargs) for w, kwargs in zip(weights, chain) if w != 0]  # a zero weight needs no model call

    def branches(x_t: torch.Tensor, t: torch.Tensor) -> list[Prediction]:
        """The prediction under each term's kwargs, in one batched call when possible."""
        if batch_inputs is None or len(terms) == 1:
            return [denoise(x_t, t, **kwargs) for _, kwargs in terms]
        k = len(terms)
        pred = denoise(torch.cat([x_t] * k), t.repeat(k) if t.ndim else t,
                       **batch_inputs([kwargs for _, kwargs in terms], x_t.shape[0]))
        var = pred.var_frac.chunk(k) if pred.var_frac is not None else [None] * k
        return [Prediction(x0=a, eps=b, var_frac=v) for a, b, v in zip(pred.x0.chunk(k), pred.eps.chunk(k), var)]

    def combined(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        preds = [(w, p) for (w, _), p in zip(terms, branches(x_t, t))]
        x0 = sum(w * p.x0 for w, p in preds)
        eps = sum(w * p.eps for w, p in preds)
        return Prediction(x0=x0, eps=eps, var_frac=preds[-1][1].var_frac)

    return combined
