"""Training objectives: the simple MSE (eps / v / x0) and improved DDPM's hybrid loss with learned variance."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..types import Prediction
from .process import (
    append_dims,
    discretized_gaussian_log_likelihood,
    learned_log_variance,
    normal_kl,
    q_posterior,
    q_sample,
    step_log_variances,
    target_for,
    to_prediction,
)
from .schedules import Schedule

LOSS_TYPES = ("simple", "hybrid")

# ---- helpers ----


def sample_timesteps(batch: int, schedule: Schedule, *, device=None, generator=None) -> torch.Tensor:
    """Timesteps drawn uniformly from 0..N-1, (B,) int64."""
    return torch.randint(0, schedule.num_steps, (batch,), device=device, generator=generator)


def draw_t_eps(x0: torch.Tensor, schedule: Schedule, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """t (B,) and eps like x0; given a list of generators, example i draws from generator[i] alone."""
    if not isinstance(generator, (list, tuple)):
        t = sample_timesteps(x0.shape[0], schedule, device=x0.device, generator=generator)
        return t, schedule.noise(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    assert len(generator) == x0.shape[0], f"{len(generator)} generators for a batch of {x0.shape[0]}"
    # drawn on the CPU one example at a time: the draw does not depend on the batch or the device
    t = torch.cat([sample_timesteps(1, schedule, generator=g) for g in generator])
    eps = torch.cat([schedule.noise((1, *x0.shape[1:]), generator=g, dtype=x0.dtype) for g in generator])
    return t.to(x0.device), eps.to(x0.device)


def masked_mean(x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over all non-batch dims, per sample, (B,); `weight` (broadcastable to x) selects elements."""
    if weight is None:
        return x.flatten(1).mean(1)
    w = weight.to(x.dtype).expand_as(x)
    return (x * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1e-12)  # all-zero weight -> 0


# ---- the variational bound term ----


def vb_term(pred: Prediction, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, schedule: Schedule,
            weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One term of L_vlb in bits per dim, (B,): KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 0, L_0 at t = 0."""
    s = t - 1
    true_mean, _ = q_posterior(x0, x_t, t, s, schedule=schedule)
    true_log_var, _ = step_log_variances(t, s, schedule=schedule, like=x0)
    model_mean, _ = q_posterior(pred.x0, x_t, t, s, schedule=schedule)
    model_log_var = learned_log_variance(pred.var_frac, t, s, schedule=schedule)
    kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var)
    kl = masked_mean(kl, weight) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
    nll = masked_mean(nll, weight) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


# ---- the training loss ----


def training_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    *,
    schedule: Schedule,
    prediction: str = "eps",
    loss_type: str = "simple",
    learned_variance: bool = False,
    weight: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator | list[torch.Generator]] = None,
    **model_kwargs,
) -> dict:
    """Draw t and eps, noise x0, ask `model(x_t, t, **model_kwargs)`, return the loss terms.

    `loss` is the mean of the per-sample objective; `mse` the simple term; `vb` (hybrid only) the
    L_vlb term, with a stop-gradient on the mean so it trains the variance alone (improved DDPM
    §3.1), scaled by N / 1000 so that lambda = 0.001 for any N. `weight` (broadcastable to x0,
    e.g. (B, 1, T, 1, 1)) marks which elements count; `pred` is the Prediction, for extra losses.
    `generator` is one CPU / device generator, or one CPU generator per example (see `draw_t_eps`).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}")
    if loss_type == "hybrid" and not learned_variance:
        raise ValueError("loss_type 'hybrid' trains a learned variance; set learned_variance=True")
    t, eps = draw_t_eps(x0, schedule, generator)
    x_t = q_sample(x0, t, eps, schedule=schedule)
    output = model(x_t, t, **model_kwargs)  # (B, C or 2C, T, H, W)
    mean_out = output.chunk(2, dim=1)[0] if learned_variance else output
    target = target_for(prediction, x0, eps, t, schedule=schedule)
    mse = masked_mean((mean_out.float() - target.float()) ** 2, weight)
    terms = {"mse": mse.mean(), "t": t}
    loss = mse
    if loss_type == "hybrid":
        mean_part, var_part = output.chunk(2, dim=1)
        frozen = torch.cat([mean_part.detach(), var_part], dim=1)  # the VLB trains only the variance
        pred_frozen = to_prediction(frozen.float(), x_t.float(), t, schedule=schedule, prediction=prediction,
                                    learned_variance=True)
        vb = vb_term(pred_frozen, x0.float(), x_t.float(), t, schedule=schedule, weight=weight)
        vb = vb * (schedule.num_steps / 1000.0)
        terms["vb"] = vb.mean()
        loss = loss + vb
    terms["loss"] = loss.mean()
    terms["pred"] = to_prediction(output.float(), x_t.float(), t, schedule=schedule, prediction=prediction,
                                  learned_variance=learned_variance)
    return terms


def append_loss_dims(weight: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-frame weight (B, T) as (B, 1, T, 1, 1)-style broadcastable to a video of `ndim` dims."""
    return append_dims(weight.unsqueeze(1), ndim)
