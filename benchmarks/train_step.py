"""Seconds per `kinema train` step with a speed or memory feature on and off, alternating in one process.

    python benchmarks/train_step.py                                   # configs/demo.yaml, 10 steps each way
    python benchmarks/train_step.py --config configs/moving-digits-text.yaml --steps 6
    python benchmarks/train_step.py --set model.channels=48 model.channel_mult=[1,2,4,8] \\
        model.spatial_attention_levels=[2,3] model.head_dim=16 train.batch_size=4 --name train_step-A
    python benchmarks/train_step.py --switch recompute --name train_step-recompute

The Trainer is built as `kinema train` builds it (fused AdamW, clipping, EMA; freed memory kept for
reuse unless `--malloc system`), in a temporary directory. `--switch weight-grad` (default): in
training `Conv3d` runs per-frame kernels as 2D convolutions and takes the temporal kernels' weight
gradients from GEMMs (`Conv3d.fast_weight_grad`); off, it uses oneDNN's 3D convolution throughout.
`--switch recompute`: the UNet's `recompute_activations` (norm-SiLU-FiLM and temporal attention run
again in backward instead of keeping their intermediates). After `--warmup` steps each way, the two
ways alternate step by step, so the machine's drift hits both. Reports the median of each, the
median of the paired ratios, the peak bytes of live tensors during one step each way (allocator-
independent, weights and optimizer state included), and the FLOPs of one step with the feature off.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kinema.config import parse_override as _parse_override
from kinema.config import load_config
from kinema.models.kernels import Conv3d, flop_counter
from kinema.runtime import keep_freed_memory
from kinema.training import Trainer

from generation_speed import cpu_name  # benchmarks/ is on the path of a script run from it
from peers import TensorBytes

SWITCHES = {"weight-grad": "`Conv3d.fast_weight_grad`", "recompute": "`SpaceTimeUNet.recompute_activations`"}

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="config overrides")
    p.add_argument("--steps", type=int, default=10, help="timed steps each way")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps each way first")
    p.add_argument("--malloc", default="keep", choices=["keep", "system"],
                   help="keep: freed memory reused, as the kinema command runs; system: glibc's default")
    p.add_argument("--switch", default="weight-grad", choices=list(SWITCHES), help="the feature turned on and off")
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

        def switch(on: bool) -> None:
            if args.switch == "weight-grad":
                Conv3d.fast_weight_grad = on
            else:
                trainer.unwrapped_model.recompute_activations = on

        switch(False)
        with flop_counter() as fc:
            step()
        peak = {}
        for on in (True, False):
            switch(on)
            held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in live_state(trainer)}
            with TensorBytes() as tb:
                step()
            peak[on] = (sum(held.values()) + tb.peak) / 2**20
        for i in range(args.warmup + args.steps):
            for on in (True, False) if i % 2 == 0 else (False, True):
                switch(on)
                seconds = step()
                if i >= args.warmup:
                    times[on].append(seconds)
        switch(args.switch == "weight-grad")  # the defaults
    fast, stock = statistics.median(times[True]), statistics.median(times[False])
    ratio = statistics.median(s / f for f, s in zip(times[True], times[False]))
    report = {"config": args.config, "overrides": overrides, "malloc": args.malloc, "steps": args.steps,
              "warmup": args.warmup, "batch": config.train.batch_size * config.train.grad_accum,
              "switch": args.switch, "gflop_per_step": fc.get_total_flops() / 1e9, "on_s": fast, "off_s": stock,
              "paired_ratio": ratio, "peak_tensor_mb": {"on": peak[True], "off": peak[False]},
              "runs": {"on": times[True], "off": times[False]},
              "threads": torch.get_num_threads(), "cpu": cpu_name(), "torch": torch.__version__}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    sets = " ".join(args.set)
    lines = [f"# Train step with {SWITCHES[args.switch]} on and off ({args.config})", "",
             f"`python benchmarks/train_step.py --config {args.config}{' --set ' + sets if sets else ''} "
             f"--switch {args.switch} --steps {args.steps} --malloc {args.malloc}`: {report['cpu']}, "
             f"{report['threads']} threads, torch {torch.__version__}, batch {report['batch']}, "
             f"{report['gflop_per_step']:.0f} GFLOP per step (switch off). Median of {args.steps} steps each way "
             f"after {args.warmup} warm-up, the two ways alternating; peak live tensors of one step each way "
             "(weights, optimizer state and batch included).", "",
             f"| {SWITCHES[args.switch]} | step (s) | peak live tensors (MB) |", "| --- | --- | --- |",
             f"| True | {fast:.2f} | {peak[True]:.0f} |", f"| False | {stock:.2f} | {peak[False]:.0f} |", "",
             f"Paired ratio False / True (median): {ratio:.3f}."]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def live_state(trainer: Trainer) -> list[torch.Tensor]:
    """The tensors alive across steps: weights of the model and its EMA, optimizer state."""
    state = [v for s in trainer.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return [*trainer.unwrapped_model.parameters(), *trainer.ema.parameters(), *state]


if __name__ == "__main__":
    main()
