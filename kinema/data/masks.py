"""Frame masks: which frames of a clip are given. One model serves every task by training on a mixture.

| task        | known frames                   |
| ----------- | ------------------------------ |
| generate    | none                           |
| predict     | the first k                    |
| interpolate | the first and the last         |
| animate     | the first                      |
| random      | each frame with probability p  |
"""

from __future__ import annotations

from typing import Optional

import torch

from ..config import TASKS, MaskMixture

__all__ = ["TASKS", "SAMPLING_TASKS", "MaskMixture", "task_mask", "draw_masks"]

SAMPLING_TASKS = tuple(t for t in TASKS if t != "random")  # what a user asks of a trained model


def task_mask(task: str, num_frames: int, context_frames: int = 1) -> torch.Tensor:
    """The (T,) float mask of a task; `context_frames` is k for "predict"."""
    if task not in SAMPLING_TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {SAMPLING_TASKS}")
    mask = torch.zeros(num_frames)
    if task == "predict":
        if not 1 <= context_frames < num_frames:
            raise ValueError(f"context_frames must be in [1, {num_frames - 1}] for {num_frames} frames, "
                             f"got {context_frames}")
        mask[:context_frames] = 1
    elif task == "interpolate":
        if num_frames < 3:
            raise ValueError(f"interpolate needs at least 3 frames, got {num_frames}")
        mask[0] = mask[-1] = 1
    elif task == "animate":
        mask[0] = 1
    return mask


def draw_masks(batch: int, num_frames: int, mixture: MaskMixture, *,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one task per clip from the mixture; return masks (B, T) and task indices (B,) into TASKS."""
    rates = torch.tensor(mixture.rates(), dtype=torch.float64)
    tasks = torch.multinomial(rates / rates.sum(), batch, replacement=True, generator=generator)
    masks = torch.zeros(batch, num_frames)
    max_k = max(1, min(mixture.max_context, num_frames - 1))
    for i, task in enumerate(tasks.tolist()):
        name = TASKS[task]
        if name == "random":
            masks[i] = (torch.rand(num_frames, generator=generator) < mixture.random_p).float()
        elif name == "predict" and num_frames > 1:
            k = int(torch.randint(1, max_k + 1, (1,), generator=generator))
            masks[i] = task_mask("predict", num_frames, k)
        elif name == "interpolate" and num_frames >= 3:
            masks[i] = task_mask("interpolate", num_frames)
        elif name in ("animate", "predict", "interpolate"):
            masks[i] = task_mask("animate", num_frames)
    return masks, tasks
