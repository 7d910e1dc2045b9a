"""Seconds per `kinema train` step with Conv3d's faster weight gradients and without, alternating in one process.

    python benchmarks/train_step.py                                   # configs/demo.yaml, 10 steps each way
    python benchmarks/train_step.py --config configs/moving-digits-text.yaml --steps 6
    python benchmarks/train_step.py --set model.channels=48 model.channel_mult=[1,2,4,8] \\
        model.spatial_attention_levels=[2,3] model.head_dim=16 train.batch_size=4 --name train_step-A

The Trainer is built as `kinema train` builds it (fused AdamW, clipping, EMA; freed memory kept for
reuse unless `--malloc system`), in a temporary directory. In training `Conv3d` runs per-frame
kernels as 2D convolutions and takes the temporal kernels' weight gradients from GEMMs
(`Conv3d.fast_weight_grad`); with the switch off it uses oneDNN's 3D convolution throughout. After
`--warmup` steps each way, the two ways alternate step by step, so the machine's drift hits both.
Reports the median of each, the median of the paired ratios, and the FLOPs of one step (the same
either way). Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kinema.cli import _parse_override
from kinema.config import load_config
from kinema.models.layers import Conv3d, flop_counter
from kinema.runtime import keep_freed_memory
from kinema.training import Trainer

from generation_speed import cpu_name  # benchmarks/ is on the path of a script run from it

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="config overrides")
    p.add_argument("--steps", type=int, default=10, help="timed steps each way")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps each way first")
    p.add_argument("--malloc", default="keep", choices=["keep", "system"],
                   help="keep: freed memory reused, as the kinema command runs; system: glibc's default")
    p.add_argument("--name", default="train_step", help="results file stem")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.malloc == "keep" and not keep_freed_memory():
        raise SystemExit("--malloc keep needs glibc (Linux)")
    overrides = dict(_parse_override(text) for text in args.set)
    config = load_config(args.config, {**overrides, "train.sample_every": 0})
    times = {True: [], False: []}
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out)
        batches = iter(trainer.loader)

        def step() -> float:
            start = time.perf_counter()
            trainer.step([next(batches) for _ in range(config.train.grad_accum)])
            return time.perf_counter() - start

        with flop_counter() as fc:
            step()
        for i in range(args.warmup + args.steps):
            for fast in (True, False) if i % 2 == 0 else (False, True):
                Conv3d.fast_weight_grad = fast
                seconds = step()
                if i >= args.warmup:
                    times[fast].append(seconds)
        Conv3d.fast_weight_grad = True
    fast, stock = statistics.median(times[True]), statistics.median(times[False])
    ratio = statistics.median(s / f for f, s in zip(times[True], times[False]))
    report = {"config": args.config, "overrides": overrides, "malloc": args.malloc, "steps": args.steps,
              "warmup": args.warmup, "batch": config.train.batch_size * config.train.grad_accum,
              "gflop_per_step": fc.get_total_flops() / 1e9, "fast_s": fast, "stock_s": stock,
              "paired_ratio": ratio, "runs": {"fast": times[True], "stock": times[False]},
              "threads": torch.get_num_threads(), "cpu": cpu_name(), "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    sets = " ".join(args.set)
    lines = [f"# Train step: Conv3d's fast weight gradients or oneDNN's 3D convolution ({args.config})", "",
             f"`python benchmarks/train_step.py --config {args.config}{' --set ' + sets if sets else ''} "
             f"--steps {args.steps} --malloc {args.malloc}`: {report['cpu']}, {report['threads']} threads, torch "
             f"{torch.__version__}, batch {report['batch']}, {report['gflop_per_step']:.0f} GFLOP per step. Median "
             f"of {args.steps} steps each way after {args.warmup} warm-up, the two ways alternating.", "",
             "| `Conv3d.fast_weight_grad` | step (s) |", "| --- | --- |",
             f"| True | {fast:.2f} |", f"| False | {stock:.2f} |", "",
             f"Paired ratio False / True (median): {ratio:.3f}."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
