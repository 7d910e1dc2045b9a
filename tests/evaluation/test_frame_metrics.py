"""PSNR and SSIM: closed forms and an independent implementation (scikit-image)."""

import math

import numpy as np
import pytest
import torch

from kinema.evaluation import frame_metrics, psnr_per_frame, ssim_per_frame


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


def test_frame_metrics_selects_frames():
    target = torch.zeros(1, 1, 4, 16, 16)
    pred = target.clone()
    pred[:, :, 2:] += 0.2
    m = frame_metrics(pred, target, frames=torch.tensor([False, False, True, True]))
    assert len(m["psnr_per_frame"]) == 2 and np.isfinite(m["psnr"])
    with pytest.raises(ValueError, match="one shape"):
        psnr_per_frame(pred, target[:, :, :2])
