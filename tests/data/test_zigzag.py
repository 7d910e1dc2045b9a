"""Zigzagging digits: a motion with its own word, for teaching a trained model something new."""

import numpy as np
import pytest
import torch

from kinema.data.datasets import DIRECTIONS, MovingDigits, MovingDigitsConfig


def _data(**kw):
    return MovingDigits(MovingDigitsConfig(size=32, num_frames=9, max_digits=1, length=40, **kw))


def test_zigzag_clips_go_along_their_direction_and_up_and_down_every_frame():
    data = _data(zigzag=1.0)
    amp = data.config.zigzag_amplitude
    for i in range(10):
        (track,) = data.tracks(i)
        assert track.zigzag and DIRECTIONS[track.direction] in ("left", "right")
        assert data.caption(i) == f"digit {track.digit} zigzagging {DIRECTIONS[track.direction]}"
        y, x = track.positions[:, 0], track.positions[:, 1]
        wave = amp * np.array([0, -1, 0, 1] * 3)[:9]
        np.testing.assert_array_equal(y - y[0], wave)  # the line is level: only the wave moves it vertically
        sign = 1 if DIRECTIONS[track.direction] == "right" else -1
        assert sign * (x[1] - x[0]) > 0  # the first step goes the caption's way
        frames = data[i]["video"][0]  # (T, H, W): the digit is drawn where the track says
        assert frames[:, y.min():y.max() + data.config.digit_size].gt(-1).any()


def test_other_items_are_drawn_exactly_as_without_zigzags():
    plain, mixed = _data(), _data(zigzag=0.5)
    kinds = [mixed.is_zigzag(i) for i in range(40)]
    assert 5 < sum(kinds) < 35
    for i in range(40):
        if not kinds[i]:
            assert torch.equal(plain[i]["video"], mixed[i]["video"]) and plain.caption(i) == mixed.caption(i)


def test_zigzag_shares_outside_zero_to_one_are_refused():
    with pytest.raises(ValueError, match="zigzag must be a share"):
        MovingDigitsConfig(zigzag=1.5)
