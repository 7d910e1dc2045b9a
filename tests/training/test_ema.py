"""EMA update and warm-up decay schedule."""

import copy

import pytest
import torch
from torch import nn

from kinema.training.ema import ema_decay, ema_update


def _pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()(torch.randn(5, 3))  # moves BatchNorm running stats and num_batches_tracked
    return ema, model


def test_decay_zero_copies_model():
    ema, model = _pair()
    ema_update(ema, model, 0.0)
    for a, b in zip(ema.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_decay_one_keeps_ema_parameters_but_copies_buffers():
    ema, model = _pair()
    before = {k: v.clone() for k, v in ema.named_parameters()}
    ema_update(ema, model, 1.0)
    for name, p in ema.named_parameters():
        assert torch.equal(p, before[name])
    for (name, b), m in zip(ema.named_buffers(), model.buffers()):
        assert torch.equal(b, m), name


def test_closed_form():
    ema, model = _pair()
    d = 0.9
    expected = {k: d * e.detach() + (1 - d) * m.detach()
                for (k, e), m in zip(ema.named_parameters(), model.parameters())}
    ema_update(ema, model, d)
    for name, p in ema.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=0, atol=1e-6)
    assert all(not p.requires_grad or p.grad is None for p in ema.parameters())


def test_mismatched_modules_raise():
    with pytest.raises(AssertionError, match="differ"):
        ema_update(nn.Linear(3, 4), nn.Sequential(nn.Linear(3, 4)), 0.5)
    with pytest.raises(AssertionError, match="buffers differ"):
        ema_update(nn.BatchNorm1d(4), nn.BatchNorm1d(4, track_running_stats=False), 0.5)


@pytest.mark.parametrize("decay", [-0.1, 1.5])
def test_bad_decay_raises(decay):
    with pytest.raises(ValueError, match=str(decay)):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 2), decay)


def test_ema_decay_schedule():
    assert ema_decay(0) == 0.0
    values = [ema_decay(s) for s in [*range(0, 1000), *range(1000, 10**6, 997)]]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert max(values) == 0.999
    assert ema_decay(10**9, max_decay=0.9999) == 0.9999
    # closed form below the cap: 1 - (1 + 10 / 2) ** -0.5
    assert ema_decay(10, warmup_power=0.5, inv_gamma=2.0) == pytest.approx(1 - 6**-0.5)


@pytest.mark.parametrize("kwargs", [{"step": -1}, {"step": 1, "max_decay": 1.5},
                                    {"step": 1, "inv_gamma": 0.0}, {"step": 1, "warmup_power": 0.0}])
def test_ema_decay_bad_args(kwargs):
    with pytest.raises(ValueError):
        ema_decay(**kwargs)
