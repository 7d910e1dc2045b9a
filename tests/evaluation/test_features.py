"""The Fréchet distance (closed forms) and kinema's moving-digits feature network."""

import numpy as np
import pytest
import torch

from kinema.data import MovingDigits, MovingDigitsConfig
from kinema.evaluation.features import (
    DigitMotionNet, clip_features, frechet_distance, gaussian_stats, load_feature_net,
)


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 5))
    cov = a @ a.T + np.eye(5)
    assert frechet_distance(np.ones(5), cov, np.ones(5), cov) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_in_closed_form():
    """For diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_symmetric_and_handles_singular_covariances():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 6)), rng.standard_normal((40, 6))  # 3 samples: a rank-2 covariance
    m1, c1 = gaussian_stats(x)
    m2, c2 = gaussian_stats(y)
    d12, d21 = frechet_distance(m1, c1, m2, c2), frechet_distance(m2, c2, m1, c1)
    assert np.isfinite(d12) and d12 == pytest.approx(d21, rel=1e-5) and d12 > 0
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(np.zeros((1, 3)))


def test_network_shapes_and_determinism_with_random_weights():
    torch.manual_seed(0)
    net = DigitMotionNet().eval()
    video = torch.rand(3, 1, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        f, d, r = net(video)
        f8 = net.features(video[:, :, :8])
    assert f.shape == (3, 64) and d.shape == (3, 10) and r.shape == (3, 8) and f8.shape == (3, 64)
    assert np.allclose(clip_features(net, video, batch=2), clip_features(net, video, batch=3), atol=1e-5)
    assert np.array_equal(clip_features(net, video), clip_features(net, video))  # deterministic


def test_shipped_network_tells_real_clips_from_noise_and_digits_apart():
    net, sha = load_feature_net()
    assert len(sha) == 64
    ds = MovingDigits(MovingDigitsConfig(num_frames=16, max_digits=1, split="test", length=256, seed=9))
    items = [ds[i] for i in range(256)]
    real = torch.stack([it["video"] for it in items])
    feats = clip_features(net, real)
    a, b = gaussian_stats(feats[:128]), gaussian_stats(feats[128:])
    rand = torch.rand(128, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = gaussian_stats(clip_features(net, rand))
    blurred = gaussian_stats(clip_features(net, real[:128].mean(dim=2, keepdim=True).expand_as(real[:128])))
    same = frechet_distance(*a, *b)
    assert same < frechet_distance(*a, *noise) / 10  # two halves of real data: close; noise: far
    assert same < frechet_distance(*a, *blurred)  # and a motionless clip is not a moving one
    with torch.no_grad():
        _, logits, _ = net(real)
    digits = torch.stack([it["labels"][0, 0] for it in items])
    assert (logits.argmax(1) == digits).float().mean() > 0.8  # held-out digit images
