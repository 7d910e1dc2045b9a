"""How much a model reads its given frames: v-loss on the unknown frames of held-out prediction clips.

    python benchmarks/context_use.py MODEL [MODEL ...]

For 16 held-out moving-digits clips (test-split digit images) with the first 4 frames given, the loss
of the model's prediction on the other 12 frames at several noise levels, with the right given frames,
with another clip's, and with blank ones (mask still set). A model that reads its context scores the
right frames far below the others; one that ignores them scores all three alike. Prints a table.
"""

from __future__ import annotations

import sys

import torch

from kinema.data.datasets import MovingDigits, MovingDigitsConfig
from kinema.diffusion import make_schedule
from kinema.diffusion.process import q_sample, target_for
from kinema.models.model_dir import load_video_model
from kinema.types import FrameMask

STEPS = (200, 500, 700, 850, 950)


def context_losses(model_dir: str, clips: int = 16, given: int = 4) -> dict[int, dict[str, float]]:
    """{t: {"right" | "other clip" | "blank": loss on the unknown frames}} for one model directory."""
    loaded = load_video_model(model_dir)
    model, d = loaded.model.eval(), loaded.diffusion
    data = MovingDigits(MovingDigitsConfig(size=loaded.size, num_frames=loaded.num_frames, max_digits=1,
                                           split="test", seed=5))
    x0 = torch.stack([data[i]["video"] for i in range(clips)])  # (B, C, T, H, W)
    schedule = make_schedule(d.schedule, d.num_steps, d.shift, d.frame_noise)
    mask = torch.zeros(clips, x0.shape[2])
    mask[:, :given] = 1
    unknown = (1 - mask)[:, None, :, None, None]
    contexts = {"right": x0, "other clip": x0.roll(1, dims=0), "blank": torch.zeros_like(x0)}
    out = {}
    for t in STEPS:
        eps = schedule.noise(x0.shape, generator=torch.Generator().manual_seed(t))
        steps = torch.full((clips,), t)
        x_t = q_sample(x0, steps, eps, schedule=schedule)
        target = target_for(d.prediction, x0, eps, steps, schedule=schedule)
        out[t] = {}
        for name, context in contexts.items():
            frames = FrameMask(mask=mask, frames=context * mask[:, None, :, None, None])
            with torch.no_grad():
                err = (model(x_t, steps, frames=frames) - target) ** 2
            out[t][name] = float((err * unknown).sum() / unknown.expand_as(err).sum())
    return out


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("| model | t | right frames | another clip's | blank | right vs another clip |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model_dir in sys.argv[1:]:
        for t, row in context_losses(model_dir).items():
            print(f"| {model_dir} | {t} | {row['right']:.4f} | {row['other clip']:.4f} | {row['blank']:.4f} | "
                  f"{100 * (1 - row['right'] / row['other clip']):.0f} % lower |")


if __name__ == "__main__":
    main()
