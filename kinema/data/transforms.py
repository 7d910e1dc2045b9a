"""Clip sampling and frame transforms: which source frames make a clip, then crop and flip.

A clip is ``num_frames`` source frames taken every ``frame_stride`` frames, or resampled in time
to ``target_fps``. Its start is drawn at random on every read (``start="random"``, for training)
or fixed (``start="uniform"``: the ``clips_per_video`` clips of a video start at evenly spread
frames; one clip sits in the middle). Frames arrive with their shorter side already scaled to
``size`` (``video_io.read_clip`` scales while decoding); here a ``size x size`` square is cropped
(centre or random) and optionally flipped left-right. Random draws use torch's generator, which
DataLoader seeds differently in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .video_io import resize_shorter

START_MODES = ("random", "uniform")
CROP_MODES = ("center", "random")

# ---- configuration ----


@dataclass
class ClipConfig:
    """How one training clip is cut from a video."""

    num_frames: int = 16  # frames per clip
    size: int = 32  # output height and width: the shorter side is scaled to this, then a square is cropped
    frame_stride: int = 1  # take every n-th source frame (used when target_fps is None)
    target_fps: Optional[float] = None  # resample time to this frame rate instead of striding
    start: str = "random"  # "random": a fresh start on every read; "uniform": fixed, evenly spread starts
    clips_per_video: int = 1  # items per video (with "uniform" their starts spread evenly over it)
    crop: str = "center"  # "center" or "random" square crop
    flip: bool = False  # flip left-right with probability 1/2

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"target_fps must be > 0 or None, got {self.target_fps}")
        if self.start not in START_MODES:
            raise ValueError(f"start must be one of {START_MODES}, got {self.start!r}")
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {self.clips_per_video}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")


# ---- which frames ----


def frame_offsets(config: ClipConfig, fps: float) -> list[int]:
    """Source-frame offsets of the clip's frames from its first one: [0, s, 2s, ...] (len num_frames)."""
    if config.target_fps is None:
        return [k * config.frame_stride for k in range(config.num_frames)]
    ratio = fps / config.target_fps  # source frames per clip frame (< 1 repeats frames)
    return [round(k * ratio) for k in range(config.num_frames)]


def frame_seconds(config: ClipConfig, fps: float) -> float:
    """Seconds one clip frame stands for (so a clip covers num_frames times this)."""
    return 1.0 / config.target_fps if config.target_fps is not None else config.frame_stride / fps


def clip_span(config: ClipConfig, fps: float) -> int:
    """Source frames from the clip's first frame to its last, inclusive: a video needs at least this many."""
    return frame_offsets(config, fps)[-1] + 1


def clip_start(config: ClipConfig, num_source: int, fps: float, clip: int = 0, *,
               deterministic: bool = False) -> int:
    """First source frame of clip `clip` of a video with `num_source` frames (random or evenly spread)."""
    room = num_source - clip_span(config, fps)  # last valid start
    if room < 0:
        raise ValueError(f"a video of {num_source} frames is too short for a clip spanning "
                         f"{clip_span(config, fps)} source frames")
    if config.start == "random" and not deterministic:
        return int(torch.randint(0, room + 1, ()))
    if config.clips_per_video == 1:
        return room // 2
    return round(clip * room / (config.clips_per_video - 1))


def clip_indices(config: ClipConfig, start: int, fps: float) -> list[int]:
    """Source frame numbers of a clip starting at `start`."""
    return [start + off for off in frame_offsets(config, fps)]


# ---- pixels ----


def crop_square(frames: np.ndarray, size: int, mode: str = "center") -> np.ndarray:
    """A size x size window of uint8 (T, H, W, C) frames with min(H, W) >= size, centred or at random."""
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    _, h, w, _ = frames.shape
    if min(h, w) < size:
        raise ValueError(f"cannot crop {size}x{size} from frames of {h}x{w}")
    if mode == "center":
        top, left = (h - size) // 2, (w - size) // 2
    else:
        top, left = int(torch.randint(0, h - size + 1, ())), int(torch.randint(0, w - size + 1, ()))
    return frames[:, top : top + size, left : left + size]  # (T, size, size, C)


def fit_square(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, C) -> (T, size, size, C) as every training clip is made: the shorter side scaled to `size`
    (unless decoding already did), then the centre square cropped. User inputs go through it too."""
    if min(frames.shape[1:3]) != size:
        frames = np.stack([resize_shorter(f, size) for f in frames])
    return crop_square(frames, size, "center")


def random_flip(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, C) mirrored left-right with probability 1/2."""
    return frames[:, :, ::-1] if bool(torch.rand(()) < 0.5) else frames
