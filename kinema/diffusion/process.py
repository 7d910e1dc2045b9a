"""The Gaussian diffusion process: forward noising, the posterior, model outputs, KL and decoder NLL.

Symbols follow Ho et al. (2020) and Nichol & Dhariwal (2021). Every step is written for a pair of
timesteps (t, s) with s < t, so the same formulas serve the full chain (s = t - 1) and any respaced
chain; s = -1 means the clean data (alpha_bar = 1).
"""

from __future__ import annotations

import math

import torch

from ..types import PREDICTION_TYPES, Prediction
from .schedules import Schedule

# ---- helpers ----


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims to x until it has `ndim` dims (broadcast by rank)."""
    if x.ndim > ndim:
        raise ValueError(f"cannot broadcast a {x.ndim}-d tensor to {ndim} dims")
    return x.reshape(*x.shape, *([1] * (ndim - x.ndim)))


def alpha_bar_at(schedule: Schedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t as a tensor broadcastable against `like`, in float64 on like's device."""
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    return append_dims(schedule.alpha_bar(t.to(like.device)), like.ndim)


# ---- forward process ----


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, *, schedule: Schedule) -> torch.Tensor:
    """A draw of x_t ~ q(x_t | x0) = N(sqrt(alpha_bar) x0, (1 - alpha_bar) I) for noise eps, same shape as x0."""
    ab = alpha_bar_at(schedule, t, x0)
    return (ab.sqrt() * x0 + (1 - ab).sqrt() * eps).to(x0.dtype)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, *, schedule: Schedule) -> torch.Tensor:
    """The noise that takes x0 to x_t at step t: (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar), in x_t's dtype."""
    ab = alpha_bar_at(schedule, t if t.ndim else t.expand(x_t.shape[0]), x_t)
    return ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()).to(x_t.dtype)


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *, schedule: Schedule):
    """Mean and variance of q(x_s | x_t, x0) for s < t (eq. 6–7 of DDPM, for any pair); shapes of x0."""
    ab_t, ab_s = alpha_bar_at(schedule, t, x0), alpha_bar_at(schedule, s, x0)
    alpha = ab_t / ab_s  # the pair's alpha; beta = 1 - alpha
    beta = 1 - alpha
    mean = (ab_s.sqrt() * beta / (1 - ab_t)) * x0 + (alpha.sqrt() * (1 - ab_s) / (1 - ab_t)) * x_t
    var = beta * (1 - ab_s) / (1 - ab_t)
    return mean.to(x0.dtype), var.expand_as(mean).to(x0.dtype)


def step_log_variances(t: torch.Tensor, s: torch.Tensor, *, schedule: Schedule, like: torch.Tensor):
    """log of the two fixed variances of the step t -> s: (log posterior var, clipped), log beta.

    The posterior variance is 0 when s = -1; as in improved DDPM it is clipped there to the
    posterior variance of the step 1 -> 0 of the full chain, so logs stay finite.
    """
    ab_t, ab_s = alpha_bar_at(schedule, t, like), alpha_bar_at(schedule, s, like)
    beta = 1 - ab_t / ab_s
    post = beta * (1 - ab_s) / (1 - ab_t)
    ab = schedule.alphas_cumprod
    floor = (1 - ab[1] / ab[0]) * (1 - ab[0]) / (1 - ab[1]) if len(ab) > 1 else beta.new_tensor(1e-20)
    post = torch.where(s.reshape(-1, *([1] * (like.ndim - 1))).to(like.device) < 0, floor, post)
    return post.clamp_min(1e-20).log(), beta.log()


def learned_log_variance(var_frac: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *, schedule: Schedule):
    """Improved DDPM's Sigma_theta: log var = v log beta + (1 - v) log posterior var, per element."""
    log_post, log_beta = step_log_variances(t, s, schedule=schedule, like=var_frac)
    return (var_frac * log_beta + (1 - var_frac) * log_post).to(var_frac.dtype)


# ---- model output -> Prediction ----


def to_prediction(
    output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, schedule: Schedule, prediction: str,
    learned_variance: bool = False,
) -> Prediction:
    """Read a network output as eps, v or x0 prediction (plus a variance half) and return a Prediction."""
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTION_TYPES}")
    var_frac = None
    if learned_variance:
        output, v = output.chunk(2, dim=1)  # (B, C, T, H, W) each
        var_frac = (v.float() + 1) / 2  # the network emits v in [-1, 1]
    if output.shape != x_t.shape:
        raise ValueError(f"model output shape {tuple(output.shape)} does not match x_t {tuple(x_t.shape)}")
    ab = alpha_bar_at(schedule, t, x_t)
    a, b = ab.sqrt(), (1 - ab).sqrt()  # signal and noise scale
    out, x = output.double(), x_t.double()
    if prediction == "eps":
        eps = out
        x0 = (x - b * eps) / a
    elif prediction == "x0":
        x0 = out
        eps = (x - a * x0) / b
    else:  # v = a eps - b x0 (Salimans & Ho 2022)
        x0 = a * x - b * out
        eps = b * x + a * out
    return Prediction(x0=x0.to(x_t.dtype), eps=eps.to(x_t.dtype), var_frac=var_frac)


def target_for(prediction: str, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *, schedule: Schedule):
    """The regression target of a network trained for `prediction` ("eps", "v" or "x0")."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = alpha_bar_at(schedule, t, x0)
        return (ab.sqrt() * eps - (1 - ab).sqrt() * x0).to(x0.dtype)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTION_TYPES}")


# ---- KL and the decoder likelihood ----


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor):
    """log p(x) of data on 256 levels in [-1, 1] under N(mean, e^{2 log_scale}) integrated over each bin.

    The outer bins extend to -inf / +inf so the probabilities of the 256 levels sum to one
    (DDPM, §3.3, the decoder L_0).
    """
    half_bin = 1 / 255
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (x - mean + half_bin))
    cdf_minus = _std_normal_cdf(inv_std * (x - mean - half_bin))
    log_cdf_plus = cdf_plus.clamp_min(1e-12).log()
    log_one_minus_cdf_minus = (1 - cdf_minus).clamp_min(1e-12).log()
    log_mid = (cdf_plus - cdf_minus).clamp_min(1e-12).log()
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_mid))
