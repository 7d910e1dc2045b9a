"""Self-attention in float32 or bf16 under bf16 autocast: train steps and denoiser calls, the two ways alternating.

    python benchmarks/attention_precision.py                      # configs A and B, 6 rounds
    python benchmarks/attention_precision.py --rounds 10 --name attention_precision-10

`kinema.models.kernels.CPU_FLOAT32_ATTENTION` (on by default on a CPU without AMX tiles) makes the
spatial and temporal attention compute in float32 when the rest of the network runs in bf16. This
times, with it on and off in one process, the peers benchmark's kinema network (34 M parameters):
its train step on config A (4 x 1 x 16 x 32 x 32) and B (2 x 3 x 16 x 64 x 64) (forward, MSE loss,
backward, fused AdamW, as benchmarks/peers.py) and one denoiser call on one 16 x 64 x 64 RGB clip
without grad (what sampling runs), at patch sizes 1 and 2. After a warm-up round each way, the two
ways alternate, so the machine's drift hits both; reports the medians and the median of the paired
ratios (bf16 / float32: above 1 means float32 attention is faster). The FLOPs are the same both ways.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kinema.config import resolve_precision
from kinema.models import SpaceTimeUNet
from kinema.models import kernels
from kinema.runtime import keep_freed_memory

from generation_speed import MODEL, cpu_name  # benchmarks/ is on the path of a script run from it
from peers import CONFIGS

RESULTS = Path(__file__).parent / "results"


def network(channels: int, patch_size: int = 1) -> SpaceTimeUNet:
    """The peers benchmark's kinema network (width 48, channel_mult 1-2-4-8)."""
    torch.manual_seed(0)
    return SpaceTimeUNet(dataclasses.replace(MODEL, in_channels=channels, patch_size=patch_size))


def train_step_fn(config: str):
    """A closure running one bf16-autocast train step of the network on a peers config."""
    b, c, t, h, w = CONFIGS[config]
    model = network(c)
    x, noise, steps = torch.randn(b, c, t, h, w), torch.randn(b, c, t, h, w), torch.randint(0, 1000, (b,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.mse_loss(model(x, steps).float(), noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def denoiser_call_fn(patch_size: int):
    """A closure running one no-grad bf16 denoiser call on one 16 x 64 x 64 RGB clip."""
    model = network(3, patch_size).eval()
    x, steps = torch.randn(1, 3, 16, 64, 64), torch.tensor([500])

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x, steps)

    return call


def alternate(fn, rounds: int) -> dict:
    """Seconds of fn with float32 attention (True) and bf16 attention (False), alternating, after a warm-up each."""
    times = {True: [], False: []}
    for i in range(rounds + 1):
        for on in (True, False) if i % 2 == 0 else (False, True):
            kernels.CPU_FLOAT32_ATTENTION = on
            start = time.perf_counter()
            fn()
            if i:
                times[on].append(time.perf_counter() - start)
    return {"float32_s": statistics.median(times[True]), "bf16_s": statistics.median(times[False]),
            "paired_ratio": statistics.median(b / f for f, b in zip(times[True], times[False])),
            "runs": {"float32": times[True], "bf16": times[False]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6, help="timed runs each way")
    p.add_argument("--name", default="attention_precision", help="results file stem")
    args = p.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    if resolve_precision("auto", "cpu") != "bf16":
        print("note: this CPU has no native bf16; kinema would run float32 here, so these bf16 figures are emulated")
    keep_freed_memory()  # as the kinema command runs
    default = kernels.CPU_FLOAT32_ATTENTION
    cases = [("train step, config A", lambda: train_step_fn("A")), ("train step, config B", lambda: train_step_fn("B")),
             ("denoiser call, 1 clip, patch 1", lambda: denoiser_call_fn(1)),
             ("denoiser call, 1 clip, patch 2", lambda: denoiser_call_fn(2))]
    rows = []
    for label, make in cases:
        row = {"case": label, **alternate(make(), args.rounds)}
        rows.append(row)
        print(f"{label}: float32 attention {row['float32_s']:.3f} s, bf16 {row['bf16_s']:.3f} s, "
              f"paired {row['paired_ratio']:.3f}", flush=True)
    kernels.CPU_FLOAT32_ATTENTION = default
    report = {"rows": rows, "rounds": args.rounds, "default_on_this_cpu": default, "cpu": cpu_name(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Self-attention in float32 or bf16 under bf16 autocast", "",
             f"`python benchmarks/attention_precision.py --rounds {args.rounds}`: {report['cpu']}, AMX: "
             f"{report['amx']}, {report['threads']} threads, torch {torch.__version__}; the peers benchmark's kinema "
             f"network (34 M parameters). Medians of {args.rounds} runs each way after a warm-up, the two ways "
             f"alternating. `CPU_FLOAT32_ATTENTION` defaults to {default} on this CPU.", "",
             "| case | float32 attention (s) | bf16 attention (s) | paired bf16 / float32 |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['case']} | {r['float32_s']:.3f} | {r['bf16_s']:.3f} | {r['paired_ratio']:.3f} |" for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
