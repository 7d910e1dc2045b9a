"""Seconds per guided clip with the guidance branches batched into one network call or called one by one.

    python benchmarks/guidance_speed.py                       # the shipped text model, 1 and 4 clips
    python benchmarks/guidance_speed.py --model runs/text --clips 1 8 --steps 25

Classifier-free guidance evaluates the network once per branch (unconditional, + text, ...).
`VideoPipeline.batch_guidance` (default True) stacks the branches into one call on a batch repeated
once per branch; False calls the network once per branch. The work is the same; a bigger batch
runs faster per clip. Both are timed from the same seeds and the largest pixel difference between
their clips is reported (they differ only by float rounding). Writes benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from kinema.pipeline import VideoPipeline
from kinema.runtime import keep_freed_memory

from generation_speed import cpu_name  # benchmarks/ is on the path of a script run from it

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="moving-digits-text", help="a text-conditioned model (name, directory or run)")
    p.add_argument("--prompt", default="digit 3 moving up")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--clips", nargs="+", type=int, default=[1, 4], help="clips per call")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--name", default="guidance_speed", help="results file stem")
    args = p.parse_args()
    keep_freed_memory()  # as the kinema command runs
    pipe = VideoPipeline.from_pretrained(args.model)
    rows = []
    for clips in args.clips:
        videos, times = {}, {True: [], False: []}
        for i in range(1 + args.repeat):  # the first round warms up; the two ways alternate, so drift hits both
            for batched in (True, False):
                pipe.batch_guidance = batched
                start = time.perf_counter()
                video = pipe(clips, prompt=args.prompt, guidance=args.guidance, steps=args.steps,
                             sampler=args.sampler, seed=i, progress=False).numpy()
                if i:
                    times[batched].append(time.perf_counter() - start)
                if i == 1:
                    videos[batched] = video
        row = {"clips": clips, "batched_s": round(statistics.median(times[True]), 2),
               "one_by_one_s": round(statistics.median(times[False]), 2),
               "runs": {"batched": [round(r, 2) for r in times[True]], "one_by_one": [round(r, 2) for r in times[False]]},
               "max_pixel_difference": int(np.abs(videos[True].astype(int) - videos[False].astype(int)).max())}
        row["speedup"] = round(row["one_by_one_s"] / row["batched_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"model": args.model, "prompt": args.prompt, "guidance": args.guidance, "steps": args.steps,
              "sampler": args.sampler, "threads": torch.get_num_threads(), "cpu": cpu_name(),
              "torch": torch.__version__, "size": pipe.size, "frames": pipe.num_frames, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Guided sampling: branches batched or one by one ({args.model})", "",
             f"{pipe.size} × {pipe.size} × {pipe.num_frames} clips, text guidance {args.guidance} (two branches), "
             f"{args.steps} {args.sampler} steps, {report['cpu']}, {torch.get_num_threads()} threads, torch "
             f"{torch.__version__}. "
             f"Median of {args.repeat} runs after one warm-up, the two ways alternating.", "",
             "| clips per call | batched (s) | one by one (s) | speed-up | largest pixel difference |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['clips']} | {r['batched_s']} | {r['one_by_one_s']} | {r['speedup']}× | {r['max_pixel_difference']} |"
              for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
