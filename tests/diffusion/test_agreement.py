"""One DDPM and one DDIM step agree with diffusers' schedulers, an independent implementation."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from kinema.diffusion import make_schedule, spaced_timesteps  # noqa: E402
from kinema.diffusion.process import to_prediction  # noqa: E402
from kinema.diffusion.samplers import ddim_step, ddpm_step  # noqa: E402

DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
N = 1000


def _theirs(cls, name, prediction, **kw):
    """A diffusers scheduler for the same schedule, its tables recomputed in float64.

    diffusers keeps alpha_bar in float32, whose cumulative product is off by ~1e-5 relative near
    t = N-1; there x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) amplifies that ~160x. In
    float64 both implementations are exact enough that any remaining gap is a formula difference.
    """
    sched = cls(num_train_timesteps=N, beta_schedule=DIFFUSERS_SCHEDULE[name], prediction_type=
                {"eps": "epsilon", "v": "v_prediction"}[prediction], clip_sample=False, **kw)
    sched.betas = sched.betas.double()
    sched.alphas = 1.0 - sched.betas
    sched.alphas_cumprod = torch.cumprod(sched.alphas, dim=0)
    return sched


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_betas_match(name):
    ours = make_schedule(name, N)
    theirs = _theirs(diffusers.DDPMScheduler, name, "eps")
    torch.testing.assert_close(ours.betas, theirs.betas, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("num_steps", [1000, 50])
def test_ddpm_step_matches_diffusers(name, prediction, num_steps):
    schedule = make_schedule(name, N)
    theirs = _theirs(diffusers.DDPMScheduler, name, prediction, variance_type="fixed_small")
    theirs.set_timesteps(num_steps)
    ts = spaced_timesteps(N, num_steps, "leading")
    assert torch.equal(ts, theirs.timesteps)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 3, 4, 8, 8, generator=g, dtype=torch.float64)
    out = torch.randn(2, 3, 4, 8, 8, generator=g, dtype=torch.float64)
    for i in [0, len(ts) // 3, len(ts) // 2, len(ts) - 2, len(ts) - 1]:
        t = int(ts[i])
        s = int(ts[i + 1]) if i + 1 < len(ts) else -1
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        tb, sb = torch.full((2,), t), torch.full((2,), s)
        pred = to_prediction(out, x_t, tb, schedule=schedule, prediction=prediction)
        ours = ddpm_step(pred, x_t, tb, sb, schedule=schedule, noise=noise, variance="small")
        ref = theirs.step(out, t, x_t, generator=torch.Generator().manual_seed(i)).prev_sample
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(name, prediction, eta):
    schedule = make_schedule(name, N)
    theirs = _theirs(diffusers.DDIMScheduler, name, prediction)
    theirs.set_timesteps(50)
    ts = spaced_timesteps(N, 50, "leading")
    assert torch.equal(ts, theirs.timesteps)
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(2, 3, 4, 8, 8, generator=g, dtype=torch.float64)
    out = torch.randn(2, 3, 4, 8, 8, generator=g, dtype=torch.float64)
    for i in [0, 10, 25, 48, 49]:
        t = int(ts[i])
        s = int(ts[i + 1]) if i + 1 < len(ts) else -1
        noise = torch.randn(x_t.shape, generator=g, dtype=torch.float64)
        tb, sb = torch.full((2,), t), torch.full((2,), s)
        pred = to_prediction(out, x_t, tb, schedule=schedule, prediction=prediction)
        ours = ddim_step(pred, x_t, tb, sb, schedule=schedule, noise=noise, eta=eta)
        ref = theirs.step(out, t, x_t, eta=eta, variance_noise=noise).prev_sample
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
