"""The web page's request handler without a browser: the form's values reach the pipeline, bad values
are refused before any work, a cancelled request stops sampling, and uploads are decoded small."""

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import kinema.serve
from kinema.config import DiffusionConfig, UNetConfig
from kinema.data import read_video, write_video
from kinema.models import SpaceTimeUNet
from kinema.pipeline import VideoPipeline
from kinema.serve import MAX_SEED, Cancelled, generate_clip


def _pipe(frame_conditioning: bool = False) -> VideoPipeline:
    """A random 16 px, 4-frame pipeline with a 100-step schedule."""
    torch.manual_seed(0)
    net = SpaceTimeUNet(UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                                   spatial_attention_levels=(1,), frame_conditioning=frame_conditioning)).eval()
    return VideoPipeline(net, DiffusionConfig(num_steps=100), size=16, num_frames=4, device="cpu")


def _count_calls(pipe: VideoPipeline) -> list:
    """A list that grows by one at every network call."""
    calls = []
    pipe.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def test_the_cache_interval_of_the_form_reaches_the_pipeline(tmp_path, step_caches):
    pipe = _pipe()
    path = generate_clip(pipe, task="generate", sampler="dpmpp_2m", steps=6, frames=4, cache_interval=3.0,
                         out_dir=str(tmp_path))
    assert read_video(path).shape == (4, 16, 16, 3)
    assert [(c.interval, c.full_calls, c.reused_calls) for c in step_caches] == [(3, 2, 4)]


@pytest.mark.parametrize("form, message", [
    ({"guidance": math.nan}, "guidance must be a finite number, got nan"),
    ({"guidance": math.inf}, "guidance must be a finite number, got inf"),
    ({"audio_guidance": -math.inf}, "audio guidance must be a finite number, got -inf"),
    ({"seed": -1}, f"seed must be a whole number in [0, {MAX_SEED}], got -1"),
    ({"seed": 2**70}, f"seed must be a whole number in [0, {MAX_SEED}], got {2**70}"),
    ({"seed": math.nan}, f"seed must be a whole number in [0, {MAX_SEED}], got nan"),
    ({"frames": 1}, "frames must be a whole number >= 2, got 1"),
    ({"frames": 2.5}, "frames must be a whole number >= 2, got 2.5"),
    ({"steps": 101}, "steps must be a whole number in [1, 100], got 101"),
    ({"cache_interval": 0}, "cache interval must be a whole number >= 1, got 0"),
    ({"frame_guidance": float("inf")}, "frame guidance must be a finite number, got inf"),
    ({"prompt": "x" * 501}, "the prompt has 501 characters; at most 500 are allowed"),
    ({"negative_prompt": "x" * 501}, "the negative prompt has 501 characters"),
    ({"frames": 33, "steps": 100}, "frames × steps × size² = 33 × 100 × 16² = 844,800 is above this server's "
                                   "limit of 819,200: at most 32 frames at 100 steps"),
    ({"frames": 10**9, "steps": 100, "video": "missing.mp4", "task": "predict"}, "is above this server's limit"),
])
def test_a_bad_request_is_refused_before_any_work(tmp_path, form, message):
    pipe = _pipe()
    calls = _count_calls(pipe)
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_clip(pipe, **{"task": "generate", "steps": 4, "frames": 4, "out_dir": tmp_path, **form})
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_max_cost_bounds_frames_times_steps(tmp_path):
    pipe = _pipe()
    budget = 8 * 4 * 16**2  # 8 frames at 4 steps, or 4 frames at 8 steps
    generate_clip(pipe, task="generate", steps=4, frames=8, max_cost=budget, out_dir=tmp_path)
    with pytest.raises(ValueError, match="at most 4 frames at 8 steps"):
        generate_clip(pipe, task="generate", steps=8, frames=8, max_cost=budget, out_dir=tmp_path)


def test_sampling_stops_at_the_next_network_call_once_cancelled(tmp_path):
    pipe = _pipe()
    calls = _count_calls(pipe)  # registered first, so it counts a call before the check refuses it
    with pytest.raises(Cancelled, match="client went away"):
        generate_clip(pipe, task="generate", steps=20, frames=4, out_dir=tmp_path, cancelled=lambda: len(calls) >= 3)
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []
    generate_clip(pipe, task="generate", steps=2, frames=4, out_dir=tmp_path)  # the check went with the request
    assert len(calls) == 5


def test_interpolation_decodes_only_the_last_frame_of_the_end_clip(tmp_path, monkeypatch):
    pipe = _pipe(frame_conditioning=True)
    end = np.zeros((12, 48, 64, 3), np.uint8)
    end[-1] = 255  # only the last frame is white
    write_video(tmp_path / "end.mp4", end)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "first.png")
    seen, read = [], kinema.serve.read_video
    monkeypatch.setattr(kinema.serve, "read_video", lambda path, **kw: seen.append(kw) or read(path, **kw))
    path = generate_clip(pipe, task="interpolate", image=str(tmp_path / "first.png"), video=str(tmp_path / "end.mp4"),
                         steps=2, frames=4, frame_guidance=2.0, out_dir=tmp_path)
    assert seen == [{"last": 1, "shorter_side": 16}]
    clip = read_video(path)
    assert clip[0].mean() < 40 and clip[-1].mean() > 215  # the given ends, through MP4 compression
