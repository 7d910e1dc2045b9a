"""Frame tasks on held-out digits: prediction and interpolation against the naive baselines.

    python benchmarks/frame_tasks.py --model runs/tasks --num 64 --steps 25

Prediction: 4 context frames -> the next 12. Interpolation: first + last -> the 14 between.
Baselines: repeating the last known frame, and linear blending (interpolation: a cross-fade of
the two ends; prediction: each pixel extrapolated linearly from the last two context frames).
Scores count only the generated frames. Writes benchmarks/results/frame_tasks.{json,md} and,
with --examples, one gif per task to docs/examples/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data import MovingDigits, MovingDigitsConfig, make_grid, to_uint8, write_video
from kinema.evaluation import frame_metrics, naive_baselines
from kinema.pipeline import VideoPipeline

RESULTS = Path(__file__).parent / "results"


def test_clips(pipe: VideoPipeline, num: int, max_digits: int) -> torch.Tensor:
    """`num` clips of the held-out split (digit images never seen in training), (N, 1, T, H, W)."""
    ds = MovingDigits(MovingDigitsConfig(size=pipe.size, num_frames=pipe.num_frames, split="test",
                                         max_digits=max_digits, seed=123, length=max(num, 1)))
    return torch.stack([ds[i]["video"] for i in range(num)])


def run_task(pipe, task: str, clips: torch.Tensor, k: int, args) -> tuple[dict, torch.Tensor]:
    """kinema's answer and the baselines' scores on the unknown frames of `task`."""
    t = clips.shape[2]
    start = time.time()
    if task == "predict":
        out = pipe(context=clips[:, :, :k], context_frames=k, num_frames=t, steps=args.steps, sampler=args.sampler,
                   seed=0, progress=False).torch()
        unknown = torch.arange(t) >= k
    else:
        out = pipe(first_frame=clips[:, :, 0], last_frame=clips[:, :, -1], num_frames=t, steps=args.steps,
                   sampler=args.sampler, seed=0, progress=False).torch()
        unknown = (torch.arange(t) > 0) & (torch.arange(t) < t - 1)
    seconds = time.time() - start
    target = torch.from_numpy(np.ascontiguousarray(to_uint8(clips))).float()  # compare at uint8 precision
    target = target.permute(0, 4, 1, 2, 3) / 127.5 - 1
    scores = {"kinema": frame_metrics(out, target, unknown)}
    for name, guess in naive_baselines(target, ~unknown).items():
        scores[name] = frame_metrics(guess, target, unknown)
    scores["kinema"]["seconds"] = seconds
    return scores, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--max-digits", type=int, default=1)
    parser.add_argument("--examples", action="store_true", help="also write docs/examples/*.gif")
    args = parser.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    clips = test_clips(pipe, args.num, args.max_digits)
    report = {"model": args.model, "clips": args.num, "split": "test", "sampler": args.sampler, "steps": args.steps,
              "frames": clips.shape[2], "size": pipe.size, "tasks": {}}
    outputs = {}
    for task, k in (("predict", 4), ("interpolate", 2)):
        report["tasks"][task], outputs[task] = run_task(pipe, task, clips, k, args)
        print(task, {n: round(s["psnr"], 2) for n, s in report["tasks"][task].items()})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frame_tasks.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Frame tasks on held-out digits ({args.num} clips, {args.sampler} {args.steps} steps)", "",
             "| task | method | PSNR (dB) | SSIM |", "| --- | --- | --- | --- |"]
    for task, scores in report["tasks"].items():
        for name, s in scores.items():
            lines.append(f"| {task} | {name} | {s['psnr']:.2f} | {s['ssim']:.3f} |")
    (RESULTS / "frame_tasks.md").write_text("\n".join(lines) + "\n")
    if args.examples:
        write_examples(pipe, clips, outputs)


def write_examples(pipe: VideoPipeline, clips: torch.Tensor, outputs: dict) -> None:
    """One gif per task under docs/examples/: real clip on the left, kinema's answer on the right."""
    out = Path(__file__).parent.parent / "docs" / "examples"
    real = to_uint8(clips[:4])
    for task in ("predict", "interpolate"):
        pair = np.concatenate([real, to_uint8(outputs[task][:4])], axis=0)  # 4 real then 4 generated
        write_video(out / f"{task}.gif", make_grid(pair, ncol=4), fps=6)
    write_video(out / "generate.gif", make_grid(pipe(8, steps=50, seed=1, progress=False).numpy(), ncol=4), fps=6)
    animate = pipe(first_frame=clips[:4, :, 0], num_frames=16, steps=50, seed=2, progress=False).numpy()
    write_video(out / "animate.gif", make_grid(animate, ncol=4), fps=6)
    long = pipe(2, num_frames=64, steps=25, seed=3, progress=False).numpy()
    write_video(out / "long-64-frames.gif", make_grid(long, ncol=2), fps=8)
    print(f"examples written to {out}")


if __name__ == "__main__":
    main()
