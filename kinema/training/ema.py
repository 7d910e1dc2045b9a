"""Exponential moving average of model weights and its warm-up decay schedule."""

from __future__ import annotations

import torch
from torch import nn


def _paired(ema: dict, model: dict, what: str) -> dict:
    """`ema` after asserting it names exactly the tensors `model` names (parameters or buffers)."""
    assert ema.keys() == model.keys(), (f"EMA and model {what} differ: only in EMA {sorted(ema.keys() - model.keys())}, "
                                        f"only in model {sorted(model.keys() - ema.keys())}")
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move `ema` in place toward `model`: ema = decay * ema + (1 - decay) * model; copy buffers."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    model_params = dict(model.named_parameters())
    ema_params = _paired(dict(ema.named_parameters()), model_params, "parameters")
    for name, p in model_params.items():
        # lerp_ with weight (1 - decay) is exactly ema + (1 - decay) * (p - ema)
        ema_params[name].lerp_(p.to(ema_params[name].dtype), 1.0 - decay)
    model_buffers = dict(model.named_buffers())
    ema_buffers = _paired(dict(ema.named_buffers()), model_buffers, "buffers")
    for name, b in model_buffers.items():
        # Buffers (norm statistics, step counters) are state, not weights: copy, don't average.
        ema_buffers[name].copy_(b)


def ema_decay(step: int, max_decay: float = 0.999, warmup_power: float = 2 / 3, inv_gamma: float = 1.0) -> float:
    """Return the warm-up EMA decay 1 - (1 + step / inv_gamma) ** -warmup_power, clipped to [0, max_decay]."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= max_decay <= 1.0:
        raise ValueError(f"max_decay must be in [0, 1], got {max_decay}")
    if warmup_power <= 0:
        raise ValueError(f"warmup_power must be > 0, got {warmup_power}")
    if inv_gamma <= 0:
        raise ValueError(f"inv_gamma must be > 0, got {inv_gamma}")
    # Early on the average forgets fast (decay ~ 0), so EMA weights are not stuck near the random init.
    decay = 1.0 - (1.0 + step / inv_gamma) ** -warmup_power
    return min(max(decay, 0.0), max_decay)
