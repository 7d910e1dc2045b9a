"""PSNR and SSIM: closed forms and an independent implementation (scikit-image); the naive frame baselines."""

import math

import numpy as np
import pytest
import torch

from kinema.evaluation import frame_metrics, naive_baselines, psnr_per_frame, ssim_per_frame


def test_psnr_closed_form():
    target = torch.zeros(2, 1, 3, 16, 16)
    pred = target + 0.1  # MSE = 0.01 everywhere, range 2 -> 10 log10(4 / 0.01)
    assert torch.allclose(psnr_per_frame(pred, target), torch.full((2, 3), 10 * math.log10(400), dtype=torch.float64))
    assert torch.isinf(psnr_per_frame(target, target)).all()
    capped = frame_metrics(target, target)["psnr"]
    assert abs(capped - 20 * math.log10(255 * 2)) < 1e-9  # half a uint8 level over a range of 2


def test_ssim_is_one_for_identical_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 2, 24, 24, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert torch.allclose(ssim_per_frame(a, a), torch.ones(2, 2, dtype=torch.float64))
    assert torch.allclose(ssim_per_frame(a, b), ssim_per_frame(b, a))
    assert (ssim_per_frame(a, b) < 0.9).all()


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 1, 2, 32, 32, generator=g) * 2 - 1
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    ours = ssim_per_frame(a, b)[0]
    for t in range(2):
        ref = metrics.structural_similarity(a[0, 0, t].numpy(), b[0, 0, t].numpy(), data_range=2.0,
                                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert abs(ours[t].item() - ref) < 1e-6


def test_ssim_of_many_frames_runs_in_chunks_that_agree_with_each_clip_alone():
    g = torch.Generator().manual_seed(2)
    a = torch.rand(12, 3, 32, 16, 16, generator=g) * 2 - 1  # 1,152 images: more than one chunk at 16 x 16
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    alone = torch.cat([ssim_per_frame(a[i:i + 1], b[i:i + 1]) for i in range(12)])
    torch.testing.assert_close(ssim_per_frame(a, b), alone, rtol=0, atol=1e-12)


def test_frame_metrics_selects_frames():
    target = torch.zeros(1, 1, 4, 16, 16)
    pred = target.clone()
    pred[:, :, 2:] += 0.2
    m = frame_metrics(pred, target, frames=torch.tensor([False, False, True, True]))
    assert len(m["psnr_per_frame"]) == 2 and np.isfinite(m["psnr"])
    with pytest.raises(ValueError, match="one shape"):
        psnr_per_frame(pred, target[:, :, :2])


def test_naive_baselines_closed_forms():
    ramp = torch.arange(6.0).reshape(1, 1, 6, 1, 1).expand(2, 1, 6, 3, 3) / 10  # frame t has value t / 10
    predict = torch.tensor([True, True, False, False, False, False])
    out = naive_baselines(ramp, predict)
    assert torch.allclose(out["repeat last known frame"][0, 0, :, 0, 0], torch.tensor([0, 0.1, 0.1, 0.1, 0.1, 0.1]))
    assert torch.allclose(out["linear blending"], ramp)  # a linear ramp is extrapolated exactly
    ends = torch.tensor([True, False, False, False, False, True])
    out = naive_baselines(ramp, ends)
    assert torch.allclose(out["linear blending"], ramp)  # and interpolated exactly
    assert torch.allclose(out["repeat last known frame"][0, 0, 1:5, 0, 0], torch.zeros(4))
    fast = ramp * 8  # extrapolation leaves [-1, 1]: clamped
    assert naive_baselines(fast, predict)["linear blending"].max() == 1
    late = torch.tensor([False, False, True, False, False, False])  # frames before the first known one copy it
    assert torch.allclose(naive_baselines(ramp, late)["repeat last known frame"][0, 0, :, 0, 0], torch.full((6,), 0.2))
    with pytest.raises(ValueError, match="at least one known frame"):
        naive_baselines(ramp, torch.zeros(6, dtype=torch.bool))
