"""Clips per second of `kinema train` for the configs we ship: step time, achieved TFLOP/s, share of the matmul peak.

    python benchmarks/train_throughput.py   # the shipped recipes, each also at patch 1 with stock kernels
    python benchmarks/train_throughput.py --arm digits=configs/moving-digits-all.yaml \\
        --arm digits-p1=configs/moving-digits-all.yaml:model.patch_size=1 --steps 8

Each arm is NAME=CONFIG[:SECTION.KEY=VALUE,...]; `kernels.fused_norm=false` (PyTorch's group norm, FiLM and SiLU
op by op instead of `kernels.norm_act`) and `kernels.fast_weight_grad=false` switch a kernel route for that
arm alone. The Trainers are built as `kinema train` builds them
(fused AdamW, clipping, EMA, bf16 autocast where the CPU has it) and their steps alternate, one of each
in turn after a warm-up, so the machine's drift hits every arm alike. Reports per arm: the median step,
clips/s, GFLOP per step (forward + backward, counted by torch's FLOP counter), achieved TFLOP/s and its
share of this machine's measured matmul peak in the precision the step computes in, and the top entries
of a profile of two steps. Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import profile

from kinema.config import load_config, parse_override
from kinema.models.kernels import Conv3d, flop_counter
from kinema.models.layers import FrameNorm
from kinema.runtime import keep_freed_memory
from kinema.training import Trainer

from generation_speed import cpu_name  # benchmarks/ is on the path of a script run from it
from peers import matmul_peak

RESULTS = Path(__file__).parent / "results"
SHIPPED = ["digits-p1-stock=configs/moving-digits-all.yaml:model.patch_size=1,kernels.fused_norm=false",
           "digits-p1=configs/moving-digits-all.yaml:model.patch_size=1",
           "digits-stock=configs/moving-digits-all.yaml:kernels.fused_norm=false", "digits=configs/moving-digits-all.yaml",
           "text-p1-stock=configs/moving-digits-motion.yaml:model.patch_size=1,kernels.fused_norm=false",
           "text=configs/moving-digits-motion.yaml"]
SWITCHES = {"kernels.fused_norm": (FrameNorm, "fused"), "kernels.fast_weight_grad": (Conv3d, "fast_weight_grad")}


def parse_arm(text: str) -> tuple[str, str, dict, dict]:
    """NAME=CONFIG[:KEY=VALUE,...] -> (name, config path, config overrides, kernel switches)."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--arm must be NAME=CONFIG[:SECTION.KEY=VALUE,...], got {text!r}")
    path, _, sets = rest.partition(":")
    overrides = dict(parse_override(s) for s in sets.split(",") if s)
    switches = {k: overrides.pop(k) for k in list(overrides) if k.startswith("kernels.")}
    for key, value in switches.items():
        if key not in SWITCHES or not isinstance(value, bool):
            raise SystemExit(f"kernel switches are {sorted(SWITCHES)} = true|false, got {key}={value!r}")
    return name, path, overrides, switches


def set_switches(switches: dict) -> None:
    """Each kernel route on (the default) unless this arm switches it off."""
    for key, (owner, attr) in SWITCHES.items():
        setattr(owner, attr, switches.get(key, True))


def top_ops(prof, k: int) -> list[dict]:
    """The k entries of a profile with the most self CPU time: name, share of the total, calls."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"op": e.key[:60], "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:k]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", action="append", help="NAME=CONFIG[:SECTION.KEY=VALUE,...] (repeatable; default: "
                                                  "the shipped configs with and without 2x2 patches)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per arm")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per arm first")
    p.add_argument("--top", type=int, default=8, help="profile entries per arm")
    p.add_argument("--name", default="train_throughput", help="results file stem")
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    keep_freed_memory()
    arms = [parse_arm(a) for a in (args.arm or SHIPPED)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainers = []
        for name, path, sets, _ in arms:
            config = load_config(path, {**sets, "train.sample_every": 0})
            trainer = Trainer(config, f"{tmp}/{name}")
            trainers.append((trainer, iter(trainer.loader), config))

        def step(i: int) -> float:
            trainer, batches, config = trainers[i]
            set_switches(arms[i][3])
            start = time.perf_counter()
            trainer.step([next(batches) for _ in range(config.train.grad_accum)])
            return time.perf_counter() - start

        flops = []
        for i in range(len(arms)):
            with flop_counter() as fc:
                step(i)
            flops.append(fc.get_total_flops())
        times = [[] for _ in arms]
        for r in range(args.warmup + args.steps):
            order = range(len(arms)) if r % 2 == 0 else reversed(range(len(arms)))
            for i in order:
                seconds = step(i)
                if r >= args.warmup:
                    times[i].append(seconds)
        for i, (name, path, sets, switches) in enumerate(arms):
            with profile() as prof:
                step(i)
                step(i)
            trainer, _, config = trainers[i]
            clips = config.train.batch_size * config.train.grad_accum
            median = statistics.median(times[i])
            rows.append({"arm": name, "config": path, "overrides": {**sets, **switches}, "precision": trainer.accelerator.mixed_precision,
                         "params": sum(q.numel() for q in trainer.unwrapped_model.parameters()), "clips_per_step": clips,
                         "step_s": median, "clips_per_s": clips / median, "gflop_per_step": flops[i] / 1e9,
                         "tflops": flops[i] / median / 1e12, "runs": times[i], "top": top_ops(prof, args.top)})
        set_switches({})
    peaks = {dtype: matmul_peak(getattr(torch, dtype)) / 1e12 for dtype in {"float32", *(
        "bfloat16" for r in rows if r["precision"] == "bf16")}}
    for r in rows:
        r["peak_tflops"] = peaks["bfloat16" if r["precision"] == "bf16" else "float32"]
        r["share_of_peak"] = r["tflops"] / r["peak_tflops"]
    report = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "matmul_peak_tflops": peaks, "steps": args.steps, "warmup": args.warmup, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Train throughput of the shipped configs ({report['cpu']}, {report['threads']} threads, "
             f"torch {torch.__version__})", "",
             f"`python benchmarks/train_throughput.py{''.join(' --arm ' + a for a in args.arm or [])} --steps "
             f"{args.steps}`. Median of {args.steps} steps per arm after {args.warmup} warm-up, the arms alternating "
             "step by step; measured matmul peak "
             + ", ".join(f"{d} {v:.2f} TFLOP/s" for d, v in sorted(peaks.items())) + ".", "",
             "| arm | config | overrides | precision | params | step (s) | clips/s | GFLOP/step | TFLOP/s | share of "
             "peak |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['arm']} | `{r['config']}` | {' '.join(f'{k}={v}' for k, v in r['overrides'].items()) or '-'} | "
              f"{r['precision']} | {r['params'] / 1e6:.2f} M | {r['step_s']:.3f} | {r['clips_per_s']:.2f} | "
              f"{r['gflop_per_step']:.0f} | {r['tflops']:.3f} | {100 * r['share_of_peak']:.1f} % |" for r in rows]
    for r in rows:
        lines += ["", f"Profile of two steps, `{r['arm']}` (self CPU time): "
                  + "; ".join(f"{t['op']} {100 * t['share']:.0f} % ({t['calls']} calls)" for t in r["top"]) + "."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
