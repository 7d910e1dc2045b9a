"""kinema eval's measurements: protocol frames, the draw loop, scores in closed form, calibration, the report."""

import json
import math
import sys

import numpy as np
import pytest
import torch

from kinema.evaluation.evaluate import (
    Scorers,
    alignment_scores,
    build_scorers,
    calibration,
    digit_diversity,
    draw_clips,
    evaluate,
    frame_scores,
    temporal_scores,
)
from kinema.evaluation.protocol import EvalProtocol, data_spec, real_clips
from kinema.evaluation.features import load_feature_net
from kinema.evaluation.frame_metrics import UINT8_MSE_FLOOR
from kinema.evaluation.report import write_report


@pytest.fixture(scope="module")
def scorers():
    return build_scorers("moving-digits")  # the digit network and classifier (the classifier fits in ~5 s)


@pytest.fixture(scope="module")
def digits():
    spec = data_spec("moving-digits", size=32, num_frames=16, num=128, seed=5)
    return spec, real_clips(spec, 128)


def _protocol(**kw):
    spec = data_spec("moving-digits", size=32, num_frames=8, num=8)
    return EvalProtocol(model="m", data=spec, **{"num_clips": 8, **kw})


# ---- acceptance: the feature score orders real < shuffled < noise ----


def test_feature_scores_separate_real_from_shuffled_from_noise(digits):
    spec, real = digits
    other = real_clips({**spec, "seed": 6}, 128)  # another draw of held-out clips
    cal = calibration(real["video"], other["video"], Scorers(digits=load_feature_net()))
    for score in ("fd_digits", "kid_digits"):
        values = [cal[k][score] for k in ("real_vs_real", "real_vs_shuffled", "real_vs_noise")]
        values = [v["mean"] if isinstance(v, dict) else v for v in values]
        assert values[0] < values[1] < values[2], (score, values)


# ---- the protocol ----


@pytest.mark.parametrize("task, given", [("generate", []), ("predict", [0, 1, 2]), ("interpolate", [0, 7]),
                                         ("animate", [0])])
def test_each_task_gives_its_frames_and_the_record_says_which_count(task, given):
    p = _protocol(task=task, context_frames=3, count_frames="generated")
    assert torch.nonzero(p.known()).flatten().tolist() == given
    rec = p.record()
    assert rec["frames"]["given"] == given
    assert rec["frames"]["distribution_metrics_count"] == [t for t in range(8) if t not in given]
    for key in ("sampler", "steps", "guidance", "seed", "num_clips", "batch_size", "spacing", "data", "precision"):
        assert key in rec
    json.dumps(rec)
    assert _protocol(task=task).record()["frames"]["distribution_metrics_count"] == list(range(8))


@pytest.mark.parametrize("kw, message", [({"task": "extend"}, "extend"), ({"conditions": ("smell",)}, "smell"),
                                         ({"draws": 3}, "draws=3"), ({"count_frames": "some"}, "some"),
                                         ({"steps": (0,)}, r"\(0,\)"), ({"cache_interval": 0}, "got 0")])
def test_bad_protocol_values_are_named(kw, message):
    with pytest.raises(ValueError, match=message):
        _protocol(**kw)


# ---- the draw loop ----


def test_draw_clips_seeds_every_batch_and_checks_shapes():
    p = _protocol(task="predict", num_clips=10, batch_size=4, draws=2, seed=7)
    real = {"video": torch.zeros(10, 1, 8, 32, 32), "caption": [""] * 10}
    seeds = []

    def sample(batch, steps, seed):
        seeds.append(seed)
        return batch["video"] + seed

    out = draw_clips(sample, real, p, steps=3, progress=False)
    assert out.shape == (2, 10, 1, 8, 32, 32)
    assert seeds == [7, 8, 9, 1007, 1008, 1009]
    assert out[1, 9, 0, 0, 0, 0] == 1009
    with pytest.raises(ValueError, match=r"\(4, 1, 7, 32, 32\)"):
        draw_clips(lambda b, s, seed: b["video"][:, :, 1:], real, p, steps=3, progress=False)


# ---- scores ----


def test_frame_scores_mean_over_and_best_of_draws():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(3, 1, 6, 16, 16, generator=g) * 2 - 1
    known = torch.tensor([True, True, False, False, False, False])
    noisy = real.clone()
    noisy[:, :, 2:] = (real[:, :, 2:] + 0.3 * torch.randn(3, 1, 4, 16, 16, generator=g)).clamp(-1, 1)
    cap = 10 * math.log10(4 / UINT8_MSE_FLOOR)  # exact frames
    one = frame_scores(noisy[None], real, known)
    assert one["draws"] == 1 and "best_of_draws" not in one and one["frames_counted"] == [2, 3, 4, 5]
    assert one["mean_over_draws"]["psnr"] < 25  # the exact given frames do not count
    both = frame_scores(torch.stack([noisy, real]), real, known)
    assert both["best_of_draws"]["psnr"] == pytest.approx(cap)
    assert both["best_of_draws"]["ssim"] == pytest.approx(1.0)
    assert both["mean_over_draws"]["psnr"] == pytest.approx((one["mean_over_draws"]["psnr"] + cap) / 2)
    assert len(both["mean_over_draws"]["psnr_per_frame"]) == 6 and len(both["best_of_draws"]["ssim_per_frame"]) == 6
    assert "average_of_draws" not in one


def test_frame_scores_average_of_draws_is_the_pixel_mean():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(2, 1, 5, 16, 16, generator=g) - 0.5
    known = torch.tensor([True, False, False, False, True])
    d = 0.2 * torch.randn(2, 1, 5, 16, 16, generator=g)
    d[:, :, known] = 0
    apart = frame_scores(torch.stack([real + d, real - d]), real, known)  # each draw is off, their mean is exact
    cap = 10 * math.log10(4 / UINT8_MSE_FLOOR)
    assert apart["average_of_draws"]["psnr"] == pytest.approx(cap)
    assert apart["average_of_draws"]["ssim"] == pytest.approx(1.0)
    assert apart["mean_over_draws"]["psnr"] < 25
    three = torch.stack([real + d, real + 0.5 * d, real - 0.1 * d])  # scored as the one clip they average to
    ours = frame_scores(three, real, known)["average_of_draws"]
    alone = frame_scores(three.mean(0)[None], real, known)["mean_over_draws"]
    assert ours["psnr"] == pytest.approx(alone["psnr"]) and ours["ssim"] == pytest.approx(alone["ssim"])


def test_digit_diversity_in_closed_form():
    uniform = digit_diversity(list(range(10)) * 3)
    assert uniform["entropy_normalised"] == pytest.approx(1.0) and uniform["histogram"] == [3] * 10
    collapsed = digit_diversity([4] * 9 + [-1])
    assert collapsed["entropy_bits"] == 0.0 and math.copysign(1, collapsed["entropy_bits"]) == 1
    assert collapsed["no_digit_fraction"] == pytest.approx(0.1)
    assert digit_diversity([3, 3, 5, 5])["entropy_bits"] == pytest.approx(1.0)


def test_alignment_of_real_clips_with_themselves(digits, scorers):
    _, real = digits
    sub = {k: v[:32] for k, v in real.items() if isinstance(v, (torch.Tensor, list))}
    clf = scorers.classifier
    predicted = alignment_scores(sub["video"], sub, _protocol(task="predict"), clf)
    assert predicted["digit_accuracy"] > 0.8 and predicted["direction_agreement_with_real"] == 1.0
    texted = alignment_scores(sub["video"], sub, _protocol(conditions=("text",)), clf)
    assert texted["direction_accuracy"] > 0.8 and "diversity" in texted
    shuffled = alignment_scores(sub["video"].roll(1, dims=0), sub, _protocol(task="predict"), clf)
    assert shuffled["digit_accuracy"] < predicted["digit_accuracy"]


def test_temporal_scores_report_the_temporal_module(monkeypatch):
    evaluate_module = sys.modules["kinema.evaluation.evaluate"]  # the package exports a function of that name
    video = torch.zeros(3, 1, 4, 8, 8)
    monkeypatch.setattr(evaluate_module, "flicker_index", lambda v: torch.arange(len(v), dtype=torch.float))
    monkeypatch.setattr(evaluate_module, "warping_error", lambda v, flow: torch.full((len(v),), flow.value))
    assert temporal_scores(video) == {"available": True, "flicker_index": 1.0}  # the mean over clips
    flow = torch.nn.Module()
    flow.value = 0.25
    assert temporal_scores(video, flow)["warping_error"] == 0.25


# ---- the whole evaluation and its report ----


def _noisy_sampler(batch, steps, seed):
    """Real clips plus seeded noise that shrinks with the steps; the given frames are kept, as the pipeline does."""
    g = torch.Generator().manual_seed(seed)
    video = batch["video"]
    out = (video + torch.randn(video.shape, generator=g) / steps).clamp(-1, 1)
    out[:, :, :2] = video[:, :, :2]
    return out


def test_evaluate_writes_a_reproducible_report(tmp_path, scorers):
    spec = data_spec("moving-digits", size=32, num_frames=8, num=12, seed=3)
    p = EvalProtocol(model="fake", data=spec, task="predict", context_frames=2, num_clips=12, draws=2,
                     steps=(1, 4), batch_size=5, seed=11)
    real, other = real_clips(spec, 12), real_clips({**spec, "seed": 4}, 12)
    reports = []
    for out in ("a", "b"):
        report, clips = evaluate(_noisy_sampler, p, scorers, real, other, progress=False)
        write_report(report, tmp_path / out, real["video"], clips)
        reports.append(json.loads((tmp_path / out / "report.json").read_text()))
    a, b = reports
    strip = lambda r: [{k: v for k, v in row.items() if k != "seconds"} for row in r["results"]]
    assert strip(a) == strip(b) and a["calibration"] == b["calibration"]  # same seed, same figures
    assert a["protocol"]["draws"] == 2 and a["protocol"]["frames"]["given"] == [0, 1]
    assert len(a["feature_networks"]["fd_digits"]["sha256"]) == 64
    assert a["feature_networks"]["fvd"]["available"] is False and a["results"][0]["fvd"] == "unavailable"
    low, high = a["results"]
    assert high["frame_metrics"]["mean_over_draws"]["psnr"] > low["frame_metrics"]["mean_over_draws"]["psnr"]
    assert low["frame_metrics"]["best_of_draws"]["psnr"] >= low["frame_metrics"]["mean_over_draws"]["psnr"]
    md = (tmp_path / "a" / "report.md").read_text()
    assert "not FVD" in md and "best of draws" in md.lower()
    for name in ("samples.png", "per_frame.png", "metric_vs_steps.png"):
        assert (tmp_path / "a" / name).stat().st_size > 1000
    assert np.isfinite(low["fd_digits"]) and "mean" in low["kid_digits"]
    base = a["real"]["baselines"]
    assert set(base) == {"repeat last known frame", "linear blending"}
    assert all(np.isfinite(b["psnr"]) and 0 < b["ssim"] <= 1 for b in base.values())
    assert "| repeat last known frame |" in md
    digits = high["frame_digits"]  # per clip, frame by frame, the digit the classifier reads in the first draw
    assert len(digits) == 12 and all(len(d) == 8 for d in digits)
    shares = [np.mean(np.array(d) == t) for d, t in zip(digits, real["digit"].tolist())]
    assert np.mean(shares) == high["alignment"]["frame_identity"]  # the per-clip record behind the mean
