"""The order of training data as a pure function of (seed, step): which clips, and every random draw per clip.

Resuming at step k, or splitting a global batch over more processes or more accumulation, sees the
same clips with the same seeds; a clip's crops, flips, clip start, mask, timestep and noise depend on
its own seed alone, never on the worker that read it.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

class StepBatchSampler(Sampler):
    """(index, example seed) batches as a pure function of (seed, step): resuming at step k is exact.

    Step k draws one global batch of batch_size x num_processes x micro examples; micro-batch m of
    process p is slice (m * num_processes + p) of it. Any split of the same global batch (more
    processes, or more accumulation) therefore sees the same examples with the same seeds.
    """

    def __init__(self, length: int, batch_size: int, *, seed: int, process: int, num_processes: int,
                 start_step: int, micro: int):
        assert 0 <= process < num_processes, f"process {process} of {num_processes}"
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.process, self.num_processes, self.start_step, self.micro = process, num_processes, start_step, micro

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step, b = self.start_step, self.batch_size
        while True:
            rng = np.random.default_rng([self.seed, step])
            n = b * self.num_processes * self.micro
            index, seeds = rng.integers(0, self.length, n), rng.integers(0, 2**63, n)  # (n,), (n,)
            for m in range(self.micro):
                first = (m * self.num_processes + self.process) * b
                yield [(int(i), int(s)) for i, s in zip(index[first:first + b], seeds[first:first + b])]
            step += 1


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def seeded_rngs(seed: int):
    """Seed python, numpy and torch (CPU) with `seed` inside the block; restore their states after it."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.random.default_generator.manual_seed(seed)  # the CPU one only: fork_rng restores just that
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


class SeededExamples(Dataset):
    """Item (index, seed) is dataset[index] read under `seeded_rngs(seed)`, plus "seed": its random
    crops / flips / clip starts depend on the seed alone, not on the worker that reads it."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with seeded_rngs(seed):
            item = self.dataset[index]
        return {**item, "seed": seed}


def example_generators(batch: dict) -> list[torch.Generator]:
    """One CPU generator per clip, seeded by the sampler's example seeds (B,)."""
    if "seed" not in batch:
        raise ValueError(f"batch has no 'seed' (keys {sorted(batch)}); draw batches from Trainer.loader")
    return [torch.Generator().manual_seed(int(s)) for s in batch["seed"]]
