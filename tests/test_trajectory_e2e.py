"""A trajectory-conditioned model end to end: training on digits' tracks, the pipeline, guidance and the CLI."""

import json

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.config import load_config
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 8,
    "model.frame_conditioning": True, "diffusion.num_steps": 100, "data.size": 24, "data.num_frames": 4,
    "data.length": 32, "data.max_digits": 1, "cond.text": "gru", "cond.trajectory": "both",
    "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 2, "train.sample_every": 0,
    "train.warmup_steps": 2, "train.lr": 1e-3, "train.mixed_precision": "no", "train.steps": 2,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trajectory_run")
    Trainer(load_config(None, TINY), out).fit()
    return out


def test_pipeline_follows_a_path_with_its_own_guidance(run):
    pipe = VideoPipeline.from_pretrained(run, device="cpu")
    assert pipe.takes("trajectory") and pipe.model.config.map_channels == 1
    kw = dict(prompt="digit 3 moving up", steps=3, seed=1, progress=False)
    a = pipe(2, trajectory="0.2,0.2;0.8,0.8", trajectory_guidance=2, **kw)
    b = pipe(2, trajectory="0.2,0.2;0.8,0.8", trajectory_guidance=2, **kw)
    other = pipe(2, trajectory="0.8,0.2;0.2,0.8", trajectory_guidance=2, **kw)
    assert a.numpy().shape == (2, 4, 24, 24, 1) and np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), other.numpy())
    animated = pipe(first_frame=np.zeros((24, 24, 1), np.uint8), trajectory=np.full((4, 2), 0.5), **kw)
    assert animated.numpy().shape == (1, 4, 24, 24, 1)
    long = pipe(1, num_frames=7, overlap=1, trajectory="0.1,0.5;0.9,0.5", **kw)  # the path is cut per window
    assert long.numpy().shape == (1, 7, 24, 24, 1)
    with pytest.raises(ValueError, match="but no trajectory was given"):
        pipe(1, trajectory_guidance=2, **kw)


def test_a_model_without_the_condition_refuses_a_path(tmp_path):
    out = tmp_path / "plain"
    Trainer(load_config(None, {**TINY, "cond.trajectory": "none"}), out).fit()
    pipe = VideoPipeline.from_pretrained(out, device="cpu")
    with pytest.raises(ValueError, match="takes no trajectory"):
        pipe(1, trajectory="0.5,0.5", steps=2, progress=False)


def test_cli_sample_and_animate_along_a_path(run, tmp_path, capsys):
    base = ["--model", str(run), "--steps", "2", "--prompt", "digit 5 moving left"]
    assert main(["sample", *base, "--trajectory", "0.1,0.1;0.9,0.9", "--trajectory-guidance", "2",
                 "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "sample_000.gif").is_file()
    assert main(["sample", *base, "--trajectory", "0.1;0.9", "--out", str(tmp_path / "bad")]) == 2
    assert "expected two numbers" in capsys.readouterr().err


def test_training_needs_clips_with_tracks_or_a_flow_model_to_follow_them():
    folder = {**TINY, "data.kind": "folder", "data.root": "/videos", "model.in_channels": 3}
    with pytest.raises(ValueError, match="needs clips with tracks.*cond.trajectory_flow"):
        load_config(None, folder)
    assert load_config(None, {**folder, "cond.trajectory_flow": "flow-moving-digits"}).cond.trajectory_flow


def test_clips_without_tracks_are_followed_through_the_flow(tmp_path):
    from kinema.data.datasets import MovingDigits, MovingDigitsConfig

    trainer = Trainer(load_config(None, {**TINY, "cond.trajectory_flow": "flow-moving-digits", "data.size": 32,
                                         "data.num_frames": 8}), tmp_path)
    data = MovingDigits(MovingDigitsConfig(size=32, num_frames=8, max_digits=1, split="test", length=8))
    video = torch.stack([data[i]["video"] for i in range(8)])
    truth = torch.stack([data[i]["trajectory"] for i in range(8)])  # (B, T, 1, 2)
    tracks = trainer.flow_tracks(video)
    assert tracks.shape == truth.shape
    assert float(((tracks - truth) * 32).norm(dim=-1).mean()) < 2.5  # px: the flow's start sits on the ink


def test_eval_scores_how_far_the_digit_strays_from_its_track(run, tmp_path):
    out = tmp_path / "ev"
    assert main(["eval", "--model", str(run), "--cond", "text", "trajectory", "--guidance", "2", "--num", "4",
                 "--batch", "4", "--steps", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    scores = report["results"][0]["alignment"]
    assert scores["trajectory_clips_scored"] <= 4 and "trajectory_error_px" in scores
    floor = report["real"]["trajectory"]
    assert floor["trajectory_clips_scored"] == 4 and 0 <= floor["trajectory_error_px"] < 2  # a real digit is on it
    assert "tracker's floor" in (out / "report.md").read_text()


def test_demo_draws_the_requested_path_over_the_result(run, tmp_path):
    from kinema.demo import run_demo

    summary = run_demo(run, tmp_path / "demo", steps=2, progress=False)
    path = [c for c in summary["clips"] if c["task"] == "path → motion"]
    assert len(path) == 1 and (tmp_path / "demo" / path[0]["gif"]).is_file()
    assert path[0]["gif"] in (tmp_path / "demo" / "index.html").read_text()


def test_draw_path_rings_each_frames_target():
    from kinema.inputs import draw_path

    video = np.zeros((3, 8, 8, 1), np.uint8)
    points = np.array([[[0.25, 0.25]], [[0.5, 0.5]], [[np.nan, np.nan]]], np.float32)
    drawn = draw_path(video, points, scale=4)  # (3, 32, 32, 3)
    assert drawn.shape == (3, 32, 32, 3)
    only = lambda a, b: np.argwhere(a.any(-1) & ~b.any(-1)).mean(0)  # noqa: E731  # (row, col) of a's own marks
    assert abs(only(drawn[0], drawn[2]) - [8, 8]).max() <= 1.5  # frame 0's ring at (0.25, 0.25) of 32 px
    assert abs(only(drawn[1], drawn[2]) - [16, 16]).max() <= 1.5  # frame 1's at the centre
    assert drawn[2].any()  # an absent target: the line alone
    with pytest.raises(ValueError, match="T = 3"):
        draw_path(video, points[:2])


def test_the_bundled_path_model_moves_its_digit_round_a_circle_it_never_saw():
    import math

    import torch

    from kinema.evaluation.alignment import DigitClassifier, centroid_track, path_error
    from kinema.pipeline import VideoPipeline

    pipe = VideoPipeline.from_pretrained("moving-digits-path", device="cpu", precision="no")
    angle = 2 * math.pi * torch.arange(16) / 16
    circle = torch.stack([0.5 + 0.2 * torch.cos(angle), 0.5 + 0.2 * torch.sin(angle)], dim=-1)  # (T, 2) as (x, y)
    clips = pipe(2, prompt=["digit 0 moving down", "digit 4 moving down"], guidance=3,
                 trajectory=circle[None, :, None].expand(2, -1, -1, -1), trajectory_guidance=3, sampler="dpmpp_2m",
                 steps=10, seed=0, progress=False).numpy()  # (2, T, 32, 32, 1)
    errors = [path_error(centroid_track(c), circle.numpy(), 32) for c in clips]
    assert max(errors) <= 2.0, errors  # the acceptance bound; without the path: 7 and 12 px
    digits = [DigitClassifier().frame_digits(c) for c in clips]
    assert [max(set(d), key=list(d).count) for d in digits] == [0, 4]  # the caption's digit, by majority
