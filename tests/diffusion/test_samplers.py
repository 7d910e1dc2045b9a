"""Samplers: one shared contract for every sampler, and exactness on Gaussian data whose denoiser is known."""

import itertools
import math

import pytest
import torch

from kinema.diffusion import (SAMPLERS, Denoiser, bind, clip_x0, get_sampler, make_schedule, sampling_denoiser,
                              spaced_timesteps)
from kinema.diffusion.schedules import timesteps_for
from kinema.diffusion.process import q_sample
from kinema.types import PREDICTION_TYPES, Prediction

N = 1000

# extra option sets per sampler; a sampler not listed runs with its defaults
OPTIONS = {"ddpm": [{}, {"variance": "large"}], "ddim": [{"eta": 0.0}, {"eta": 1.0}],
           "dpmpp_2m_sde": [{}, {"eta": 0.5}]}
CASES = [(name, opts) for name in sorted(SAMPLERS) for opts in OPTIONS.get(name, [{}])]
STOCHASTIC = {("ddpm", ()), ("ddpm", (("variance", "large"),)), ("ddim", (("eta", 1.0),)), ("dpmpp_2m_sde", ()),
              ("dpmpp_2m_sde", (("eta", 0.5),))}
DETERMINISTIC = {("ddim", (("eta", 0.0),)), ("euler", ()), ("heun", ()), ("dpmpp_2m", ())}


def _key(name, opts):
    return name, tuple(sorted(opts.items()))


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- the contract shared by every sampler ----


@pytest.mark.parametrize("name,opts", CASES, ids=["-".join([n, *map(str, o.values())]) for n, o in CASES])
@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_sampler_contract(name, opts, schedule_name, prediction, dtype):
    schedule = make_schedule(schedule_name, N)
    denoise = Denoiser(lambda x, t: 0.5 * x, schedule, prediction=prediction)
    timesteps = spaced_timesteps(N, 8, "trailing")
    x_T = torch.randn(2, 3, 4, 6, 6, generator=_gen(0)).to(dtype)
    x_T_copy = x_T.clone()
    sampler = get_sampler(name)

    calls = []
    out = sampler(denoise, x_T, timesteps, schedule=schedule, generator=_gen(1), callback=calls.append, **opts)
    assert out.shape == x_T.shape and out.dtype == x_T.dtype and out.device == x_T.device
    assert bool(torch.isfinite(out).all())
    assert torch.equal(x_T, x_T_copy), "the sampler must not modify x_T in place"

    # progress goes through the callback, once per timestep, in order
    assert [c["i"] for c in calls] == list(range(len(timesteps)))
    for c, t in zip(calls, timesteps.tolist()):
        assert set(c) == {"i", "t", "x", "x0"}
        assert c["t"].shape == (2,) and bool((c["t"] == t).all())
        assert c["x"].shape == x_T.shape and c["x0"].shape == x_T.shape
    assert torch.equal(calls[0]["x"], x_T)

    # reproducible under a generator; stochastic samplers depend on its seed, deterministic ones do not
    again = sampler(denoise, x_T, timesteps, schedule=schedule, generator=_gen(1), **opts)
    assert torch.equal(out, again)
    other = sampler(denoise, x_T, timesteps, schedule=schedule, generator=_gen(2), **opts)
    if _key(name, opts) in STOCHASTIC:
        assert not torch.allclose(out, other)
    if _key(name, opts) in DETERMINISTIC:
        assert torch.equal(out, other)


def test_registry_maps_names_to_samplers():
    assert {"ddpm", "ddim", "euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"} <= set(SAMPLERS)
    for name, fn in SAMPLERS.items():
        assert get_sampler(name) is fn


@pytest.mark.parametrize("name", ["", "lms", "DDIM"])
def test_get_sampler_rejects_unknown_name(name):
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler(name)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("timesteps", [[], [1, 5, 9], [9, 9, 3], [9, 5, -1]])
def test_samplers_reject_bad_timesteps(name, timesteps):
    schedule = make_schedule("cosine", 10)
    denoise = Denoiser(lambda x, t: 0 * x, schedule)
    with pytest.raises(ValueError, match="descending"):
        get_sampler(name)(denoise, torch.zeros(1, 1, 1, 2, 2), torch.tensor(timesteps, dtype=torch.long),
                          schedule=schedule)


def test_sampler_option_errors():
    schedule = make_schedule("cosine", 100)
    denoise = Denoiser(lambda x, t: 0 * x, schedule)
    x_T, ts = torch.zeros(1, 1, 1, 2, 2), spaced_timesteps(100, 5)
    with pytest.raises(ValueError, match="eta"):
        get_sampler("ddim")(denoise, x_T, ts, schedule=schedule, eta=-0.5)
    with pytest.raises(ValueError, match="'huge'"):
        get_sampler("ddpm")(denoise, x_T, ts, schedule=schedule, variance="huge")
    with pytest.raises(ValueError, match="learned_variance"):
        get_sampler("ddpm")(denoise, x_T, ts, schedule=schedule, variance="learned")


def test_ddpm_uses_learned_variance_when_present():
    schedule = make_schedule("cosine", 100)
    ts = spaced_timesteps(100, 10)
    x_T = torch.randn(2, 1, 2, 4, 4, generator=_gen(0))

    def model(v):
        return lambda x, t: torch.cat([0.5 * x, torch.full_like(x, v)], dim=1)

    outs = [get_sampler("ddpm")(Denoiser(model(v), schedule, learned_variance=True), x_T, ts, schedule=schedule,
                                generator=_gen(1)) for v in (-1.0, 1.0)]
    assert not torch.allclose(*outs)  # var_frac reaches the step
    fixed = get_sampler("ddpm")(Denoiser(model(-1.0), schedule, learned_variance=True), x_T, ts, schedule=schedule,
                                generator=_gen(1), variance="small")
    torch.testing.assert_close(outs[0], fixed)  # v = -1 is exactly the small (posterior) variance


# ---- wrappers ----


def test_bind_passes_keyword_arguments():
    schedule = make_schedule("cosine", 100)
    seen = []

    def model(x, t, *, cond, scale):
        seen.append((cond, scale))
        return scale * x

    denoise = bind(Denoiser(model, schedule, prediction="x0"), cond="a cat", scale=0.25)
    x_T = torch.randn(1, 1, 2, 4, 4, generator=_gen(0))
    calls = []
    get_sampler("ddim")(denoise, x_T, spaced_timesteps(100, 3), schedule=schedule, callback=calls.append)
    assert seen == [("a cat", 0.25)] * 3
    torch.testing.assert_close(calls[0]["x0"], 0.25 * x_T)


@pytest.mark.parametrize("scalar_t", [False, True])
def test_clip_x0_clamps_and_keeps_eps_consistent(scalar_t):
    schedule = make_schedule("linear", N)
    raw = Denoiser(lambda x, t: 3 * x, schedule, prediction="x0", learned_variance=False)
    denoise = clip_x0(raw, schedule=schedule)
    x_t = torch.randn(3, 2, 2, 4, 4, generator=_gen(0), dtype=torch.float64)
    t = torch.tensor(400) if scalar_t else torch.tensor([10, 400, 900])
    pred, unclipped = denoise(x_t, t), raw(x_t, t)
    assert pred.x0.min().item() >= -1 and pred.x0.max().item() <= 1
    assert (unclipped.x0.abs() > 1).any(), "the toy must actually need clipping"
    torch.testing.assert_close(pred.x0, unclipped.x0.clamp(-1, 1))
    # the pair still explains x_t: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps
    ab = schedule.alpha_bar(t.expand(3)).reshape(3, 1, 1, 1, 1)
    torch.testing.assert_close(ab.sqrt() * pred.x0.double() + (1 - ab).sqrt() * pred.eps.double(), x_t,
                               rtol=0, atol=1e-5)


def test_the_sampling_denoiser_clips_pixels_to_their_range_but_not_latents():
    schedule = make_schedule("linear", N)
    x_t = torch.randn(2, 3, 2, 4, 4, generator=_gen(0))
    t = torch.tensor([100, 700])
    pixels = sampling_denoiser(lambda x, t: 3 * x, schedule, prediction="x0")(x_t, t)
    latents = sampling_denoiser(lambda x, t: 3 * x, schedule, prediction="x0", latent=True)(x_t, t)
    assert pixels.x0.abs().max() <= 1 and (3 * x_t).abs().max() > 1
    torch.testing.assert_close(latents.x0, 3 * x_t)  # a latent's tails of many stds are the picture's detail


def test_clip_x0_passes_var_frac_through():
    schedule = make_schedule("cosine", 100)
    raw = Denoiser(lambda x, t: torch.cat([x, 0.5 * torch.ones_like(x)], 1), schedule, learned_variance=True)
    pred = clip_x0(raw, schedule=schedule)(torch.randn(1, 1, 1, 2, 2), torch.tensor([5]))
    torch.testing.assert_close(pred.var_frac, torch.full((1, 1, 1, 2, 2), 0.75))


# ---- Gaussian data: the exact denoiser is known ----

MU, S = 0.3, 0.5  # data x0 ~ N(MU, S^2) independently per element


def _ab(schedule, t, ndim):
    return schedule.alpha_bar(t).reshape(-1, *([1] * (ndim - 1)))


def _gaussian_denoiser(schedule, mu=MU, s=S, shift=0.0):
    """The exact posterior mean E[x0 | x_t] of Gaussian data (plus an optional deliberate error `shift`)."""

    def denoise(x_t, t):
        ab = _ab(schedule, t, x_t.ndim)
        x0 = mu + ab.sqrt() * s**2 / (ab * s**2 + 1 - ab) * (x_t - ab.sqrt() * mu) + shift
        return Prediction(x0=x0, eps=(x_t - ab.sqrt() * x0) / (1 - ab).sqrt())

    return denoise


def _x_T(schedule, timesteps, n, seed):
    """x_T ~ q(x_{t_max}) = N(sqrt(ab) MU, ab S^2 + 1 - ab), the exact marginal at the first step."""
    ab = schedule.alphas_cumprod[timesteps[0]].item()
    z = torch.randn(n, 1, 1, 1, 1, generator=_gen(seed), dtype=torch.float64)
    return math.sqrt(ab) * MU + math.sqrt(ab * S**2 + 1 - ab) * z


def _looks_like_data(x, tol):
    """Whether samples match N(MU, S^2): the mean within 4 standard errors, the std within `tol` relative."""
    n = x.numel()
    mean_ok = abs(x.mean().item() - MU) < 4 * S / math.sqrt(n)
    std_ok = abs(x.std().item() / S - 1) < tol
    return mean_ok and std_ok


def _ddim_gain(schedule, timesteps):
    """The slope C of DDIM(eta=0)'s affine map x_T -> x_0 on this Gaussian toy, by a scalar recursion.

    One step t -> s maps x_t - m_t to c (x_t - m_t) with
    c = (sqrt(ab_s ab_t) S^2 + sqrt((1 - ab_s)(1 - ab_t))) / (ab_t S^2 + 1 - ab_t).
    """
    ts = timesteps.tolist() + [-1]
    gain = 1.0
    for t, s in itertools.pairwise(ts):
        ab_t = schedule.alphas_cumprod[t].item()
        ab_s = schedule.alphas_cumprod[s].item() if s >= 0 else 1.0
        gain *= (math.sqrt(ab_s * ab_t) * S**2 + math.sqrt((1 - ab_s) * (1 - ab_t))) / (ab_t * S**2 + 1 - ab_t)
    return gain


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_is_the_exact_affine_map_on_gaussian_data(schedule_name, spacing):
    # the exact denoiser is affine in x_t, so 50 DDIM steps are an affine map mu + C (x_T - m_T) with C in closed form
    schedule = make_schedule(schedule_name, N)
    ts = spaced_timesteps(N, 50, spacing)
    x_T = _x_T(schedule, ts, 2_000, seed=0)
    m_T = math.sqrt(schedule.alphas_cumprod[ts[0]].item()) * MU
    out = get_sampler("ddim")(_gaussian_denoiser(schedule), x_T, ts, schedule=schedule, eta=0.0)
    torch.testing.assert_close(out, MU + _ddim_gain(schedule, ts) * (x_T - m_T), rtol=0, atol=1e-10)


# the exact denoiser and two slightly wrong ones (a biased mean; too narrow a data std), run side by side
VARIANTS = [{"mu": MU, "s": S, "shift": 0.0}, {"mu": MU, "s": S, "shift": 0.03}, {"mu": MU, "s": 0.45, "shift": 0.0}]


def _sample_variants(sampler, schedule, timesteps, n, seed, **options):
    """One sampler run over len(VARIANTS) * n items: item block k is denoised by VARIANTS[k], all from the same x_T."""
    x_T = _x_T(schedule, timesteps, n, seed).repeat(len(VARIANTS), 1, 1, 1, 1)
    per_item = {key: torch.tensor([v[key] for v in VARIANTS], dtype=torch.float64).repeat_interleave(n)
                .reshape(-1, 1, 1, 1, 1) for key in ("mu", "s", "shift")}
    out = get_sampler(sampler)(_gaussian_denoiser(schedule, **per_item), x_T, timesteps, schedule=schedule,
                               generator=_gen(seed + 1), **options)
    return out.split(n)


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_ddim_eta0_recovers_gaussian_data(schedule_name):
    # with every step the discretisation error of DDIM is far below the 2% tolerance (< 0.4% in std)
    schedule = make_schedule(schedule_name, N)
    exact, shifted, narrow = _sample_variants("ddim", schedule, spaced_timesteps(N, N, "trailing"), 20_000, seed=1,
                                              eta=0.0)
    assert _looks_like_data(exact, tol=0.02)
    # the same check fails for a slightly wrong denoiser
    assert not _looks_like_data(shifted, tol=0.02)
    assert not _looks_like_data(narrow, tol=0.02)


@pytest.mark.parametrize("schedule_name", [pytest.param("linear", marks=pytest.mark.slow), "cosine"])
def test_ddpm_ancestral_recovers_gaussian_data(schedule_name):
    # the small-variance chain ignores Var(x0 | x_t); over the full chain that costs < 1% of std
    # (0.4% for cosine), and 12k samples put 4 standard errors of the std at 2.6%
    schedule = make_schedule(schedule_name, N)
    exact, shifted, narrow = _sample_variants("ddpm", schedule, spaced_timesteps(N, N, "leading"), 12_000, seed=2,
                                              variance="small")
    assert _looks_like_data(exact, tol=0.03)
    assert not _looks_like_data(shifted, tol=0.03)
    assert not _looks_like_data(narrow, tol=0.03)


def test_gaussian_denoiser_is_the_posterior_mean():
    # the toy's own premise, checked by regression: E[x0 | x_t] is what x_t predicts best
    schedule = make_schedule("cosine", N)
    t = torch.full((200_000,), 600)
    x0 = MU + S * torch.randn(200_000, 1, 1, 1, 1, generator=_gen(4), dtype=torch.float64)
    x_t = q_sample(x0, t, torch.randn(x0.shape, generator=_gen(5), dtype=torch.float64), schedule=schedule)
    pred = _gaussian_denoiser(schedule)(x_t, t)
    residual = (x0 - pred.x0).flatten()
    assert abs(residual.mean().item()) < 4 * residual.std().item() / math.sqrt(len(residual))
    # the residual of the optimal estimator is uncorrelated with x_t
    corr = torch.corrcoef(torch.stack([residual, x_t.flatten()]))[0, 1].item()
    assert abs(corr) < 4 / math.sqrt(len(residual))


# ---- the ODE / SDE solvers (Euler, Heun, DPM-Solver++) on the Gaussian toy ----


def _ode_gain(schedule, t_max):
    """The exact probability-flow map of the Gaussian toy: x0 - MU = S / std(x_T) (x_T - m_T)."""
    ab = schedule.alphas_cumprod[t_max].item()
    return S / math.sqrt(ab * S**2 + 1 - ab)


def _gain(name, schedule, ts):
    """The slope of a deterministic sampler's (affine) map x_T -> x0 on the Gaussian toy, measured."""
    x_T = torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(2, 1, 1, 1, 1)
    out = get_sampler(name)(_gaussian_denoiser(schedule), x_T, ts, schedule=schedule)
    return (out[1] - out[0]).item()


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_euler_is_ddim_eta0(schedule_name):
    """DDIM with eta = 0 is exactly Euler's method on the ODE in sigma (Song et al. 2021, §4.3)."""
    schedule = make_schedule(schedule_name, N)
    ts = spaced_timesteps(N, 12, "trailing")
    x_T = torch.randn(3, 1, 2, 3, 3, generator=_gen(3), dtype=torch.float64)
    denoise = _gaussian_denoiser(schedule)
    a = get_sampler("euler")(denoise, x_T, ts, schedule=schedule)
    b = get_sampler("ddim")(denoise, x_T, ts, schedule=schedule, eta=0.0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_higher_order_solvers_are_closer_to_the_exact_ode(schedule_name):
    """At 40 Karras steps Heun and DPM-Solver++(2M) land far closer to the exact ODE map than Euler."""
    schedule = make_schedule(schedule_name, N)
    ts = timesteps_for(schedule, 40, "karras")
    exact = _ode_gain(schedule, int(ts[0]))
    err = {name: abs(_gain(name, schedule, ts) - exact) for name in ("euler", "heun", "dpmpp_2m")}
    assert err["heun"] < err["euler"] / 5 and err["dpmpp_2m"] < err["euler"] / 5, err
    many = timesteps_for(schedule, 200, "karras")  # and all converge to it, Euler at first order
    for name, tol in (("euler", 0.02), ("heun", 0.002), ("dpmpp_2m", 0.002)):
        assert abs(_gain(name, schedule, many) - _ode_gain(schedule, int(many[0]))) < tol * exact


@pytest.mark.parametrize("name,steps,tol", [("heun", 50, 0.02), ("dpmpp_2m", 50, 0.02), ("dpmpp_2m_sde", 200, 0.03)])
def test_solvers_recover_gaussian_data(name, steps, tol):
    schedule = make_schedule("cosine", N)
    exact, shifted, narrow = _sample_variants(name, schedule, timesteps_for(schedule, steps, "karras"), 12_000, seed=4)
    assert _looks_like_data(exact, tol=tol)
    assert not _looks_like_data(shifted, tol=tol)
    assert not _looks_like_data(narrow, tol=tol)


def test_dpmpp_2m_sde_rejects_eta_zero():
    schedule = make_schedule("cosine", N)
    with pytest.raises(ValueError, match="eta must be > 0"):
        get_sampler("dpmpp_2m_sde")(_gaussian_denoiser(schedule), torch.zeros(1, 1, 1, 1, 1),
                                    spaced_timesteps(N, 4), schedule=schedule, eta=0.0)


def test_heun_calls_the_model_twice_per_step_but_once_on_the_last():
    schedule = make_schedule("cosine", N)
    calls = []

    def counting(x_t, t):
        calls.append(int(t[0]))
        return _gaussian_denoiser(schedule)(x_t, t)

    get_sampler("heun")(counting, torch.zeros(1, 1, 1, 1, 1, dtype=torch.float64), torch.tensor([900, 500, 100]),
                        schedule=schedule)
    assert calls == [900, 500, 500, 100, 100]


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [1, 2, 10, 25, 100, 500])
def test_karras_spacing(schedule_name, steps):
    schedule = make_schedule(schedule_name, N)
    ts = timesteps_for(schedule, steps, "karras")
    assert ts.dtype == torch.int64 and bool((ts[:-1] > ts[1:]).all())
    assert len(ts) == steps if steps <= 50 else steps // 2 <= len(ts) <= steps  # sparse top levels: fewer
    sig = schedule.sigmas()[ts]
    assert sig[0] <= 80 * 1.2  # capped near EDM's sigma_max
    if 2 <= steps <= 25:  # sigma^(1/7) follows a straight ramp from the top to the smallest level (eq. 5)
        assert ts[-1] == 0
        ramp = torch.linspace(sig[0] ** (1 / 7), sig[-1] ** (1 / 7), steps, dtype=torch.float64)
        assert (sig ** (1 / 7) - ramp).abs().max() < 0.25 * (ramp[0] - ramp[-1]) / max(steps - 1, 1)  # snapping
