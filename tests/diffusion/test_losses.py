"""Training losses: the returned terms, exact targets give zero MSE, masking, and the hybrid loss's stop-gradient."""

import pytest
import torch

from kinema.diffusion import LOSS_TYPES, make_schedule, training_loss
from kinema.diffusion.losses import append_loss_dims, masked_mean, vb_term
from kinema.diffusion.process import q_sample, target_for
from kinema.types import PREDICTION_TYPES, Prediction

SHAPE = (4, 2, 3, 4, 4)  # (B, C, T, H, W)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x0(dtype=torch.float32, seed=0):
    return torch.rand(SHAPE, generator=_gen(seed), dtype=dtype) * 2 - 1


# ---- the returned terms ----


@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_simple_loss_terms(prediction):
    schedule = make_schedule("cosine", 100)
    x0 = _x0()
    terms = training_loss(lambda x_t, t: 0.5 * x_t, x0, schedule=schedule, prediction=prediction,
                          generator=_gen(1))
    assert {"loss", "mse", "t", "pred"} <= set(terms) and "vb" not in terms
    assert terms["loss"].shape == () and terms["mse"].shape == ()
    assert terms["loss"].item() == pytest.approx(terms["mse"].item())
    assert terms["t"].shape == (SHAPE[0],) and terms["t"].dtype == torch.int64
    assert 0 <= terms["t"].min().item() and terms["t"].max().item() < 100
    assert isinstance(terms["pred"], Prediction) and terms["pred"].x0.shape == SHAPE
    again = training_loss(lambda x_t, t: 0.5 * x_t, x0, schedule=schedule, prediction=prediction, generator=_gen(1))
    assert torch.equal(terms["t"], again["t"]) and terms["loss"].item() == again["loss"].item()


def test_model_kwargs_reach_the_model():
    schedule = make_schedule("cosine", 100)
    seen = {}

    def model(x_t, t, *, cond):
        seen["cond"] = cond
        return torch.zeros_like(x_t)

    training_loss(model, _x0(), schedule=schedule, cond="tokens", generator=_gen())
    assert seen == {"cond": "tokens"}


def test_hybrid_requires_learned_variance():
    schedule = make_schedule("cosine", 100)
    with pytest.raises(ValueError, match="learned_variance"):
        training_loss(lambda x_t, t: x_t, _x0(), schedule=schedule, loss_type="hybrid")


@pytest.mark.parametrize("loss_type", ["", "l1", "vlb"])
def test_unknown_loss_type(loss_type):
    schedule = make_schedule("cosine", 100)
    with pytest.raises(ValueError, match=repr(loss_type)):
        training_loss(lambda x_t, t: x_t, _x0(), schedule=schedule, loss_type=loss_type)
    assert loss_type not in LOSS_TYPES


# ---- an oracle model has zero simple loss ----


def _oracle(prediction, x0, schedule):
    """A model that knows x0 and answers the exact target for whatever (x_t, t) it is asked about."""

    def model(x_t, t):
        ab = schedule.alpha_bar(t).reshape(-1, 1, 1, 1, 1)
        eps = (x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()
        return target_for(prediction, x0.double(), eps, t, schedule=schedule)

    return model


@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_oracle_model_has_zero_mse(prediction):
    schedule = make_schedule("linear", 1000)
    x0 = _x0(torch.float64)
    terms = training_loss(_oracle(prediction, x0, schedule), x0, schedule=schedule, prediction=prediction,
                          generator=_gen(2))
    assert terms["mse"].item() < 1e-10
    torch.testing.assert_close(terms["pred"].x0, x0.float(), rtol=0, atol=1e-4)
    # and the oracle of a different parameterization is not (the loss does look at the prediction type)
    other = {"eps": "x0", "x0": "v", "v": "eps"}[prediction]
    wrong = training_loss(_oracle(other, x0, schedule), x0, schedule=schedule, prediction=prediction,
                          generator=_gen(2))
    assert wrong["mse"].item() > 1e-3


def test_x0_oracle_is_exactly_zero():
    schedule = make_schedule("cosine", 100)
    x0 = _x0()
    assert training_loss(lambda x_t, t: x0, x0, schedule=schedule, prediction="x0")["mse"].item() == 0.0


# ---- masking ----


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_zero_weight_elements_do_not_count(loss_type):
    schedule = make_schedule("cosine", 100)
    frames = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)  # (B, T)
    weight = append_loss_dims(frames, len(SHAPE))  # (B, 1, T, 1, 1)
    assert weight.shape == (SHAPE[0], 1, SHAPE[2], 1, 1)
    learned = loss_type == "hybrid"

    def model(x_t, t):  # elementwise, so frames never mix
        out = torch.tanh(x_t)
        return torch.cat([out, 0.5 * out], dim=1) if learned else out

    def loss(x0):
        return training_loss(model, x0, schedule=schedule, loss_type=loss_type, learned_variance=learned,
                             weight=weight, generator=_gen(3))["loss"].item()

    x0 = _x0()
    masked_changed = torch.where(weight.bool(), x0, -x0 + 0.3)
    assert not torch.equal(masked_changed, x0)
    assert loss(masked_changed) == loss(x0)
    kept_changed = torch.where(weight.bool(), -x0 + 0.3, x0)
    assert loss(kept_changed) != loss(x0)


def test_masked_mean_averages_selected_elements():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    weight = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]).reshape(2, 3, 1)
    torch.testing.assert_close(masked_mean(x, weight), torch.stack([x[0, :1].mean(), x[1, :2].mean()]))
    torch.testing.assert_close(masked_mean(x), x.flatten(1).mean(1))


# ---- the hybrid loss ----


def _hybrid(schedule, x0, seed, prediction="eps"):
    """Hybrid loss terms for a leaf output tensor (B, 2C, T, H, W), so gradients land on it directly."""
    output = torch.cat([torch.randn(SHAPE, generator=_gen(seed)), torch.rand(SHAPE, generator=_gen(seed + 1)) * 2 - 1],
                       dim=1).requires_grad_()
    terms = training_loss(lambda x_t, t: output * 1, x0, schedule=schedule, prediction=prediction,
                          loss_type="hybrid", learned_variance=True, generator=_gen(seed + 2))
    return output, terms


@pytest.mark.parametrize("prediction", PREDICTION_TYPES)
def test_hybrid_vb_is_nonnegative_and_trains_only_the_variance(prediction):
    schedule = make_schedule("cosine", 100)
    c = SHAPE[1]
    for seed in range(3):
        output, terms = _hybrid(schedule, _x0(seed=seed), 10 * seed, prediction)
        assert terms["vb"].item() >= -1e-6
        (grad,) = torch.autograd.grad(terms["vb"], output)
        assert torch.equal(grad[:, :c], torch.zeros_like(grad[:, :c]))  # stop-gradient on the mean
        assert grad[:, c:].abs().sum().item() > 0  # the variance half learns from L_vlb
        # so the mean half's gradient of the full loss is the simple MSE's alone
        output, terms = _hybrid(schedule, _x0(seed=seed), 10 * seed, prediction)
        (g_loss,) = torch.autograd.grad(terms["loss"], output)
        output, terms = _hybrid(schedule, _x0(seed=seed), 10 * seed, prediction)
        (g_mse,) = torch.autograd.grad(terms["mse"], output)
        torch.testing.assert_close(g_loss[:, :c], g_mse[:, :c])
        assert torch.equal(g_mse[:, c:], torch.zeros_like(g_mse[:, c:]))


def test_vb_term_is_zero_for_the_true_posterior():
    # a model with the exact x0 and the posterior variance (v = 0) matches q(x_{t-1} | x_t, x0): KL = 0 for t > 0
    schedule = make_schedule("linear", 100)
    x0 = _x0(torch.float64)
    t = torch.tensor([1, 20, 50, 99])
    eps = torch.randn(SHAPE, generator=_gen(4), dtype=torch.float64)
    x_t = q_sample(x0, t, eps, schedule=schedule)
    exact = Prediction(x0=x0, eps=eps, var_frac=torch.zeros(SHAPE, dtype=torch.float64))
    torch.testing.assert_close(vb_term(exact, x0, x_t, t, schedule=schedule), torch.zeros(4, dtype=torch.float64),
                               rtol=0, atol=1e-9)
    wrong = Prediction(x0=x0 + 0.1, eps=eps, var_frac=torch.full(SHAPE, 0.5, dtype=torch.float64))
    assert bool((vb_term(wrong, x0, x_t, t, schedule=schedule) > 0).all())
    # at t = 0 the term is the decoder NLL in bits per dim, which is >= 0
    t0 = torch.zeros(4, dtype=torch.long)
    nll = vb_term(exact, x0, q_sample(x0, t0, eps, schedule=schedule), t0, schedule=schedule)
    assert bool((nll >= 0).all()) and bool(torch.isfinite(nll).all())
