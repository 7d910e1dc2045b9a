"""Noise schedules: beta tables, alpha_bar, timestep spacings and respacing.

A `Schedule` is plain data (a float64 beta table). Samplers take a schedule and a descending list of
timesteps to visit; which timesteps is decided here by a spacing, never inside a sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine"]
SCHEDULES = ("linear", "cosine")
SPACINGS = ("leading", "linspace", "trailing")  # spacings of the timestep range alone
ALL_SPACINGS = SPACINGS + ("karras",)  # plus those that follow the schedule's noise levels

# ---- beta tables ----


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear betas of DDPM (Ho et al. 2020), (N,) float64; endpoints as given, for any N."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule of improved DDPM (Nichol & Dhariwal 2021, eq. 17), (N,) float64."""

    def f(t: float) -> float:
        return math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2

    # beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped so the last step stays finite
    betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


@dataclass(frozen=True)
class Schedule:
    """A discrete diffusion schedule: betas (N,) float64 for timesteps t = 0..N-1."""

    betas: torch.Tensor  # (N,) float64
    frame_noise: float = 0.0  # share of the noise variance common to every frame of a clip (0 = independent)

    def __post_init__(self):
        b = self.betas
        if b.ndim != 1 or len(b) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(b.shape)}")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError(f"betas must lie in (0, 1), got min {b.min().item()} max {b.max().item()}")
        if not 0 <= self.frame_noise < 1:
            raise ValueError(f"frame_noise must be in [0, 1), got {self.frame_noise}")

    def noise(self, shape: tuple[int, ...], *, generator=None, device=None, dtype=None) -> torch.Tensor:
        """Noise eps of `shape`, each element N(0, 1): for video (B, C, T, H, W) with `frame_noise` = rho, a part
        shared by the clip's frames plus an independent part, eps = sqrt(rho) e_clip + sqrt(1 - rho) e_frame
        (the mixed noise prior of PYoCo, Ge et al. 2023), so frames start out correlated by rho."""
        if self.frame_noise == 0 or len(shape) != 5:
            return torch.randn(shape, generator=generator, device=device, dtype=dtype)
        b, c, _, h, w = shape
        shared = torch.randn((b, c, 1, h, w), generator=generator, device=device, dtype=dtype)
        own = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return math.sqrt(self.frame_noise) * shared + math.sqrt(1 - self.frame_noise) * own

    @property
    def num_steps(self) -> int:
        """Number of training timesteps N."""
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """alpha_bar_t = prod_{s<=t} (1 - beta_s), (N,) float64."""
        return torch.cumprod(1 - self.betas, dim=0)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at integer timesteps t (any shape); t = -1 means the clean data (alpha_bar = 1)."""
        table = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        return table.to(t.device)[t.long() + 1]

    def sigmas(self) -> torch.Tensor:
        """The equivalent noise levels sigma_t = sqrt((1 - alpha_bar) / alpha_bar), (N,) float64."""
        ab = self.alphas_cumprod
        return ((1 - ab) / ab).sqrt()


def shift_schedule(schedule: Schedule, shift: float) -> Schedule:
    """The schedule with every signal-to-noise ratio divided by shift**2 (shift > 1: noisier at every t).

    alpha_bar / (1 - alpha_bar) is the SNR; the shifted alpha_bar' = alpha_bar / (alpha_bar + shift**2 (1 - alpha_bar))
    keeps the same timesteps but moves them towards high noise, as larger or longer inputs need
    (Hoogeboom et al. 2023, "simple diffusion": the clip's redundant pixels make a given noise level easier).
    """
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got {shift}")
    if shift == 1:
        return schedule
    ab = schedule.alphas_cumprod  # (N,)
    shifted = ab / (ab + shift**2 * (1 - ab))
    previous = torch.cat([shifted.new_ones(1), shifted[:-1]])
    return Schedule(1 - shifted / previous, schedule.frame_noise)


def make_schedule(name: str, num_steps: int = 1000, shift: float = 1.0, frame_noise: float = 0.0) -> Schedule:
    """A schedule by name: "linear" (DDPM) or "cosine" (improved DDPM), its SNR divided by shift**2, its noise
    shared across frames by `frame_noise`."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name == "linear":
        # DDPM's endpoints are for N=1000; scale them so shorter schedules reach the same noise
        if num_steps <= 20:
            raise ValueError(f"the linear schedule needs num_steps > 20 (its last beta is 20 / num_steps), "
                             f"got {num_steps}")
        scale = 1000 / num_steps
        betas = linear_betas(num_steps, 1e-4 * scale, 0.02 * scale)
    elif name == "cosine":
        betas = cosine_betas(num_steps)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    return shift_schedule(Schedule(betas, frame_noise), shift)


# ---- timestep spacings and respacing ----


def spaced_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading") -> torch.Tensor:
    """`num_steps` distinct timesteps out of 0..N-1, descending (the order a sampler visits them), int64.

    leading: 0, k, 2k, ... (DDIM's choice); linspace: evenly from 0 to N-1 inclusive; trailing:
    N-1, N-1-k, ... so the first step starts from pure noise (Lin et al. 2024).
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {num_steps}")
    n, k = num_train_steps, num_steps
    if spacing == "leading":
        t = torch.arange(k, dtype=torch.int64) * (n // k)
    elif spacing == "linspace":
        t = torch.linspace(0, n - 1, k, dtype=torch.float64).round().long()
    elif spacing == "trailing":
        # t_i = n - 1 - round(i n / k) in integers: a float arange(n, 0, -n/k) can yield k+1 points (the last -1)
        t = (n - 1 - (2 * n * torch.arange(k, dtype=torch.int64) + k) // (2 * k)).flip(0)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {SPACINGS}")
    return t.flip(0)


def karras_timesteps(schedule: Schedule, num_steps: int, rho: float = 7.0, sigma_max: float = 80.0) -> torch.Tensor:
    """Descending timesteps whose sigmas follow Karras et al. (2022), eq. 5, snapped to the nearest trained level.

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho from the
    schedule's smallest sigma up to `sigma_max` (EDM's 80, or the schedule's largest if smaller: the
    cosine schedule's last levels reach sigma ~ 1e4, where steps are wasted). Targets that snap to
    the same level count once, so where the levels are too sparse to hold them all (hundreds of
    steps) fewer than `num_steps` come back.
    """
    n = schedule.num_steps
    if not 1 <= num_steps <= n:
        raise ValueError(f"num_steps must be in [1, {n}], got {num_steps}")
    log_sigmas = schedule.sigmas().log()  # (N,) increasing in t
    lo, hi = log_sigmas[0].exp() ** (1 / rho), min(log_sigmas[-1].exp().item(), sigma_max) ** (1 / rho)
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    targets = (hi + ramp * (lo - hi)) ** rho  # (num_steps,) descending
    t = (log_sigmas[None, :] - targets.log()[:, None]).abs().argmin(dim=1)  # nearest level
    return torch.unique(t).flip(0)  # strictly descending


def timesteps_for(schedule: Schedule, num_steps: int, spacing: str = "leading") -> torch.Tensor:
    """The descending timesteps a sampler visits for a spacing name in ALL_SPACINGS."""
    if spacing == "karras":
        return karras_timesteps(schedule, num_steps)
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {ALL_SPACINGS}")
    return spaced_timesteps(schedule.num_steps, num_steps, spacing)


def respace(schedule: Schedule, timesteps: torch.Tensor) -> Schedule:
    """The shorter schedule whose alpha_bar equals the original's at `timesteps` (improved DDPM, §4)."""
    t = timesteps.sort().values
    ab = schedule.alpha_bar(t)
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
    return Schedule(1 - ab / ab_prev, schedule.frame_noise)
