"""Samplers: pure functions with one signature, and a registry.

    sample_<name>(denoise, x_T, timesteps, *, schedule, generator=None, callback=None, **options) -> x0

`denoise(x_t, t) -> Prediction`; `timesteps` is a descending int tensor of the steps to visit
(see `schedules.spaced_timesteps`). Conditions, guidance and known frames are wrappers around
`denoise` (see `denoiser.bind`, `guidance`), so no sampler has a flag for them. Progress is
reported only through `callback({"i", "t", "x", "x0"})`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from ..types import Prediction
from .denoiser import DenoiseFn
from .process import alpha_bar_at, learned_log_variance, q_posterior, q_sample, step_log_variances
from .schedules import Schedule, timesteps_for

VARIANCES = ("auto", "small", "large", "learned")

# ---- shared preamble ----


def _steps(timesteps: torch.Tensor, x: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (i, t, s) with t the current and s the next timestep as (B,) tensors; s = -1 at the end."""
    ts = [int(v) for v in timesteps.reshape(-1)]
    if not ts or any(a <= b for a, b in zip(ts, ts[1:])) or ts[-1] < 0:
        raise ValueError(f"timesteps must be non-empty, strictly descending and >= 0, got {ts[:8]}...")
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else -1
        full = lambda v: torch.full((x.shape[0],), v, dtype=torch.long, device=x.device)  # noqa: E731
        yield i, full(t), full(s)


def _randn_like(x: torch.Tensor, generator: Optional[torch.Generator], schedule: Schedule) -> torch.Tensor:
    """The schedule's noise shaped like x, drawn on the generator's device (reproducible across devices)."""
    device = generator.device if generator is not None else x.device
    return schedule.noise(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


def _report(callback, i, t, x, pred: Prediction) -> None:
    if callback is not None:
        callback({"i": i, "t": t, "x": x, "x0": pred.x0})


# ---- single steps (shared by the samplers, tested against an independent implementation) ----


def ddpm_step(pred: Prediction, x_t, t, s, *, schedule: Schedule, noise: torch.Tensor, variance: str = "auto"):
    """Ancestral step x_t -> x_s ~ p(x_s | x_t) = N(posterior mean at pred.x0, Sigma) (DDPM Alg. 2)."""
    mean, _ = q_posterior(pred.x0, x_t, t, s, schedule=schedule)
    if variance == "auto":
        variance = "learned" if pred.var_frac is not None else "small"
    if variance == "learned":
        if pred.var_frac is None:
            raise ValueError("variance 'learned' needs a model trained with learned_variance=True")
        log_var = learned_log_variance(pred.var_frac, t, s, schedule=schedule)
    elif variance in ("small", "large"):
        log_post, log_beta = step_log_variances(t, s, schedule=schedule, like=x_t)
        log_var = log_post if variance == "small" else log_beta
    else:
        raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")
    nonzero = (s >= 0).to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))  # no noise on the last step
    return (mean + nonzero * torch.exp(0.5 * log_var) * noise).to(x_t.dtype)


def ddim_step(pred: Prediction, x_t, t, s, *, schedule: Schedule, noise: Optional[torch.Tensor], eta: float = 0.0):
    """Generalised step x_t -> x_s of DDIM (Song et al. 2021, eq. 12); eta=0 is deterministic."""
    ab_t, ab_s = alpha_bar_at(schedule, t, x_t), alpha_bar_at(schedule, s, x_t)
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()  # eq. 16
    direction = (1 - ab_s - sigma**2).clamp_min(0).sqrt() * pred.eps.double()  # "direction pointing to x_t"
    x_s = ab_s.sqrt() * pred.x0.double() + direction
    if eta > 0:
        x_s = x_s + sigma * noise.double()
    return x_s.to(x_t.dtype)


# ---- samplers ----


@torch.no_grad()
def sample_ddpm(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None,
                variance: str = "auto") -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Alg. 2) over any timestep subset; variance small / large / learned."""
    x = x_T
    for i, t, s in _steps(timesteps, x):
        pred = denoise(x, t)
        _report(callback, i, t, x, pred)
        x = ddpm_step(pred, x, t, s, schedule=schedule, noise=_randn_like(x, generator, schedule), variance=variance)
    return x


@torch.no_grad()
def sample_ddim(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None,
                eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021): deterministic for eta=0, ancestral-like for eta=1."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x = x_T
    for i, t, s in _steps(timesteps, x):
        pred = denoise(x, t)
        _report(callback, i, t, x, pred)
        noise = _randn_like(x, generator, schedule) if eta > 0 else None
        x = ddim_step(pred, x, t, s, schedule=schedule, noise=noise, eta=eta)
    return x


def _vp(schedule: Schedule, t: torch.Tensor, x: torch.Tensor):
    """(alpha_t, sigma_t, lambda_t = log(alpha_t / sigma_t)) of x_t = alpha_t x0 + sigma_t eps, float64."""
    ab = alpha_bar_at(schedule, t, x)
    alpha, sigma = ab.sqrt(), (1 - ab).clamp_min(0).sqrt()
    return alpha, sigma, alpha.log() - sigma.log()  # lambda = +inf at the clean end (sigma = 0)


def _karras_ode(denoise, x_T, timesteps, schedule, callback, second_order: bool) -> torch.Tensor:
    """Euler or Heun steps on dy/dsigma = (y - x0) / sigma, y = x_t / alpha_t, sigma = sigma_t / alpha_t (EDM)."""
    x = x_T
    for i, t, s in _steps(timesteps, x):
        pred = denoise(x, t)
        _report(callback, i, t, x, pred)
        (a_t, s_t, _), (a_s, s_s, _) = _vp(schedule, t, x), _vp(schedule, s, x)
        sig_t, sig_s = s_t / a_t, s_s / a_s
        y = x.double() / a_t
        d = (y - pred.x0.double()) / sig_t  # dy / dsigma (l. 4)
        y_next = y + (sig_s - sig_t) * d  # Euler step (l. 5)
        if second_order and int(s[0]) >= 0:  # Heun's correction where sigma_next > 0 (l. 6-8)
            x0_next = denoise((y_next * a_s).to(x_T.dtype), s).x0.double()
            d_next = (y_next - x0_next) / sig_s
            y_next = y + (sig_s - sig_t) * (d + d_next) / 2
        x = (y_next * a_s).to(x_T.dtype)
    return x


@torch.no_grad()
def sample_euler(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                 generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None) -> torch.Tensor:
    """Euler steps on the probability-flow ODE in sigma = sigma_t / alpha_t (Karras et al. 2022, Alg. 1, 1st order)."""
    return _karras_ode(denoise, x_T, timesteps, schedule, callback, second_order=False)


@torch.no_grad()
def sample_heun(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None) -> torch.Tensor:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1); Euler on the last step."""
    return _karras_ode(denoise, x_T, timesteps, schedule, callback, second_order=True)


def _dpmpp_2m(denoise, x_T, timesteps, schedule, generator, callback, eta: float) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) and, for eta > 0, its SDE variant; data prediction throughout."""
    x, x0_prev, h_prev = x_T, None, None
    for i, t, s in _steps(timesteps, x):
        pred = denoise(x, t)
        _report(callback, i, t, x, pred)
        (_, s_t, l_t), (a_s, s_s, l_s) = _vp(schedule, t, x), _vp(schedule, s, x)
        x0 = pred.x0.double()
        if int(s[0]) < 0:  # the last step lands on the data prediction itself (sigma_s = 0)
            x = x0.to(x_T.dtype)
            break
        h = l_s - l_t
        d = x0  # first order on the first step
        if x0_prev is not None:  # 2nd-order multistep: D = (1 + 1/2r) x0 - 1/2r x0_prev, r = h_prev / h
            r = h_prev / h
            d = x0 + (x0 - x0_prev) / (2 * r)
        if eta == 0:
            x_next = (s_s / s_t) * x.double() - a_s * torch.expm1(-h) * d
        else:  # SDE-DPM-Solver++(2M): eta scales the injected noise
            noise = _randn_like(x, generator, schedule).double()
            x_next = ((s_s / s_t) * torch.exp(-eta * h) * x.double() - a_s * torch.expm1(-(1 + eta) * h) * d
                      + s_s * torch.sqrt(-torch.expm1(-2 * eta * h)) * noise)
        x, x0_prev, h_prev = x_next.to(x_T.dtype), x0, h
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                    generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): a deterministic 2nd-order multistep solver, good at 10-25 steps."""
    return _dpmpp_2m(denoise, x_T, timesteps, schedule, generator, callback, eta=0.0)


@torch.no_grad()
def sample_dpmpp_2m_sde(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
                        generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None,
                        eta: float = 1.0) -> torch.Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022): the multistep solver with fresh noise each step (eta = 1: the SDE)."""
    if eta <= 0:
        raise ValueError(f"eta must be > 0 for the SDE variant (use dpmpp_2m for eta = 0), got {eta}")
    return _dpmpp_2m(denoise, x_T, timesteps, schedule, generator, callback, eta=eta)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm, "ddim": sample_ddim, "euler": sample_euler, "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m, "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function registered under `name`."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]


def generate(denoise: DenoiseFn, shape: tuple[int, ...], *, schedule: Schedule, sampler: str = "ddim",
             num_steps: int = 50, spacing: str = "leading", generator: Optional[torch.Generator] = None,
             device=None, callback: Optional[Callable] = None, **options) -> torch.Tensor:
    """Draw x_T of `shape` from the schedule's noise and run the named sampler over `num_steps` spaced timesteps."""
    timesteps = timesteps_for(schedule, num_steps, spacing)
    gen_device = generator.device if generator is not None else device
    x_T = schedule.noise(shape, generator=generator, device=gen_device).to(device)
    return get_sampler(sampler)(denoise, x_T, timesteps, schedule=schedule, generator=generator,
                                callback=callback, **options)


def edit(denoise: DenoiseFn, x0: torch.Tensor, *, strength: float, schedule: Schedule, sampler: str = "ddim",
         num_steps: int = 50, spacing: str = "leading", generator: Optional[torch.Generator] = None,
         callback: Optional[Callable] = None, **options) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): noise x0 to t = strength (N - 1), then denoise from there with the named sampler."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    t_start = max(1, round(strength * (schedule.num_steps - 1)))
    later = timesteps_for(schedule, num_steps, spacing)
    timesteps = torch.cat([torch.tensor([t_start]), later[later < t_start]])  # descending, starts at t_start
    t = torch.full((x0.shape[0],), t_start, device=x0.device)
    x_t = q_sample(x0, t, _randn_like(x0, generator, schedule), schedule=schedule)  # q(x_t | x0)
    return get_sampler(sampler)(denoise, x_t, timesteps, schedule=schedule, generator=generator,
                                callback=callback, **options)
