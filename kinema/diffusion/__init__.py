"""The diffusion math: schedules, the forward process, losses, denoisers and samplers."""

from .denoiser import Denoiser, DenoiseFn, batch_branches, bind, sampling_denoiser
from .guidance import clip_x0, guided, keep_known
from .losses import LOSS_TYPES, training_loss
from .process import q_posterior, q_sample, to_prediction
from .samplers import (
    SAMPLERS, edit, generate, get_sampler, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_dpmpp_2m_sde,
    sample_euler, sample_heun,
)
from .schedules import (
    ALL_SPACINGS, SCHEDULES, SPACINGS, Schedule, karras_timesteps, make_schedule, respace, spaced_timesteps,
    timesteps_for,
)

__all__ = [
    "Denoiser", "DenoiseFn", "batch_branches", "bind", "sampling_denoiser", "clip_x0", "guided", "keep_known", "LOSS_TYPES", "training_loss",
    "q_posterior", "q_sample", "to_prediction", "SAMPLERS", "edit", "generate", "get_sampler", "sample_ddim",
    "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_euler", "sample_heun", "ALL_SPACINGS",
    "SCHEDULES", "SPACINGS", "Schedule", "karras_timesteps", "make_schedule", "respace", "spaced_timesteps",
    "timesteps_for",
]
