"""Classifier-free guidance as a denoiser wrapper, and SDEdit."""

import pytest
import torch

from kinema.diffusion import Denoiser, edit, guided, make_schedule, sample_ddim
from kinema.diffusion.process import alpha_bar_at
from kinema.types import Prediction

SCHEDULE = make_schedule("cosine", 100)


def _stub(x_t, t, level=0.0):
    """A denoiser whose x0 is `level` everywhere, with eps consistent with x_t."""
    x0 = torch.full_like(x_t, level)
    ab = alpha_bar_at(SCHEDULE, t if t.ndim else t.expand(x_t.shape[0]), x_t)
    return Prediction(x0=x0, eps=((x_t - ab.sqrt() * x0) / (1 - ab).sqrt()).to(x_t.dtype))


def test_scale_one_equals_the_conditional_prediction():
    x, t = torch.randn(2, 1, 3, 4, 4), torch.tensor([40, 70])
    out = guided(_stub, [{"level": 0.0}, {"level": 0.5}], [1.0])(x, t)
    ref = _stub(x, t, 0.5)
    assert torch.equal(out.x0, ref.x0) and torch.equal(out.eps, ref.eps)
    two = guided(_stub, [{"level": 0.0}, {"level": 0.5}, {"level": -0.2}], [1.0, 1.0])(x, t)
    assert torch.equal(two.x0, _stub(x, t, -0.2).x0)


@pytest.mark.parametrize("scales", [[3.0], [0.0], [2.0, 5.0], [0.5, 1.5]])
def test_guidance_is_the_chained_extrapolation(scales):
    levels = [0.0, 0.3, -0.4][: len(scales) + 1]
    x, t = torch.randn(2, 1, 3, 4, 4), torch.tensor([10, 90])
    out = guided(_stub, [{"level": v} for v in levels], scales)(x, t)
    expected = levels[0] + sum(s * (b - a) for s, a, b in zip(scales, levels, levels[1:]))  # p0 + sum s_k (p_k - p_k-1)
    assert torch.allclose(out.x0, torch.full_like(x, expected), atol=1e-6)
    ab = alpha_bar_at(SCHEDULE, t, x)
    assert torch.allclose(x, (ab.sqrt() * out.x0 + (1 - ab).sqrt() * out.eps).float(), atol=1e-5)  # still consistent


def test_zero_weight_branches_are_not_evaluated():
    calls = []

    def counting(x_t, t, level):
        calls.append(level)
        return _stub(x_t, t, level)

    guided(counting, [{"level": 0.0}, {"level": 1.0}], [1.0])(torch.randn(1, 1, 1, 2, 2), torch.tensor([5]))
    assert calls == [1.0]
    calls.clear()
    guided(counting, [{"level": 0.0}, {"level": 1.0}], [4.0])(torch.randn(1, 1, 1, 2, 2), torch.tensor([5]))
    assert calls == [0.0, 1.0]


def test_batched_branches_give_the_same_guidance_in_one_call():
    calls = []

    def levels(x_t, t, level):  # level: a number or one per batch item
        calls.append(x_t.shape[0])
        lv = torch.as_tensor(level, dtype=x_t.dtype).reshape(-1, 1, 1, 1, 1)
        x0 = lv.expand_as(x_t)
        ab = alpha_bar_at(SCHEDULE, t if t.ndim else t.expand(x_t.shape[0]), x_t)
        return Prediction(x0=x0, eps=((x_t - ab.sqrt() * x0) / (1 - ab).sqrt()).to(x_t.dtype))

    def batch_inputs(branches, batch):
        return {"level": [b["level"] for b in branches for _ in range(batch)]}

    chain, scales = [{"level": 0.0}, {"level": 0.3}, {"level": -0.4}], [2.0, 5.0]
    x, t = torch.randn(2, 1, 3, 4, 4), torch.tensor([10, 90])
    one = guided(levels, chain, scales)(x, t)
    assert calls == [2, 2, 2]
    calls.clear()
    batched = guided(levels, chain, scales, batch_inputs)(x, t)
    assert calls == [6]
    torch.testing.assert_close(batched.x0, one.x0)
    torch.testing.assert_close(batched.eps, one.eps)


def test_guided_needs_one_scale_per_step():
    with pytest.raises(ValueError, match="one scale per added condition"):
        guided(_stub, [{}, {}], [1.0, 2.0])


def test_edit_with_an_oracle_returns_the_source_and_starts_at_strength():
    """With a denoiser that always predicts the source, DDIM lands exactly on it from any strength."""
    source = torch.rand(2, 1, 3, 4, 4) * 2 - 1
    seen = []

    def oracle(x_t, t):
        seen.append(int(t[0]))
        ab = alpha_bar_at(SCHEDULE, t, x_t)
        return Prediction(x0=source, eps=((x_t - ab.sqrt() * source) / (1 - ab).sqrt()).float())

    for strength in (0.3, 0.8):
        seen.clear()
        out = edit(oracle, source, strength=strength, schedule=SCHEDULE, num_steps=20,
                   generator=torch.Generator().manual_seed(0))
        assert torch.allclose(out, source, atol=1e-4)
        assert seen[0] == round(strength * 99) and seen == sorted(seen, reverse=True) and seen[-1] == 0
        assert len(seen) == 1 + sum(1 for v in range(0, 100, 5) if v < seen[0])


def test_edit_strength_is_checked():
    with pytest.raises(ValueError, match="strength"):
        edit(_stub, torch.zeros(1, 1, 1, 2, 2), strength=0.0, schedule=SCHEDULE)


def test_edit_at_full_strength_matches_plain_sampling_from_the_same_noise():
    """strength 1 starts from x_T = q(x_{N-1} | x0), which a denoiser that ignores x0 treats like sampling."""
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731  (v = 0)
    denoise = Denoiser(model, SCHEDULE, prediction="v")
    out = edit(denoise, torch.zeros(1, 1, 2, 4, 4), strength=1.0, schedule=SCHEDULE, num_steps=10,
               generator=torch.Generator().manual_seed(1))
    noise = torch.randn(1, 1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    ab = alpha_bar_at(SCHEDULE, torch.tensor([99]), noise)
    ts = torch.cat([torch.tensor([99]), torch.arange(90, -1, -10)])
    ref = sample_ddim(denoise, ((1 - ab).sqrt() * noise).float(), ts, schedule=SCHEDULE)
    assert torch.allclose(out, ref, atol=1e-5)
