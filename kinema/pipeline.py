"""VideoPipeline: load a model directory and generate video with any sampler.

    pipe = VideoPipeline.from_pretrained("runs/digits")
    video = pipe(num_videos=4, steps=50, sampler="ddim", seed=0)
    video.save("digits.mp4")
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import DiffusionConfig, UNetConfig, from_dict, resolve_precision
from .data import make_grid, to_tensor, to_uint8, write_video
from .diffusion import Denoiser, clip_x0, generate, make_schedule
from .models import SpaceTimeUNet
from .models.model_dir import load_model_weights, read_model_config

# ---- the result ----


class Video:
    """A batch of generated clips, uint8 (B, T, H, W, C), that saves to mp4 / gif and converts to numpy / torch."""

    def __init__(self, frames: np.ndarray, fps: int = 8):
        if frames.ndim != 5 or frames.dtype != np.uint8:
            raise ValueError(f"Video needs uint8 (B, T, H, W, C) frames, got {frames.dtype} {frames.shape}")
        self.frames, self.fps = frames, fps

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> "Video":
        """The i-th clip as a one-clip Video."""
        return Video(self.frames[i : i + 1], self.fps)

    def numpy(self) -> np.ndarray:
        """uint8 (B, T, H, W, C)."""
        return self.frames

    def torch(self) -> torch.Tensor:
        """float (B, C, T, H, W) in [-1, 1]."""
        return to_tensor(self.frames)

    def save(self, path: str | Path, fps: Optional[int] = None) -> Path:
        """Write an .mp4 or .gif: the clip itself when B = 1, else all clips tiled in a grid."""
        frames = self.frames[0] if len(self) == 1 else make_grid(self.frames)
        write_video(path, frames, fps=fps or self.fps)
        return Path(path)


# ---- the pipeline ----


class VideoPipeline:
    """A trained model plus its schedule; call it to generate clips."""

    def __init__(self, model: SpaceTimeUNet, diffusion: DiffusionConfig, *, size: int, num_frames: int,
                 device: Optional[str] = None, precision: str = "auto"):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.diffusion, self.size, self.num_frames = diffusion, size, num_frames
        self.schedule = make_schedule(diffusion.schedule, diffusion.num_steps)
        self.precision = resolve_precision(precision, self.device.type)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: Optional[str] = None, precision: str = "auto"):
        """Load a model directory (config.json + model.safetensors), or a training run's `model/` inside it.

        Args:
            path: the model directory, or a run directory written by `kinema train`.
            device: "cpu", "cuda", ... (default: cuda when available).
            precision: "auto" (bf16 where the hardware has it), "bf16" or "no".
        """
        path = Path(path)
        if not (path / "model.safetensors").is_file() and (path / "model" / "model.safetensors").is_file():
            path = path / "model"
        config = read_model_config(path)
        for key in ("model", "diffusion", "data"):
            if key not in config:
                raise ValueError(f"{path / 'config.json'} has no {key!r} section; is it a kinema model directory?")
        model = SpaceTimeUNet(from_dict(UNetConfig, config["model"], prefix="model."))
        model.load_state_dict(load_model_weights(path))
        diffusion = from_dict(DiffusionConfig, config["diffusion"], prefix="diffusion.")
        return cls(model, diffusion, size=config["data"]["size"], num_frames=config["data"]["num_frames"],
                   device=device, precision=precision)

    @torch.no_grad()
    def __call__(self, num_videos: int = 1, *, num_frames: Optional[int] = None, steps: int = 50,
                 sampler: str = "ddim", seed: Optional[int] = None, spacing: str = "leading",
                 progress: bool = True, **sampler_options) -> Video:
        """Generate `num_videos` clips.

        Args:
            num_videos: clips to generate in one batch.
            num_frames: frames per clip (default: the training clip length).
            steps: sampler steps (1..diffusion.num_steps).
            sampler: a name from `kinema.diffusion.SAMPLERS` ("ddpm", "ddim", ...).
            seed: makes the result reproducible; None draws a fresh one.
            spacing: how the steps are spread over the schedule: "leading", "linspace" or "trailing".
            progress: show a progress bar.
            **sampler_options: passed to the sampler, e.g. `eta=` for DDIM, `variance=` for DDPM.
        Returns:
            a `Video` of uint8 (num_videos, T, H, W, C).
        """
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        num_frames = num_frames or self.num_frames
        shape = (num_videos, self.model.config.in_channels, num_frames, self.size, self.size)
        denoise = Denoiser(self.model, self.schedule, prediction=self.diffusion.prediction,
                           learned_variance=self.model.config.learned_variance)
        generator = torch.Generator(self.device).manual_seed(seed if seed is not None else torch.seed())
        bar = tqdm(total=steps, desc=f"sample ({sampler})", unit="step", disable=not progress)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            x0 = generate(clip_x0(denoise, schedule=self.schedule), shape, schedule=self.schedule,
                          sampler=sampler, num_steps=steps, spacing=spacing, generator=generator,
                          device=self.device, callback=lambda info: bar.update(1), **sampler_options)
        bar.close()
        return Video(to_uint8(x0.float().cpu()))
