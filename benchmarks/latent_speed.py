"""Seconds for a trained model to make one clip, decode included, and how much of it the decode takes.

    python benchmarks/latent_speed.py --model runs/natural-128          # 25 DPM-Solver++ steps, median of 3
    python benchmarks/latent_speed.py --model kinema/pretrained/moving-digits --steps 25 50

Runs `VideoPipeline` exactly as a user would (one clip, no guidance, the model's own size and frame
count), after one warm-up call; for a latent model it also times the decode of one sampled latent alone.
Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from kinema.pipeline import VideoPipeline
from kinema.runtime import cpu_bf16_flags


def timed(fn, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of fn()."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    """Time the model; write JSON and markdown."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--steps", type=int, nargs="+", default=[25])
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="latent_speed")
    args = ap.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    shape = (pipe.num_frames, pipe.size, pipe.size, pipe.channels)
    rows = []
    for steps in args.steps:
        run = lambda: pipe(1, steps=steps, sampler=args.sampler, seed=0, progress=False)  # noqa: E731
        run()  # warm-up
        seconds = timed(run, args.repeats)
        rows.append({"steps": steps, "median_s": statistics.median(seconds), "all_s": seconds})
    decode = None
    if pipe.autoencoder is not None:
        latent = torch.randn(1, pipe.model.config.in_channels, pipe.latent_frames(pipe.num_frames), pipe.grid,
                             pipe.grid)
        with torch.no_grad():
            seconds = timed(lambda: pipe._decode(latent, pipe.latent_frames(pipe.num_frames)), args.repeats)
        decode = statistics.median(seconds)
    result = {"model": args.model, "clip (T, H, W, C)": shape, "sampler": args.sampler, "rows": rows,
              "decode_s": decode, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "cpu_flags": cpu_bf16_flags() or "neither",
              "precision": pipe.precision}
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Seconds per clip: {args.model}", "",
             f"One {shape[0]} × {shape[1]} × {shape[2]} clip ({shape[3]} channels), {args.sampler}, no guidance, "
             f"median of {args.repeats} after a warm-up; {torch.get_num_threads()} threads, CPU flags: "
             f"{result['cpu_flags']}, precision {pipe.precision}.", "",
             "| steps | seconds per clip (decode included) |", "| --- | --- |"]
    lines += [f"| {r['steps']} | {r['median_s']:.2f} |" for r in rows]
    if decode is not None:
        lines += ["", f"The decode alone: {decode:.2f} s."]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
