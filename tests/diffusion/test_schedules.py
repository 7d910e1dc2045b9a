"""Schedules: beta tables against their closed forms, spacings' contract, respacing and validation."""

import math

import pytest
import torch

from kinema.diffusion.schedules import (
    SCHEDULES,
    SPACINGS,
    Schedule,
    cosine_betas,
    linear_betas,
    make_schedule,
    respace,
    shift_schedule,
    spaced_timesteps,
)

# ---- beta tables ----


@pytest.mark.parametrize("n", [1, 2, 10, 1000])
def test_linear_betas_endpoints_and_monotone(n):
    betas = linear_betas(n, 1e-4, 0.02)
    assert betas.shape == (n,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    if n > 1:
        assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
        assert bool((betas[1:] > betas[:-1]).all())


@pytest.mark.parametrize("n", [50, 100, 1000])
def test_make_linear_scales_endpoints_with_num_steps(n):
    # DDPM's endpoints are for N = 1000; a shorter table scales both by 1000 / N
    betas = make_schedule("linear", n).betas
    assert betas[0].item() == pytest.approx(1e-4 * 1000 / n, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02 * 1000 / n, rel=1e-12)


def _cosine_f(t: float, n: int, s: float = 0.008) -> float:
    return math.cos((t / n + s) / (1 + s) * math.pi / 2) ** 2


@pytest.mark.parametrize("n", [10, 100, 1000])
def test_cosine_alpha_bar_follows_closed_form(n):
    # improved DDPM eq. 17: alpha_bar(t) = f(t) / f(0) at continuous time t; timestep index t covers
    # the interval (t, t+1], so alphas_cumprod[t] = f(t + 1) / f(0) wherever beta was not clipped
    schedule = make_schedule("cosine", n)
    betas, ab = schedule.betas, schedule.alphas_cumprod
    assert bool((betas > 0).all()) and bool((betas <= 0.999).all())
    clipped = betas >= 0.999
    assert not bool(clipped[: n - 1].any()), "only the last step may be clipped"
    expected = torch.tensor([_cosine_f(t + 1, n) / _cosine_f(0, n) for t in range(n)], dtype=torch.float64)
    free = ~clipped
    torch.testing.assert_close(ab[free], expected[free], rtol=0, atol=1e-6)
    assert bool((ab[1:] < ab[:-1]).all())


def test_cosine_betas_clip_at_max_beta():
    betas = cosine_betas(1000, max_beta=0.5)
    assert betas.max().item() == 0.5
    assert bool((betas <= 0.5).all())


@pytest.mark.parametrize("name", SCHEDULES)
def test_alpha_bar_table_and_clean_data(name):
    schedule = make_schedule(name, 100)
    assert schedule.num_steps == 100
    t = torch.tensor([-1, 0, 5, 99])
    ab = schedule.alpha_bar(t)
    assert ab[0].item() == 1.0  # t = -1 is the clean data
    torch.testing.assert_close(ab[1:], schedule.alphas_cumprod[[0, 5, 99]], rtol=0, atol=0)
    torch.testing.assert_close(schedule.alphas_cumprod, torch.cumprod(1 - schedule.betas, 0), rtol=0, atol=0)
    # alpha_bar keeps any index shape
    assert schedule.alpha_bar(torch.tensor([[0, 1], [2, 3]])).shape == (2, 2)


@pytest.mark.parametrize("name", SCHEDULES)
def test_sigmas_closed_form(name):
    schedule = make_schedule(name, 200)
    ab = schedule.alphas_cumprod
    sigma = schedule.sigmas()
    # sigma is the noise-to-signal ratio: x_t / sqrt(ab) = x0 + sigma eps
    torch.testing.assert_close(sigma**2 * ab, 1 - ab, rtol=1e-10, atol=0)
    assert bool((sigma[1:] > sigma[:-1]).all())


@pytest.mark.parametrize("name", ["", "quadratic", "Linear"])
def test_make_schedule_rejects_unknown_name(name):
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule(name, 100)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("num_steps", [0, -1, -1000])
def test_make_schedule_rejects_bad_num_steps(name, num_steps):
    with pytest.raises(ValueError, match=str(num_steps)):
        make_schedule(name, num_steps)


@pytest.mark.parametrize("num_steps", [1, 10, 20])
def test_make_linear_rejects_too_few_steps(num_steps):
    # scaled DDPM betas end at 20 / N, which is not a beta for N <= 20; the error must say so, not crash later
    with pytest.raises(ValueError, match=f"num_steps.*got {num_steps}"):
        make_schedule("linear", num_steps)
    assert make_schedule("linear", 21).betas.max().item() < 1


@pytest.mark.parametrize(
    "betas",
    [
        torch.tensor([0.1, 0.0, 0.2], dtype=torch.float64),
        torch.tensor([0.1, 1.0], dtype=torch.float64),
        torch.tensor([-0.1, 0.5], dtype=torch.float64),
        torch.tensor([0.5, 1.5], dtype=torch.float64),
        torch.tensor([0.5, float("nan")], dtype=torch.float64),
    ],
)
def test_schedule_rejects_betas_outside_open_unit_interval(betas):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        Schedule(betas)


@pytest.mark.parametrize("betas", [torch.zeros(0, dtype=torch.float64), torch.full((2, 2), 0.1)])
def test_schedule_rejects_bad_shapes(betas):
    with pytest.raises(ValueError, match="1-D"):
        Schedule(betas)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("shift", [0.5, 2.0, 3.0])
def test_shift_divides_every_snr_by_its_square(name, shift):
    base, shifted = make_schedule(name, 1000), make_schedule(name, 1000, shift)
    snr = lambda s: s.alphas_cumprod / (1 - s.alphas_cumprod)  # noqa: E731
    torch.testing.assert_close(snr(shifted), snr(base) / shift**2, rtol=1e-9, atol=0)
    assert bool(((shifted.betas > 0) & (shifted.betas < 1)).all())  # still a valid schedule


@pytest.mark.parametrize("name", SCHEDULES)
def test_shift_one_is_the_schedule_itself(name):
    assert torch.equal(make_schedule(name, 100, 1.0).betas, make_schedule(name, 100).betas)


@pytest.mark.parametrize("shift", [0.0, -1.0, float("inf"), float("nan")])
def test_shift_rejects_bad_values(shift):
    with pytest.raises(ValueError, match=f"shift.*got {shift}"):
        shift_schedule(make_schedule("cosine", 10), shift)


# ---- timestep spacings ----

SIZES = [(1, 1), (10, 1), (10, 3), (10, 10), (17, 7), (15, 13), (100, 7), (1000, 50), (1000, 999), (1000, 1000)]


def _check_spacing_contract(t: torch.Tensor, n: int, k: int, spacing: str) -> None:
    assert t.dtype == torch.int64
    assert t.shape == (k,), f"{spacing} N={n} k={k}: got {len(t)} steps"
    assert len(set(t.tolist())) == k, f"{spacing} N={n} k={k}: repeated steps {t.tolist()}"
    assert bool((t[1:] < t[:-1]).all()), f"{spacing} N={n} k={k}: not strictly descending"
    assert 0 <= t.min().item() and t.max().item() <= n - 1, f"{spacing} N={n} k={k}: out of range {t.tolist()}"
    if spacing == "trailing":
        assert t[0].item() == n - 1  # the first step starts from the noisiest timestep
    else:
        assert t[-1].item() == 0  # the last step lands on t = 0


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("n,k", SIZES)
def test_spaced_timesteps_contract(spacing, n, k):
    _check_spacing_contract(spaced_timesteps(n, k, spacing), n, k, spacing)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_spaced_timesteps_contract_exhaustive(spacing):
    # every (N, k) with N <= 64: non-divisible N / k is where float spacings go wrong
    for n in range(1, 65):
        for k in range(1, n + 1):
            _check_spacing_contract(spaced_timesteps(n, k, spacing), n, k, spacing)


@pytest.mark.parametrize("n,k", SIZES)
def test_spacing_shapes(n, k):
    leading = spaced_timesteps(n, k, "leading")
    if k > 1:
        assert set((leading[:-1] - leading[1:]).tolist()) == {n // k}  # a constant stride N // k from 0
    linspace = spaced_timesteps(n, k, "linspace")
    if k > 1:
        assert linspace[0].item() == n - 1  # linspace covers both ends
    trailing = spaced_timesteps(n, k, "trailing")
    if k > 1:
        gaps = (trailing[:-1] - trailing[1:]).double()
        assert bool(((gaps - n / k).abs() <= 1).all())  # strides within one of N / k


def test_full_spacing_is_every_timestep():
    for spacing in SPACINGS:
        assert torch.equal(spaced_timesteps(20, 20, spacing), torch.arange(19, -1, -1))


@pytest.mark.parametrize("spacing", ["", "uniform", "Leading"])
def test_spaced_timesteps_rejects_unknown_spacing(spacing):
    with pytest.raises(ValueError, match="unknown spacing"):
        spaced_timesteps(100, 10, spacing)


@pytest.mark.parametrize("k", [0, -1, 101])
def test_spaced_timesteps_rejects_bad_count(k):
    with pytest.raises(ValueError, match=str(k)):
        spaced_timesteps(100, k, "leading")


# ---- respacing ----


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("k", [1, 10, 37])
def test_respace_keeps_alpha_bar_at_chosen_steps(name, spacing, k):
    schedule = make_schedule(name, 1000)
    t = spaced_timesteps(1000, k, spacing)
    short = respace(schedule, t)
    assert short.num_steps == k
    # the respaced chain visits the chosen steps in ascending order with the original alpha_bar
    torch.testing.assert_close(short.alphas_cumprod, schedule.alpha_bar(t.sort().values), rtol=0, atol=1e-12)
    assert bool(((short.betas > 0) & (short.betas < 1)).all())


def test_respace_of_every_step_is_identity():
    schedule = make_schedule("linear", 100)
    torch.testing.assert_close(respace(schedule, torch.arange(100)).betas, schedule.betas, rtol=0, atol=1e-12)


def test_frame_noise_shares_a_part_of_the_noise_across_frames():
    """eps = sqrt(rho) e_clip + sqrt(1 - rho) e_frame: unit variance, correlation rho between frames of one clip,
    none between clips; 0 keeps the plain draw bit for bit; respacing and shifting keep it."""
    rho = 0.4
    schedule = make_schedule("cosine", 100, frame_noise=rho)
    eps = schedule.noise((64, 1, 6, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(eps.var().item() - 1) < 0.03
    a, b = eps[:, :, 0].flatten(), eps[:, :, 3].flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item() - rho) < 0.05
    assert abs(torch.corrcoef(torch.stack([eps[:32, :, 0].flatten(), eps[32:, :, 0].flatten()]))[0, 1]) < 0.05
    plain = make_schedule("cosine", 100).noise((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain, torch.randn((2, 1, 3, 4, 4), generator=torch.Generator().manual_seed(1)))
    assert respace(schedule, torch.tensor([99, 50, 0])).frame_noise == rho
    assert make_schedule("cosine", 100, shift=2.0, frame_noise=rho).frame_noise == rho
    with pytest.raises(ValueError, match="frame_noise must be in"):
        make_schedule("cosine", 100, frame_noise=1.0)


def test_training_and_sampling_draw_the_schedules_noise():
    from kinema.diffusion.losses import draw_t_eps
    from kinema.diffusion.samplers import generate

    schedule = make_schedule("cosine", 100, frame_noise=0.9)
    x0 = torch.zeros(16, 1, 4, 8, 8)
    _, eps = draw_t_eps(x0, schedule, [torch.Generator().manual_seed(i) for i in range(16)])
    assert torch.corrcoef(torch.stack([eps[:, :, 0].flatten(), eps[:, :, 1].flatten()]))[0, 1] > 0.8
    seen = []

    def denoise(x_t, t):  # records x_T, predicts the noise as zero
        from kinema.types import Prediction

        seen.append(x_t)
        return Prediction(x0=torch.zeros_like(x_t), eps=torch.zeros_like(x_t))

    generate(denoise, (16, 1, 4, 8, 8), schedule=schedule, sampler="ddim", num_steps=2)
    x_T = seen[0]
    assert torch.corrcoef(torch.stack([x_T[:, :, 0].flatten(), x_T[:, :, 1].flatten()]))[0, 1] > 0.8
