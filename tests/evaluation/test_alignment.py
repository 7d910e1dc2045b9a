"""Alignment measures for moving digits: centroid tracking, direction, digit class, pitch-following."""

import numpy as np
import pytest
import torch

from kinema.data import DIRECTIONS, MovingDigits, MovingDigitsConfig
from kinema.data.audio import dominant_frequency
from kinema.evaluation.alignment import (
    DigitClassifier,
    centroid_track,
    direction_of,
    height_pitch_correlation,
    identity_scores,
)


def _square_clip(path, size=24, box=4):
    """float (1, T, H, W) in [-1, 1]: a bright square whose top-left follows `path` (T, 2)."""
    video = -torch.ones(1, len(path), size, size)
    for t, (y, x) in enumerate(path):
        video[0, t, y : y + box, x : x + box] = 1
    return video


def test_centroid_of_a_square_is_its_centre():
    path = [(2, 3), (4, 6), (6, 9)]
    track = centroid_track(_square_clip(path))
    assert np.allclose(track, np.array(path) + 1.5)
    empty = centroid_track(-torch.ones(1, 2, 8, 8))
    assert np.isnan(empty).all()


@pytest.mark.parametrize("direction", range(8))
def test_direction_of_each_of_the_eight_motions(direction):
    dy, dx = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)][direction]
    path = [(10 + 2 * dy * t, 10 + 2 * dx * t) for t in range(4)]
    assert DIRECTIONS[direction_of(centroid_track(_square_clip(path)))] == DIRECTIONS[direction]


def test_direction_is_the_first_step_and_still_is_none():
    bounce = np.array([[5.0, 5.0], [3.0, 7.0], [5.0, 9.0], [7.0, 11.0]])  # up-right, then down-right
    assert DIRECTIONS[direction_of(bounce)] == "up and right"
    late = np.array([[np.nan, np.nan], [5.0, 5.0], [5.0, 3.0], [5.0, 5.0]])  # no digit in frame 0: from frame 1
    assert DIRECTIONS[direction_of(late)] == "left"
    assert direction_of(np.array([[5.0, 5.0], [5.1, 4.9], [5.0, 5.0]])) == -1


def test_every_real_clip_moves_first_as_its_caption_says():
    """Digits start with room for one step, so the caption's direction is the first step's (bounces come later)."""
    ds = MovingDigits(MovingDigitsConfig(num_frames=4, max_digits=1, split="test", length=300, seed=9))
    assert all(direction_of(centroid_track(ds[i]["video"])) == ds.tracks(i)[0].direction for i in range(300))


def test_identity_scores_closed_form():
    frames = [np.array([3, 3, 3, 3, 3, 3, 3, 3, 3, 3]), np.array([3, 3, 3, 3, 3, 3, 3, 3, 3, 5]),
              np.array([3, 3, 3, 3, 3, 8, 8, 8, 8, -1])]
    scores = identity_scores(frames, [3, 3, 3])
    assert scores == {"frame_identity": pytest.approx((1 + 0.9 + 0.5) / 3), "identity_held": pytest.approx(2 / 3)}


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier(digit_size=14)


def test_classifier_reads_held_out_digits_in_real_clips(classifier):
    """Clips drawn from the test split (digit images the classifier never saw) are mostly read right."""
    ds = MovingDigits(MovingDigitsConfig(num_frames=4, max_digits=1, split="test", length=60, seed=5))
    right = sum(classifier.predict(ds[i]["video"]) == ds.tracks(i)[0].digit for i in range(60))
    assert right / 60 >= 0.85
    assert classifier.predict(-torch.ones(1, 2, 32, 32)) == -1
    frames = [classifier.frame_digits(ds[i]["video"]) for i in range(60)]
    assert identity_scores(frames, [ds.tracks(i)[0].digit for i in range(60)])["frame_identity"] >= 0.95
    assert (classifier.frame_digits(-torch.ones(1, 3, 32, 32)) == -1).all()


def test_real_clips_follow_their_own_pitch():
    ds = MovingDigits(MovingDigitsConfig(num_frames=16, max_digits=1, audio=True, length=10, seed=2))
    corr, pitches = [], []
    for i in range(10):
        item = ds[i]
        pitches.append(dominant_frequency(item["audio"].numpy(), rate=16000, fps=8, num_frames=16))
        corr.append(height_pitch_correlation(centroid_track(item["video"]), pitches[-1]))
    corr = np.array(corr)  # NaN for clips moving straight left or right: their height is flat
    assert np.isfinite(corr).sum() >= 5 and np.nanmin(corr) > 0.95
    i = int(np.flatnonzero(np.isfinite(corr))[0])
    reversed_tone = height_pitch_correlation(centroid_track(ds[i]["video"]), pitches[i][::-1])
    assert reversed_tone < 0.9


def test_height_pitch_correlation_closed_forms():
    track = np.stack([np.arange(5.0)[::-1], np.zeros(5)], axis=1)  # moving up: height grows
    assert height_pitch_correlation(track, 2.0 ** np.arange(5.0)) == pytest.approx(1.0)
    assert height_pitch_correlation(track, 2.0 ** -np.arange(5.0)) == pytest.approx(-1.0)
    assert np.isnan(height_pitch_correlation(track, np.full(5, 440.0)))
