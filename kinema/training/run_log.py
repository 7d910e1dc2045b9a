"""A run's log: metrics.jsonl (one JSON line per logged step) and its loss plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional


def plot_loss(metrics: Path, out: Path, title: str) -> Optional[Path]:
    """Plot the loss in `metrics` (metrics.jsonl) against step to the PNG `out`; None if there is no log yet."""
    if not metrics.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for line in metrics.read_text().splitlines() if line.strip() and "loss" in (r := json.loads(line))]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def truncate_metrics(metrics: Path, step: int) -> None:
    """Drop the lines of `metrics` written after `step` (by a run that died before its next checkpoint)."""
    if metrics.is_file():
        rows = [line for line in metrics.read_text().splitlines() if _metric_step(line) <= step]
        metrics.write_text("".join(line + "\n" for line in rows))


def _metric_step(line: str) -> float:
    """The step of a metrics.jsonl line; inf for a blank or half-written one (a kill mid-write)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
