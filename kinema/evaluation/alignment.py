"""Does a moving-digits clip show what its condition asked for? Digit class, motion direction, pitch-following.

- `DigitClassifier`: a scikit-learn support-vector machine on digit crops rendered exactly as the
  clips render them, from the train split of the digit images only.
- `centroid_track` / `direction_of`: the intensity-weighted centre of the bright pixels per frame,
  and the initial motion (the first frame-to-frame step) as one of the eight DIRECTIONS.
- `identity_scores`: does every frame show the same digit? Per-frame identity and "identity held"
  (clips with the target digit in >= 90 % of frames).
- `height_pitch_correlation`: Pearson correlation between a clip's digit height and the log pitch
  of its sound track, frame by frame.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..data.datasets import DIRECTIONS, _digit_sprites, _load_digits, digit_split

# ---- tracking ----


def _gray01(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] or uint8 (T, H, W, C) -> float (T, H, W) in [0, 1]."""
    if isinstance(video, torch.Tensor):
        v = video.detach().float().cpu().numpy()
        return ((v.mean(axis=0) + 1) / 2).clip(0, 1)
    v = np.asarray(video)
    if v.dtype != np.uint8 or v.ndim != 4:
        raise ValueError(f"expected float (C, T, H, W) or uint8 (T, H, W, C), got {v.dtype} {v.shape}")
    return v.mean(axis=-1) / 255.0


def centroid_track(video, threshold: float = 0.3) -> np.ndarray:
    """(T, 2) intensity-weighted (y, x) centre of the pixels brighter than `threshold` per frame; NaN where none."""
    frames = _gray01(video)
    t, h, w = frames.shape
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.full((t, 2), np.nan)
    for i, f in enumerate(frames):
        weight = np.where(f > threshold, f, 0.0)
        if weight.sum() > 0:
            out[i] = (weight * ys).sum() / weight.sum(), (weight * xs).sum() / weight.sum()
    return out


def path_error(track: np.ndarray, target: np.ndarray, size: int) -> float:
    """Mean distance in pixels between a (T, 2) (y, x) track and a (T, 2) normalised (x, y) target path, over the
    frames where both exist (NaN when none do)."""
    want = np.asarray(target, dtype=np.float64)[:, ::-1] * size  # (T, 2) as (y, x) pixels
    dist = np.linalg.norm(np.asarray(track, dtype=np.float64) - want + 0.5, axis=1)  # + 0.5: pixel centres
    dist = dist[np.isfinite(dist)]
    return float(dist.mean()) if len(dist) else float("nan")


def direction_of(track: np.ndarray, dead_zone: float = 0.5) -> int:
    """The initial motion of a (T, 2) track as an index into DIRECTIONS, or -1 if it does not move.

    The first frame-to-frame step with a digit in both frames: captions name the motion from frame 0
    to 1 (the data starts every digit with room for that step; bounces come later).
    """
    steps = np.diff(track, axis=0)  # (T - 1, 2)
    steps = steps[np.isfinite(steps).all(axis=1)]
    if len(steps) == 0:
        return -1
    sy, sx = (0 if abs(c) < dead_zone else int(np.sign(c)) for c in steps[0])
    words = {(-1, 0): "up", (1, 0): "down", (0, -1): "left", (0, 1): "right", (-1, -1): "up and left",
             (-1, 1): "up and right", (1, -1): "down and left", (1, 1): "down and right"}
    return DIRECTIONS.index(words[(sy, sx)]) if (sy, sx) in words else -1


# ---- digit classification ----


def _crop(frame: np.ndarray, box: int, threshold: float = 0.3) -> Optional[np.ndarray]:
    """A (box, box) window around the bright pixels' centre, zero-padded at the borders; None if no bright pixel."""
    ys, xs = np.nonzero(frame > threshold)
    if len(ys) == 0:
        return None
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    y0, x0 = int(round(cy - box / 2)), int(round(cx - box / 2))
    padded = np.pad(frame, box)
    return padded[y0 + box : y0 + 2 * box, x0 + box : x0 + 2 * box]


def _features(crop: np.ndarray) -> np.ndarray:
    """A crop pooled to 8x8 (the digit images' own grid), flattened and scaled to unit range."""
    box = crop.shape[0]
    edges = np.linspace(0, box, 9).round().astype(int)
    pooled = np.array([[crop[a:b, c:d].mean() for c, d in zip(edges, edges[1:])] for a, b in zip(edges, edges[1:])])
    return (pooled / max(pooled.max(), 1e-6)).reshape(-1)


class DigitClassifier:
    """Which digit a moving-digits clip shows: an RBF SVM on 8x8-pooled crops around the digit."""

    def __init__(self, digit_size: int = 14, seed: int = 0):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        self.digit_size = digit_size
        sprites = _digit_sprites(digit_size)
        _, classes = _load_digits()
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for index in digit_split("train"):
            for _ in range(3):  # a few sub-pixel placements, as the renderer rounds positions
                canvas = np.zeros((digit_size * 2, digit_size * 2))
                y, x = rng.integers(0, digit_size, size=2)
                canvas[y : y + digit_size, x : x + digit_size] = sprites[index]
                xs.append(_features(_crop(canvas, digit_size)))
                ys.append(classes[index])
        # an RBF support-vector machine, calibrated for probabilities: on single frames of held-out digits it reads
        # 0.99 where a logistic regression read 0.95 (and the per-frame identity needs single frames)
        svm = CalibratedClassifierCV(SVC(C=10.0, gamma="scale"), ensemble=False)
        self.model = svm.fit(np.stack(xs), np.array(ys))

    def predict_frames(self, video) -> np.ndarray:
        """Class probabilities (T', 10) of the frames that show a digit."""
        crops = [_crop(f, self.digit_size) for f in _gray01(video)]
        feats = [_features(c) for c in crops if c is not None]
        return self.model.predict_proba(np.stack(feats)) if feats else np.zeros((0, 10))  # classes_ are 0..9

    def frame_digits(self, video) -> np.ndarray:
        """(T,) the digit each frame shows on its own, -1 where a frame shows none."""
        crops = [_crop(f, self.digit_size) for f in _gray01(video)]
        shown = [i for i, c in enumerate(crops) if c is not None]
        out = np.full(len(crops), -1)
        if shown:
            probs = self.model.predict_proba(np.stack([_features(crops[i]) for i in shown]))  # (T', 10)
            out[shown] = self.model.classes_[probs.argmax(axis=1)]
        return out

    def predict(self, video) -> int:
        """The clip's digit: the class with the highest mean probability over its frames, or -1 if none shows."""
        probs = self.predict_frames(video)
        return int(probs.mean(axis=0).argmax()) if len(probs) else -1


def identity_scores(frame_digits: list[np.ndarray], targets: list[int], held: float = 0.9) -> dict:
    """Per-frame identity (the share of frames showing the target digit, mean over clips) and identity held (the
    share of clips where at least `held` of the frames show it)."""
    shares = np.array([float(np.mean(f == t)) for f, t in zip(frame_digits, targets)])
    return {"frame_identity": float(shares.mean()), "identity_held": float(np.mean(shares >= held))}


# ---- audio ----


def height_pitch_correlation(track: np.ndarray, pitch_hz: np.ndarray) -> float:
    """Pearson correlation of digit height (-y) and log pitch over the frames with a digit; NaN if either is flat."""
    height, log_pitch = -track[:, 0], np.log(np.asarray(pitch_hz, dtype=np.float64))
    ok = np.isfinite(height) & np.isfinite(log_pitch)
    if ok.sum() < 3 or height[ok].std() < 1e-6 or log_pitch[ok].std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(height[ok], log_pitch[ok])[0, 1])
