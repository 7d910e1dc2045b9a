"""Fréchet distance and KID on feature sets: closed forms, unbiasedness, input checks."""

import numpy as np
import pytest

from kinema.evaluation.features import (
    frechet_distance,
    gaussian_stats,
    kernel_distance,
    mmd2_unbiased,
)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).standard_normal((200, 16)) @ np.random.default_rng(1).standard_normal((16, 16))
    stats = gaussian_stats(feats)
    assert frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_scaled_full_covariances_in_closed_form():
    """C2 = a C1 commutes with C1, so tr(C1 + C2 - 2 (C1 C2)^1/2) = (1 - sqrt a)^2 tr C1."""
    rng = np.random.default_rng(2)
    m = rng.standard_normal((6, 6))
    c1, a = m @ m.T + 0.1 * np.eye(6), 2.5  # a full, non-diagonal covariance
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = ((mu1 - mu2) ** 2).sum() + (1 - np.sqrt(a)) ** 2 * np.trace(c1)
    assert frechet_distance(mu1, c1, mu2, a * c1) == pytest.approx(expected, rel=1e-8)


def test_mmd2_unbiased_matches_the_pairwise_sums():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.5
    k = lambda a, b: (a @ b / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 5)
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_on_equal_distributions_where_the_biased_estimate_is_not():
    rng = np.random.default_rng(4)
    values, biased = [], []
    for _ in range(300):
        x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
        values.append(mmd2_unbiased(x, y))
        kxx, kyy, kxy = ((x @ x.T / 4 + 1) ** 3, (y @ y.T / 4 + 1) ** 3, (x @ y.T / 4 + 1) ** 3)
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())  # the V-statistic keeps i = j terms
    err = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values)) < 3 * err  # zero in expectation
    assert np.mean(biased) > 10 * err  # the plug-in estimate is clearly positive on the same data


def test_kid_grows_with_a_shift_and_reports_its_subsets():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 8))
    same, shifted = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) + 0.5
    a = kernel_distance(x, same, subsets=20, subset_size=100)
    b = kernel_distance(x, shifted, subsets=20, subset_size=100)
    assert abs(a["mean"]) < 3 * a["std"] + 1e-3 < b["mean"]
    assert a["subsets"] == 20 and a["subset_size"] == 100 and a["std"] > 0
    whole = kernel_distance(x[:50], same[:50], subsets=5, subset_size=1000)  # every subset is the whole set
    assert (whole["subset_size"], whole["subsets"], whole["std"]) == (50, 1, 0.0)
    assert whole["mean"] == pytest.approx(mmd2_unbiased(x[:50], same[:50]))
    assert kernel_distance(x, shifted, subsets=5, seed=1) == kernel_distance(x, shifted, subsets=5, seed=1)


@pytest.mark.parametrize("x, y", [(np.zeros((5, 3)), np.zeros((5, 4))), (np.zeros((1, 3)), np.zeros((5, 3))),
                                  (np.zeros(5), np.zeros((5, 1)))])
def test_kid_rejects_mismatched_feature_sets_with_their_shapes(x, y):
    with pytest.raises(ValueError, match=r"got shapes"):
        kernel_distance(x, y)
