"""Seconds to generate one 16 x 64 x 64 RGB clip with the config-B-size SpaceTimeUNet, and where they go.

    python benchmarks/generation_speed.py                      # 25 DPM-Solver++ steps, median of 3
    python benchmarks/generation_speed.py --precisions fp32 bf16 --steps 25 --repeat 5
    python benchmarks/generation_speed.py --patch-sizes 1 2 4 --layouts channels-last
    python benchmarks/generation_speed.py --malloc keep --name generation_speed-keep   # as the kinema command runs
    python benchmarks/generation_speed.py --patch-sizes 1 2 --cache-intervals 1 2 3    # with DeepCache

The model is the peers benchmark's kinema network (width 48, channel_mult 1-2-4-8, 34 M parameters;
random weights: the time does not depend on them), run through `VideoPipeline` exactly as a user
would, one clip, no guidance. Each precision is timed with channels-last activations and without.
`--patch-sizes` adds the same network with `patch_size` p (p x p pixels folded into channels: the
levels run on a p-times smaller grid, so each call does less work; the FLOP column says how much).
`--cache-intervals` n > 1 runs the network in full every n-th step and only its top level in between
(`kinema.models.StepCache`): less work again, at some cost in quality (benchmarks/sampler_quality.py).
bf16 runs only where the hardware computes it natively (AMX / AVX-512-BF16, or a bf16 GPU) unless
asked for. FLOPs per denoiser call come from `kinema.models.kernels.flop_counter`; the profile of
one call at the fastest setting shows where the time goes. Writes
benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from kinema.config import DiffusionConfig, UNetConfig, resolve_precision
from kinema.models import FeatureCache, SpaceTimeUNet
from kinema.models.kernels import flop_counter
from kinema.pipeline import VideoPipeline
from kinema.runtime import keep_freed_memory

RESULTS = Path(__file__).parent / "results"
CLIP = (3, 16, 64, 64)  # (C, T, H, W)
MODEL = UNetConfig(in_channels=3, channels=48, channel_mult=(1, 2, 4, 8), num_res_blocks=1,
                   spatial_attention_levels=(2, 3), head_dim=16, norm_groups=8)  # = benchmarks/peers.py, config B


def cpu_name() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_generation(pipe: VideoPipeline, steps: int, sampler: str, warmup: int, repeat: int,
                    cache_interval: int = 1) -> list[float]:
    """Wall seconds of `repeat` one-clip generations after `warmup` untimed ones."""
    runs = []
    for i in range(warmup + repeat):
        start = time.perf_counter()
        pipe(1, steps=steps, sampler=sampler, seed=i, cache_interval=cache_interval, progress=False)
        if i >= warmup:
            runs.append(time.perf_counter() - start)
    return runs


def call_flops(model: SpaceTimeUNet, precision: str, reuse: bool = False) -> int:
    """FLOPs of one denoiser call on one clip (`reuse`: a call that runs only the top level on cached features)."""
    x, cache = torch.randn(1, *CLIP), FeatureCache()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model(x, torch.tensor([500]), cache=cache)
        cache.reuse = reuse
        with flop_counter() as fc:
            model(x, torch.tensor([500]), cache=cache)
    return fc.get_total_flops()


def profile_call(model: SpaceTimeUNet, precision: str, top: int = 8) -> list[dict]:
    """The ops that take the most self time in one denoiser call: name, ms, share."""
    x = torch.randn(1, *CLIP)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model(x, torch.tensor([500]))  # warm-up
        with torch.profiler.profile() as prof:
            model(x, torch.tensor([500]))
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3)} for e in events[:top]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"],
                   help="default: fp32, and bf16 where the hardware has it")
    p.add_argument("--patch-sizes", nargs="+", type=int, default=[1], help="UNet patch sizes to time")
    p.add_argument("--layouts", nargs="+", choices=["channels-last", "default"], default=["channels-last", "default"])
    p.add_argument("--cache-intervals", nargs="+", type=int, default=[1],
                   help="n > 1: the network in full every n-th step, its top level in between (DeepCache)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--name", default="generation_speed", help="results file stem")
    p.add_argument("--malloc", default="system", choices=["system", "keep"],
                   help="keep: kinema.runtime.keep_freed_memory() first, as the kinema command does")
    args = p.parse_args()
    if args.malloc == "keep" and not keep_freed_memory():
        raise SystemExit("--malloc keep needs glibc (Linux)")
    native_bf16 = resolve_precision("auto", "cpu") == "bf16"
    precisions = args.precisions or (["fp32", "bf16"] if native_bf16 else ["fp32"])

    rows, models = [], {}
    for patch_size in args.patch_sizes:
        torch.manual_seed(0)
        model = models[patch_size] = SpaceTimeUNet(dataclasses.replace(MODEL, patch_size=patch_size))
        for precision in precisions:
            pipe = VideoPipeline(model, DiffusionConfig(prediction="v"), size=CLIP[2], num_frames=CLIP[1],
                                 device="cpu", precision="bf16" if precision == "bf16" else "no")
            full, reused = call_flops(pipe.model, precision), call_flops(pipe.model, precision, reuse=True)
            for layout, interval in itertools.product(args.layouts, args.cache_intervals):
                pipe.model.channels_last = layout == "channels-last"
                runs = time_generation(pipe, args.steps, args.sampler, args.warmup, args.repeat, interval)
                seconds = statistics.median(runs)
                full_calls = len(range(0, args.steps, interval))  # steps 0, n, 2n, ... run in full
                flops = (full_calls * full + (args.steps - full_calls) * reused) / args.steps  # mean per call
                rows.append({"patch_size": patch_size, "params": sum(p.numel() for p in model.parameters()),
                             "precision": precision, "channels_last": pipe.model.channels_last,
                             "cache_interval": interval,
                             "seconds": round(seconds, 2), "runs": [round(r, 2) for r in runs],
                             "per_call_s": round(seconds / args.steps, 3), "gflop_per_call": round(flops / 1e9, 1),
                             "tflops": round(flops * args.steps / seconds / 1e12, 3)})
                print(json.dumps(rows[-1]), flush=True)
    # the profile: the full-size network (the smallest patch asked for) at its fastest setting
    best = min((r for r in rows if r["patch_size"] == min(args.patch_sizes) and r["cache_interval"] == 1),
               key=lambda r: r["seconds"], default=None) or rows[0]
    model = models[best["patch_size"]]
    model.channels_last = best["channels_last"]
    report = {"cpu": cpu_name(), "native_bf16": native_bf16, "threads": torch.get_num_threads(), "malloc": args.malloc,
              "torch": torch.__version__, "clip": CLIP, "steps": args.steps, "sampler": args.sampler, "rows": rows,
              "profile_of": {k: best[k] for k in ("patch_size", "precision", "channels_last")},
              "profile": profile_call(model, best["precision"])}
    write(report, args.name)


def write(report: dict, name: str) -> None:
    """benchmarks/results/<name>.json and its markdown table."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    c, t, h, w = report["clip"]
    lines = [f"# One {t} × {h} × {w} clip ({c} channels), {report['steps']} {report['sampler']} steps", "",
             f"{report['cpu']}, {report['threads']} threads, native bf16: {report['native_bf16']}; torch "
             f"{report['torch']}; SpaceTimeUNet at config-B size (width 48, channel_mult 1-2-4-8), "
             "`VideoPipeline`, one clip, no guidance. Median of the timed runs after warm-up. malloc: "
             f"{report.get('malloc', 'system')}.", "",
             "| patch size | params (M) | precision | activations | cache interval | seconds per clip | "
             "per denoiser call (s) | GFLOP per call | TFLOP/s |", "| --- " * 9 + "|"]
    lines += [f"| {r['patch_size']} | {r['params'] / 1e6:.1f} | {r['precision']} | "
              f"{'channels-last' if r['channels_last'] else 'default layout'} | {r.get('cache_interval', 1)} | "
              f"{r['seconds']} | {r['per_call_s']} | "
              f"{r['gflop_per_call']} | {r['tflops']} |" for r in report["rows"]]
    prof = report["profile_of"]
    lines += ["", f"Where one denoiser call's time goes (patch size {prof['patch_size']}, {prof['precision']}, "
              f"{'channels-last' if prof['channels_last'] else 'default layout'}; self time):", "",
              "| op | ms | share |", "| --- | --- | --- |"]
    lines += [f"| `{e['op']}` | {e['ms']} | {100 * e['share']:.1f} % |" for e in report["profile"]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
