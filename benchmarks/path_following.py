"""How closely a trajectory-conditioned model's digit follows paths, including shapes the data never has.

    python benchmarks/path_following.py --model runs/path --out benchmarks/results/path_following

Paths (normalised, inside the room a 14-pixel digit has in a 32-pixel frame):
- straight: a constant-velocity line, the kind every training clip starts with;
- circle: one turn around the centre (the data's digits only move straight and bounce);
- zigzag: waypoints alternating up and down while moving right, spread at constant speed;
- stop and go: a third of the clip moving right, a third standing still, a third moving right.
Per path, `--num` held-out digits (test split, data seed 321), prompted "digit d moving <first step's
direction>", with the trajectory guided at `--guidance`: the mean distance in pixels between the
generated digit's tracked centre and the path (kinema.evaluation.alignment, the tracker kinema eval
uses), the share of clips within 2 px, and digit identity (share of frames showing the prompt's
digit, clips holding it in >= 90 % of frames). Writes path_following.json / .md and a GIF per path
with the path drawn over the first clips.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data import Video
from kinema.data.datasets import DIRECTIONS, MovingDigits, MovingDigitsConfig
from kinema.evaluation.alignment import DigitClassifier, centroid_track, direction_of, identity_scores, path_error
from kinema.inputs import draw_path, resample_path
from kinema.pipeline import VideoPipeline


def paths(frames: int) -> dict[str, torch.Tensor]:
    """Each named path as (T, 2) normalised (x, y)."""
    t = torch.arange(frames, dtype=torch.float32)
    angle = 2 * math.pi * t / frames
    third = frames // 3
    stop_go = torch.cat([torch.linspace(0.25, 0.45, third), torch.full((third,), 0.45),
                         torch.linspace(0.45, 0.72, frames - 2 * third)])
    return {
        "straight": torch.stack([torch.linspace(0.3, 0.7, frames), torch.linspace(0.65, 0.35, frames)], dim=-1),
        "circle": torch.stack([0.5 + 0.2 * torch.cos(angle), 0.5 + 0.2 * torch.sin(angle)], dim=-1),
        "zigzag": resample_path([(0.25, 0.35), (0.375, 0.65), (0.5, 0.35), (0.625, 0.65), (0.75, 0.35)], frames),
        "stop and go": torch.stack([stop_go, torch.full((frames,), 0.5)], dim=-1),
    }


def caption(digit: int, path: torch.Tensor, size: int) -> str:
    """'digit d moving <the direction of the path's first step>' (captions name the initial motion)."""
    step = direction_of((path[:, [1, 0]] * size).numpy())  # the tracker's (y, x) convention
    return f"digit {digit} moving {DIRECTIONS[step] if step >= 0 else 'right'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="benchmarks/results/path_following")
    ap.add_argument("--num", type=int, default=50, help="clips per path")
    ap.add_argument("--guidance", type=float, default=3.0, help="text and trajectory guidance scale")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = VideoPipeline.from_pretrained(args.model)
    size, frames = pipe.size, pipe.num_frames
    data = MovingDigits(MovingDigitsConfig(size=size, num_frames=frames, max_digits=1, split="test", seed=321,
                                           length=args.num))
    digits = [data.tracks(i)[0].digit for i in range(args.num)]
    classifier = DigitClassifier()
    rows, start = {}, time.time()
    for name, path in paths(frames).items():
        clips = []
        for k, lo in enumerate(range(0, args.num, 8)):
            batch = digits[lo:lo + 8]
            clips.append(pipe(len(batch), prompt=[caption(d, path, size) for d in batch], guidance=args.guidance,
                              trajectory=path[None, :, None].expand(len(batch), -1, -1, -1),
                              trajectory_guidance=args.guidance, sampler=args.sampler, steps=args.steps,
                              seed=args.seed + k, progress=False).numpy())
        clips = np.concatenate(clips)  # (N, T, H, W, C)
        errors = np.array([path_error(centroid_track(c), path.numpy(), size) for c in clips])
        scored = errors[np.isfinite(errors)]
        identity = identity_scores([classifier.frame_digits(c) for c in clips], digits)
        rows[name] = {"error_px_mean": float(scored.mean()), "error_px_median": float(np.median(scored)),
                      "within_2px": float((scored <= 2).mean()), "clips_scored": int(len(scored)), **identity}
        drawn = np.concatenate([draw_path(c, path[:, None].numpy(), scale=4) for c in clips[:4]], axis=2)
        Video(drawn[None], fps=pipe.fps).save(out / f"{name.replace(' ', '_')}.gif")
        print(name, json.dumps(rows[name]))
    report = {"model": args.model, "num": args.num, "guidance": args.guidance, "sampler": args.sampler,
              "steps": args.steps, "seed": args.seed, "size": size, "frames": frames,
              "threads": torch.get_num_threads(), "seconds": round(time.time() - start, 1), "paths": rows}
    (out / "path_following.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Path following: {args.model}", "",
             f"{args.num} held-out digits per path, {args.sampler} {args.steps} steps, text and path guidance "
             f"{args.guidance}, {size} × {size} × {frames}. Error: mean distance (px) of the tracked centre to the path.",
             "", "| path | error px (mean) | median | clips within 2 px | frame identity | identity held |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {r['error_px_mean']:.2f} | {r['error_px_median']:.2f} | {r['within_2px']:.2f} | "
              f"{r['frame_identity']:.3f} | {r['identity_held']:.2f} |" for n, r in rows.items()]
    (out / "path_following.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
