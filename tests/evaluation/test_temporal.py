"""Warping error and flicker index: closed-form cases."""

import pytest
import torch

from kinema.evaluation.temporal import flicker_index, warping_error
from kinema.models.flow import FlowNet
from kinema.models.model_dir import load_flow_net


def test_flicker_of_a_steady_background_is_zero_despite_motion(moving_square):
    assert flicker_index(moving_square()).abs().max() == 0


def test_flicker_measures_a_global_brightness_wobble(moving_square):
    video = moving_square()
    wobble = torch.tensor([0.0, 0.05, 0.0, 0.05, 0.0, 0.05]).view(1, 1, 6, 1, 1)
    assert flicker_index(video + wobble) == pytest.approx(torch.full((2,), 0.05), abs=1e-6)


def test_flicker_rejects_single_frames():
    with pytest.raises(ValueError, match="T >= 2"):
        flicker_index(torch.zeros(1, 1, 1, 8, 8))


def test_warping_error_zero_for_static_clip_and_ordered_below_shuffled(moving_square):
    net = load_flow_net("flow-moving-digits")
    static = moving_square(t=4)[:, :, :1].expand(2, 1, 4, 24, 24)
    assert warping_error(static, net).max() < 1e-3  # the estimated flow of a still pair is ~0, not exactly 0
    video = moving_square(t=8, size=32)
    shuffled = video[:, :, torch.tensor([0, 5, 2, 7, 1, 6, 3, 4])]
    assert warping_error(video, net).mean() < warping_error(shuffled, net).mean()


def test_warping_error_shape():
    assert warping_error(torch.randn(3, 1, 4, 16, 16), FlowNet().eval()).shape == (3,)
