"""What a user hands the pipeline -> the tensors a model takes: videos and images, given frames, prompts, audio.

Paths, uint8 arrays and float tensors all become float (B, C, T, H, W) in [-1, 1] at the model's size
and channels, through the training clips' own transform (`data.transforms.fit_square`), so an input is
prepared exactly as the training data was. The pipeline owns sampling; this module owns its inputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import read_audio, read_image, read_video, to_tensor, to_uint8
from .data.audio import audio_features, fit_length
from .data.transforms import fit_square
from .models.autoencoder import whole_latent_prefix
from .models.encoders import Tokenizer


def as_video(x, *, size: int, channels: int, image: bool = False, last: Optional[int] = None) -> torch.Tensor:
    """A path, uint8 array or float tensor as float (B, C, T, size, size) with `channels` channels, on the CPU.

    Frames of another size go through `fit_square` (the shorter side scaled, the centre cropped), so a
    non-square input is cropped, never stretched; a float tensor of another size passes through 8-bit
    frames on the way. A file is decoded at `size`, and only its `last` frames when given. `image`: x is
    one frame (H, W, C) / (C, H, W) or a batch of them, returned with T = 1.
    """
    what = "an image" if image else "a video"
    if isinstance(x, (str, Path)):
        x = read_image(x, shorter_side=size)[None] if image else read_video(x, last=last, shorter_side=size)
    if isinstance(x, torch.Tensor):
        x = x.float()
        x = x.unsqueeze(-3) if image else x  # (..., C, 1, H, W)
        x = x if x.ndim == 5 else x[None]
        if x.ndim == 5 and x.shape[-2:] != (size, size):
            x = to_uint8(x)  # (B, T, H, W, C), resized below like any frames
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise ValueError(f"arrays must be uint8 frames (..., H, W, C), got {x.dtype}")
        x = x[None] if image else x
        x = x if x.ndim == 5 else x[None]  # (B, T, H, W, C)
        if x.ndim != 5:
            raise ValueError(f"could not read {what} from shape {x.shape}")
        x = to_tensor(np.stack([fit_square(clip, size) for clip in x]))  # (B, C, T, S, S)
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a path, a uint8 array or a float tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"could not read {what} from shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        if channels == 1:
            x = x.mean(dim=1, keepdim=True)  # colour -> gray
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1, -1)
        else:
            raise ValueError(f"frames have {x.shape[1]} channels; the model takes {channels}")
    return x.clamp(-1, 1)


def known_frames(num_videos: int, *, size: int, channels: int, window: int, frame_conditioning: bool, context=None,
                 context_frames: Optional[int] = None, first_frame=None, last_frame=None,
                 temporal_factor: int = 1) -> tuple[dict, int]:
    """{position: (B, C, H, W) frame} from the user's given frames (position -1 = the last frame), and B.

    `context` is a video to continue (its last `context_frames`, default all up to window - 1);
    `first_frame` / `last_frame` are images. One given batch of 1 is repeated to `num_videos`. With an
    autoencoder that compresses time (`temporal_factor` f > 1) a context fills whole latent frames
    (`latent_frame_span`: 1 + a multiple of f frames): the default takes the most recent that do, and
    another `context_frames` is refused.
    """
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if (context is not None or first_frame is not None or last_frame is not None) and not frame_conditioning:
        raise ValueError("this model was trained without frame conditioning (model.frame_conditioning: "
                         "false), so it can only generate; train with it to predict, interpolate or animate")
    if context is not None and first_frame is not None:
        raise ValueError("give either context (prediction) or first_frame (animation), not both")
    frames = dict(size=size, channels=channels)
    known = {}
    if context is not None:
        if context_frames is not None and (not isinstance(context_frames, int) or context_frames < 1):
            raise ValueError(f"context_frames must be a positive number of frames, got {context_frames!r}")
        video = as_video(context, last=context_frames or window - 1, **frames)  # (B, C, T, H, W)
        k = context_frames or min(video.shape[2], window - 1)
        if not 1 <= k <= video.shape[2]:
            raise ValueError(f"context_frames must be in [1, {video.shape[2]}] (frames of the context), got {k}")
        fit = whole_latent_prefix(k, temporal_factor)
        if fit != k and context_frames is not None:
            raise ValueError(f"context_frames={k} does not fill whole latent frames: the autoencoder keeps frame 0 "
                             f"alone and groups {temporal_factor} frames after it, so a context has 1 + a multiple "
                             f"of {temporal_factor} frames; {fit} or {fit + temporal_factor} fit")
        k = fit  # the default context: its most recent frames that fill whole latent frames
        video = video[:, :, -k:]
        known = {i: video[:, :, i] for i in range(k)}
    if first_frame is not None:
        known[0] = as_video(first_frame, image=True, **frames)[:, :, 0]
    if last_frame is not None:
        known[-1] = as_video(last_frame, image=True, **frames)[:, :, 0]
    batches = {f.shape[0] for f in known.values()}
    if len(batches) > 1:
        raise ValueError(f"the given frames disagree on the batch size: {sorted(batches)}")
    batch = batches.pop() if batches else num_videos
    if batch == 1 and num_videos > 1:
        known = {p: f.expand(num_videos, *f.shape[1:]) for p, f in known.items()}
        batch = num_videos
    return known, batch


def prompts(value, batch: int, tokenizer=None) -> list[str]:
    """One prompt or `batch` prompts -> `batch` prompts, checked against a word-level tokenizer's vocabulary."""
    texts = [value] if isinstance(value, str) else list(value)
    if len(texts) == 1:
        texts = texts * batch
    if len(texts) != batch:
        raise ValueError(f"{len(texts)} prompts for {batch} clips")
    if isinstance(tokenizer, Tokenizer):  # a subword encoder (MiniLM) reads any text
        check_words(tokenizer, texts)
    return texts


def check_words(tokenizer: Tokenizer, texts: list[str]) -> None:
    """Refuse a prompt of only unknown words (it would sample as if unconditioned); warn about unknown words."""
    for text in dict.fromkeys(texts):
        unknown, words = tokenizer.unknown_words(text), Tokenizer.split(text)
        if words and len(unknown) < len(words):
            if unknown:
                warnings.warn(f"prompt {text!r}: this model never saw {', '.join(map(repr, unknown))}; "
                              "they are read as one unknown word", stacklevel=5)
            continue
        known = [w for w in tokenizer.words[2:] if not w.isdigit()][:12]
        raise ValueError(f"prompt {text!r} has no word this model knows, so it would sample as if "
                         f"unconditioned; its {len(tokenizer) - 2} words include {', '.join(known)}")


def audio_input(value, batch: int, num_frames: int, *, rate: int, fps: float, n_mels: int,
                steps_per_frame: int) -> torch.Tensor:
    """A sound file or samples (A,) / (B, A) -> log-mel features (B, n_mels, S) for `num_frames` frames at `fps`."""
    if isinstance(value, (str, Path)):
        value = read_audio(value, sample_rate=rate, required=True)
    wave = torch.as_tensor(np.asarray(value, dtype=np.float32))
    wave = wave[None] if wave.ndim == 1 else wave  # (B', A)
    if wave.ndim != 2:
        raise ValueError(f"audio must be samples (A,) or (B, A), got shape {tuple(wave.shape)}")
    wave = fit_length(wave, int(round(num_frames * rate / fps)))
    mel = audio_features(wave, rate=rate, num_frames=num_frames, n_mels=n_mels, steps_per_frame=steps_per_frame)
    return mel.expand(batch, *mel.shape[1:]) if mel.shape[0] == 1 else mel


def parse_path(text: str) -> list[list[Optional[tuple[float, float]]]]:
    """'x,y;x,y;...' (objects separated by '|', '-' or nothing = absent in that frame) -> per object, its points.

    A text naming a .json file reads it: a list of [x, y] (or null) points, or a list of such lists (objects).
    """
    if text.strip().endswith(".json") and Path(text.strip()).is_file():
        import json
        data = json.loads(Path(text.strip()).read_text())
        if not isinstance(data, list) or not data:
            raise ValueError(f"trajectory file {text.strip()}: expected a non-empty list of [x, y] points")
        first = data[0]
        one = first is None or (isinstance(first, list) and all(isinstance(v, (int, float)) for v in first))
        objects = [data] if one else data  # a list of points, or a list of objects' lists of points
        where = f"trajectory file {text.strip()}"
        if not all(isinstance(obj, list) and obj for obj in objects):
            raise ValueError(f"{where}: expected a list of [x, y] points (null = absent), or one such list per object")
        return [[None if p is None else _point(p, where) for p in obj] for obj in objects]
    objects = []
    for obj in text.split("|"):
        points = []
        for part in obj.split(";"):
            part = part.strip()
            points.append(None if part in ("", "-") else _point(part.split(","), f"trajectory point {part!r}"))
        objects.append(points)
    if not any(p is not None for obj in objects for p in obj):
        raise ValueError(f"trajectory {text!r} has no point; write 'x,y;x,y;...' with x, y in [0, 1]")
    return objects


def _point(values, where: str) -> tuple[float, float]:
    """Two numbers in [0, 1] -> (x, y), or a ValueError naming `where`."""
    try:
        x, y = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected two numbers x, y in [0, 1] (0, 0 = top left)") from None
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"{where}: x, y = {x:g}, {y:g} must lie in [0, 1] (normalised: 0, 0 = top left, "
                         "1, 1 = bottom right)")
    return x, y


def resample_path(points: list[tuple[float, float]], num_frames: int) -> torch.Tensor:
    """Waypoints -> (num_frames, 2) points spread evenly along the polyline through them (constant speed)."""
    p = torch.tensor(points, dtype=torch.float64)  # (N, 2)
    if len(p) == 1:
        return p.expand(num_frames, 2).float()
    seg = (p[1:] - p[:-1]).norm(dim=-1)  # (N-1,)
    dist = torch.cat([seg.new_zeros(1), seg.cumsum(0)])  # (N,) arc length at each waypoint
    if dist[-1] == 0:
        return p[:1].expand(num_frames, 2).float()
    target = torch.linspace(0, float(dist[-1]), num_frames, dtype=torch.float64)
    i = (torch.searchsorted(dist, target, right=True) - 1).clamp(0, len(p) - 2)  # segment of each target
    frac = ((target - dist[i]) / seg[i].clamp_min(1e-12)).clamp(0, 1)[:, None]
    return (p[i] + frac * (p[i + 1] - p[i])).float()


def trajectory_input(value, batch: int, num_frames: int) -> torch.Tensor:
    """A path (text, JSON file, or (T, 2) / (T, K, 2) / (B, T, K, 2) numbers, NaN = absent) -> (B, T, K, 2).

    Per object: exactly `num_frames` points are one per frame (absent ones allowed); any other number
    of points (none absent) are waypoints, resampled evenly along the path they draw.
    """
    if isinstance(value, (str, Path)):
        columns = []
        for obj in parse_path(str(value)):
            if len(obj) == num_frames:
                nan = (float("nan"), float("nan"))
                columns.append(torch.tensor([nan if p is None else p for p in obj], dtype=torch.float32))
            elif any(p is None for p in obj):
                raise ValueError(f"a path with absent frames ('-') needs exactly one entry per frame: {len(obj)} "
                                 f"entries for {num_frames} frames")
            else:
                columns.append(resample_path(obj, num_frames))
        points = torch.stack(columns, dim=1)[None]  # (1, T, K, 2)
    else:
        points = torch.as_tensor(np.asarray(value, dtype=np.float32))
        points = {2: lambda p: p[None, :, None], 3: lambda p: p[None], 4: lambda p: p}.get(
            points.ndim, lambda p: None)(points)
        if points is None or points.shape[-1] != 2 or points.shape[1] != num_frames:
            raise ValueError(f"a trajectory array is (T, 2), (T, K, 2) or (B, T, K, 2) with T = {num_frames} "
                             f"frames, got shape {tuple(np.shape(value))}")
        present = points[~points.isnan()]
        if present.numel() and not bool(((present >= 0) & (present <= 1)).all()):
            raise ValueError("trajectory points must be normalised x, y in [0, 1] (NaN = absent), got values in "
                             f"[{float(present.min()):g}, {float(present.max()):g}]")
    if points.shape[0] not in (1, batch):
        raise ValueError(f"{points.shape[0]} trajectories for {batch} clips")
    return points.expand(batch, *points.shape[1:]) if points.shape[0] == 1 else points


PATH_COLOURS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (64, 220, 120))  # per object


def draw_path(video, points, scale: int = 4) -> np.ndarray:
    """uint8 (T, H, W, C) frames with a path (T, K, 2) normalised (x, y) drawn over them -> uint8 (T, sH, sW, 3).

    Each object's whole path is a thin line, and frame t marks where the object should be in it (a ring).
    """
    from PIL import Image, ImageDraw

    frames = np.asarray(video)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"draw_path takes uint8 (T, H, W, C) frames, got {frames.dtype} {frames.shape}")
    path = torch.as_tensor(np.asarray(points, dtype=np.float32))
    if path.ndim != 3 or path.shape[0] != len(frames) or path.shape[-1] != 2:
        raise ValueError(f"the path must be (T, K, 2) with T = {len(frames)}, got {tuple(path.shape)}")
    t, h, w = frames.shape[:3]
    size = np.array([w * scale, h * scale], dtype=np.float32)
    out = []
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).convert("RGB")
        image = image.resize((w * scale, h * scale), Image.NEAREST)
        draw = ImageDraw.Draw(image)
        for k in range(path.shape[1]):
            colour = PATH_COLOURS[k % len(PATH_COLOURS)]
            xy = [tuple(p * size) for p in path[:, k].numpy() if np.isfinite(p).all()]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=max(1, scale // 2))
            if np.isfinite(path[i, k].numpy()).all():
                x, y = path[i, k].numpy() * size
                r = 1.5 * scale
                draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=max(1, scale // 2))
        out.append(np.asarray(image))
    return np.stack(out)  # (T, sH, sW, 3)
