"""Reusing a UNet's deep features across sampler steps (DeepCache, Ma et al. 2023).

Between adjacent sampler steps the input of a video UNet changes little, and the output of its
deeper levels even less. A `FeatureCache` holds the deep levels' output (the input of the top
level's up blocks) from one full call; a call that reuses it runs only the top level (the stem,
the top level's down and up blocks, the head): for the config-B-size network a fifth of the FLOPs
of a full call, a quarter of its time on a CPU. `StepCache` decides which calls do what: the first
call of every `interval` sampler steps runs in full and refreshes the cache, the others reuse it.
The saving is real work skipped, so it costs some sample quality; benchmarks/sampler_quality.py
measures how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch


@dataclass
class FeatureCache:
    """The deep features of one branch (one conditioning) of sampling, and whether the next call reuses them."""

    deep: Optional[torch.Tensor] = None  # (B, C, T, H', W'): the input of the top level's up blocks
    reuse: bool = False  # set before a call: True runs only the top level, on `deep`


class StepCache:
    """`model(x, step, **kwargs)` that runs in full once every `interval` sampler steps and reuses the deep features
    in between.

    A new step is a call whose `step` differs from the previous call's; calls at the same step are
    branches (classifier-free guidance calls the model once per condition, in the same order every
    step), and each branch keeps its own cache. A sampler that evaluates twice per step (Heun) moves
    the step twice. Make one per sampling run: the cache belongs to the trajectory.
    """

    def __init__(self, model: Callable[..., torch.Tensor], interval: int):
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise ValueError(f"cache interval must be a positive integer, got {interval!r}")
        if getattr(model, "top_down", 0) is None:
            raise ValueError("feature caching needs a UNet with at least two levels (model.channel_mult has one entry)")
        self.model, self.interval = model, interval
        self.caches: list[FeatureCache] = []
        self.steps, self.full_calls, self.reused_calls = 0, 0, 0
        self._last_step: Optional[torch.Tensor] = None
        self._branch = 0

    def __call__(self, x: torch.Tensor, step: torch.Tensor, **kwargs) -> torch.Tensor:
        """The model's output at (x, step); the deep levels run only on every `interval`-th step."""
        if self._last_step is None or step.shape != self._last_step.shape or not torch.equal(step, self._last_step):
            self.steps += 1 if self._last_step is not None else 0
            self._last_step, self._branch = step.clone(), 0
        else:
            self._branch += 1
        if self._branch == len(self.caches):
            self.caches.append(FeatureCache())
        cache = self.caches[self._branch]
        cache.reuse = (self.steps % self.interval != 0 and cache.deep is not None
                       and cache.deep.shape[0] == x.shape[0] and cache.deep.shape[2] == x.shape[2])
        self.reused_calls += cache.reuse
        self.full_calls += not cache.reuse
        return self.model(x, step, cache=cache, **kwargs)
