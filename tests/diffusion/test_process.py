"""The Gaussian process: q_sample moments, the posterior against brute-force Bayes, output conversions, KL, NLL."""

import math

import pytest
import torch

from kinema.diffusion.process import (
    discretized_gaussian_log_likelihood,
    learned_log_variance,
    normal_kl,
    q_posterior,
    q_sample,
    step_log_variances,
    target_for,
    to_prediction,
)
from kinema.diffusion.schedules import SCHEDULES, make_schedule
from kinema.types import PREDICTION_TYPES

N = 1000


def _schedule(name):
    return make_schedule(name, N)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- forward process ----


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_q_sample_moments(name, t):
    schedule = _schedule(name)
    n, x0_value = 200_000, 0.7
    x0 = torch.full((n, 1, 1, 1, 1), x0_value, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=_gen(t), dtype=torch.float64)
    x_t = q_sample(x0, torch.full((n,), t), eps, schedule=schedule)
    ab = schedule.alphas_cumprod[t].item()
    mean, var = x_t.mean().item(), x_t.var().item()
    # q(x_t | x0) = N(sqrt(ab) x0, 1 - ab); allow 5 standard errors of each estimate
    assert abs(mean - math.sqrt(ab) * x0_value) < 5 * math.sqrt((1 - ab) / n)
    assert abs(var - (1 - ab)) < 5 * (1 - ab) * math.sqrt(2 / n)


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_sample_uses_each_items_timestep(name):
    schedule = _schedule(name)
    t = torch.tensor([0, 10, 500, 999])
    x0 = torch.randn(4, 2, 3, 4, 4, generator=_gen(), dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=_gen(1), dtype=torch.float64)
    x_t = q_sample(x0, t, eps, schedule=schedule)
    for i, ti in enumerate(t.tolist()):
        ab = schedule.alphas_cumprod[ti]
        torch.testing.assert_close(x_t[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * eps[i], rtol=0, atol=1e-12)
    assert q_sample(x0.float(), t, eps.float(), schedule=schedule).dtype == torch.float32


# ---- the posterior against brute-force Bayes ----


def _log_normal(x, mean, var):
    return -0.5 * (x - mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)


def _brute_force_posterior(schedule, x0, x_t, t, s):
    """Mean and variance of q(x_s | x_t, x0) ∝ q(x_t | x_s) q(x_s | x0), integrated on a fine grid."""
    ab_t, ab_s = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[s].item()
    grid = torch.linspace(-6, 6, 240_001, dtype=torch.float64)
    log_p = _log_normal(x_t, math.sqrt(ab_t / ab_s) * grid, 1 - ab_t / ab_s) + _log_normal(
        grid, math.sqrt(ab_s) * x0, 1 - ab_s
    )
    p = torch.exp(log_p - log_p.max())
    p = p / p.sum()  # the grid is uniform, so the spacing cancels
    mean = (p * grid).sum().item()
    var = (p * (grid - mean) ** 2).sum().item()
    return mean, var


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("t,s", [(10, 9), (300, 299), (900, 899), (500, 20), (900, 100), (999, 0)])
def test_q_posterior_matches_brute_force_bayes(name, t, s):
    schedule = _schedule(name)
    x0_value = 0.4
    ab_t = schedule.alphas_cumprod[t].item()
    x_t_value = math.sqrt(ab_t) * x0_value + 0.8 * math.sqrt(1 - ab_t)  # a typical x_t
    mean, var = q_posterior(
        torch.tensor([x0_value], dtype=torch.float64),
        torch.tensor([x_t_value], dtype=torch.float64),
        torch.tensor([t]),
        torch.tensor([s]),
        schedule=schedule,
    )
    bf_mean, bf_var = _brute_force_posterior(schedule, x0_value, x_t_value, t, s)
    assert mean.item() == pytest.approx(bf_mean, rel=1e-6, abs=1e-9)
    assert var.item() == pytest.approx(bf_var, rel=1e-6)


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_posterior_to_clean_data_is_x0(name):
    schedule = _schedule(name)
    x0 = torch.randn(3, 2, 2, 4, 4, generator=_gen(), dtype=torch.float64)
    x_t = torch.randn(x0.shape, generator=_gen(1), dtype=torch.float64)
    mean, var = q_posterior(x0, x_t, torch.tensor([0, 50, 999]), torch.tensor([-1, -1, -1]), schedule=schedule)
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-12)
    assert var.shape == x0.shape and bool((var.abs() < 1e-15).all())


# ---- network output -> Prediction ----


def _x0_eps_xt(name, t, dtype=torch.float64):
    schedule = _schedule(name)
    x0 = torch.randn(len(t), 3, 2, 4, 4, generator=_gen(), dtype=dtype)
    eps = torch.randn(x0.shape, generator=_gen(1), dtype=dtype)
    return schedule, x0, eps, q_sample(x0, t, eps, schedule=schedule)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_to_prediction_inverts_the_target(name, prediction):
    t = torch.tensor([0, 1, 250, 700, 999])
    schedule, x0, eps, x_t = _x0_eps_xt(name, t)
    output = target_for(prediction, x0, eps, t, schedule=schedule)
    pred = to_prediction(output, x_t, t, schedule=schedule, prediction=prediction)
    assert pred.var_frac is None
    assert pred.x0.dtype == pred.eps.dtype == torch.float64
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_to_prediction_scalar_timestep(prediction):
    t = torch.tensor(400)
    schedule, x0, eps, x_t = _x0_eps_xt("cosine", torch.full((2,), 400))
    output = target_for(prediction, x0, eps, t.expand(2), schedule=schedule)
    pred = to_prediction(output, x_t, t, schedule=schedule, prediction=prediction)
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_to_prediction_learned_variance_split(prediction):
    t = torch.tensor([3, 600])
    schedule, x0, eps, x_t = _x0_eps_xt("linear", t)
    v = torch.rand(x0.shape, generator=_gen(2), dtype=torch.float64) * 2 - 1  # the network's v in [-1, 1]
    v[0, 0, 0, 0, 0], v[1, 0, 0, 0, 0] = -1.0, 1.0
    output = torch.cat([target_for(prediction, x0, eps, t, schedule=schedule), v], dim=1)  # (B, 2C, T, H, W)
    pred = to_prediction(output, x_t, t, schedule=schedule, prediction=prediction, learned_variance=True)
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-9)
    assert pred.var_frac.shape == x0.shape
    torch.testing.assert_close(pred.var_frac.double(), (v + 1) / 2, rtol=0, atol=1e-6)
    assert pred.var_frac.min().item() == 0.0 and pred.var_frac.max().item() == 1.0


@pytest.mark.parametrize("channels,learned", [(4, False), (2, False), (3, True), (4, True), (12, True)])
def test_to_prediction_rejects_wrong_output_shape(channels, learned):
    schedule = _schedule("cosine")
    x_t = torch.randn(2, 3, 2, 4, 4)
    output = torch.randn(2, channels, 2, 4, 4)
    with pytest.raises(ValueError, match="shape"):
        to_prediction(output, x_t, torch.tensor([1, 2]), schedule=schedule, prediction="eps",
                      learned_variance=learned)


def test_to_prediction_and_target_reject_unknown_prediction():
    schedule = _schedule("cosine")
    x = torch.randn(2, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="'score'"):
        to_prediction(x, x, torch.tensor([1, 2]), schedule=schedule, prediction="score")
    with pytest.raises(ValueError, match="'score'"):
        target_for("score", x, x, torch.tensor([1, 2]), schedule=schedule)


# ---- KL ----


def test_normal_kl_nonnegative_and_zero_iff_equal():
    g = _gen()
    m1 = torch.randn(10_000, generator=g, dtype=torch.float64)
    m2 = torch.randn(10_000, generator=g, dtype=torch.float64)
    lv1 = 3 * torch.randn(10_000, generator=g, dtype=torch.float64)
    lv2 = 3 * torch.randn(10_000, generator=g, dtype=torch.float64)
    assert bool((normal_kl(m1, lv1, m2, lv2) >= -1e-12).all())
    assert bool((normal_kl(m1, lv1, m1, lv1) == 0).all())
    assert bool((normal_kl(m1, lv1, m1 + 0.1, lv1) > 0).all())
    assert bool((normal_kl(m1, lv1, m1, lv1 + 0.1) > 0).all())


@pytest.mark.parametrize("m1,s1,m2,s2", [(0.0, 1.0, 0.0, 2.0), (0.3, 0.5, -0.2, 0.7), (1.0, 0.2, 0.0, 1.0)])
def test_normal_kl_matches_numerical_integration(m1, s1, m2, s2):
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    dx = (x[1] - x[0]).item()
    log_p, log_q = _log_normal(x, m1, s1**2), _log_normal(x, m2, s2**2)
    numeric = (torch.exp(log_p) * (log_p - log_q)).sum().item() * dx  # ∫ p log(p / q)
    ours = normal_kl(*(torch.tensor(v, dtype=torch.float64) for v in (m1, 2 * math.log(s1), m2, 2 * math.log(s2))))
    assert ours.item() == pytest.approx(numeric, rel=1e-8, abs=1e-12)


# ---- the discretized decoder likelihood ----

LEVELS = torch.arange(256, dtype=torch.float64) / 255 * 2 - 1  # the 256 data levels in [-1, 1]


@pytest.mark.parametrize("mean", [-1.3, -1.0, -0.3, 0.0, 0.1234, 0.99, 1.5])
@pytest.mark.parametrize("scale", [1e-3, 0.02, 0.3, 3.0])
def test_discretized_likelihood_sums_to_one(mean, scale):
    log_p = discretized_gaussian_log_likelihood(
        LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, math.log(scale))
    )
    assert bool((log_p <= 1e-12).all())
    # the bins partition the real line, so the probabilities of the levels sum to one
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("mean", [-0.95, -0.2, 0.1234, 0.6])
def test_discretized_likelihood_peaks_at_nearest_level(mean):
    log_p = discretized_gaussian_log_likelihood(
        LEVELS, torch.full_like(LEVELS, mean), torch.full_like(LEVELS, math.log(0.002))
    )
    assert log_p.argmax().item() == (LEVELS - mean).abs().argmin().item()


# ---- learned variance ----


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("t,s", [(1, 0), (500, 499), (999, 998), (700, 300), (50, -1), (0, -1)])
def test_learned_log_variance_interpolates_beta_and_posterior(name, t, s):
    schedule = _schedule(name)
    ab = schedule.alphas_cumprod
    ab_t, ab_s = ab[t].item(), (ab[s].item() if s >= 0 else 1.0)
    beta = 1 - ab_t / ab_s  # the pair's beta
    post = beta * (1 - ab_s) / (1 - ab_t)  # the pair's posterior variance (0 at s = -1)
    if s < 0:  # clipped to the posterior variance of the full chain's step 1 -> 0
        post = (1 - ab[1] / ab[0]).item() * (1 - ab[0].item()) / (1 - ab[1].item())
    frac = torch.linspace(0, 1, 11, dtype=torch.float64).reshape(11, 1, 1, 1, 1)
    tt, ss = torch.full((11,), t), torch.full((11,), s)
    log_var = learned_log_variance(frac, tt, ss, schedule=schedule).flatten()
    assert log_var[-1].item() == pytest.approx(math.log(beta), rel=1e-10)  # v = 1: log beta
    assert log_var[0].item() == pytest.approx(math.log(post), rel=1e-10)  # v = 0: log posterior variance
    assert bool((log_var[1:] >= log_var[:-1]).all())  # monotone in v, since posterior var <= beta
    log_post, log_beta = step_log_variances(tt, ss, schedule=schedule, like=frac)
    torch.testing.assert_close(log_var, (frac * log_beta + (1 - frac) * log_post).flatten())
