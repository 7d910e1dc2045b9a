"""Sample quality against sampler steps: FD-digits of DDPM, DDIM, DPM-Solver++ and Heun on one trained model.

    python benchmarks/sampler_quality.py --model runs/tasks-v --num 256

FD-digits is the Fréchet distance between the features of kinema's moving-digits network
(`kinema.evaluation.features`, shipped weights) on real held-out clips and on unconditional
samples; it is not FVD. Each sampler runs from the same seeds; the model counts model calls
(Heun makes two per step but the last). Writes benchmarks/results/sampler_quality.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kinema.data import MovingDigits, MovingDigitsConfig
from kinema.evaluation.features import clip_features, frechet_distance, gaussian_stats, load_feature_net
from kinema.pipeline import VideoPipeline

RESULTS = Path(__file__).parent / "results"
# (sampler, steps): the grid of the issue, cheapest last
GRID = [("ddpm", 1000), ("ddpm", 250), ("ddim", 50), ("ddim", 25), ("dpmpp_2m", 25), ("dpmpp_2m", 15),
        ("dpmpp_2m", 10), ("heun", 25), ("heun", 15), ("dpmpp_2m_sde", 25)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num", type=int, default=256, help="samples per sampler (and real clips)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--only", nargs="*", help="sampler:steps entries to run instead of the full grid")
    args = p.parse_args()
    grid = [(s.split(":")[0], int(s.split(":")[1])) for s in args.only] if args.only else GRID

    pipe = VideoPipeline.from_pretrained(args.model)
    net, sha = load_feature_net()
    ds = MovingDigits(MovingDigitsConfig(size=pipe.size, num_frames=pipe.num_frames, split="test", max_digits=1,
                                         seed=321, length=args.num))
    real = torch.stack([ds[i]["video"] for i in range(args.num)])
    ref = gaussian_stats(clip_features(net, real))
    half = gaussian_stats(clip_features(net, real[: args.num // 2]))
    rows = []
    for sampler, steps in grid:
        t0, calls = time.time(), 0
        videos = []
        for i in range(0, args.num, args.batch):
            n = min(args.batch, args.num - i)
            videos.append(pipe(n, steps=steps, sampler=sampler, seed=1000 + i, progress=False).torch())
        seconds = time.time() - t0
        fd = frechet_distance(*ref, *gaussian_stats(clip_features(net, torch.cat(videos))))
        calls = steps * (2 if sampler == "heun" else 1) - (1 if sampler == "heun" else 0)
        rows.append({"sampler": sampler, "steps": steps, "model_calls": calls, "fd_digits": round(fd, 3),
                     "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)
    report = {"model": args.model, "num": args.num, "feature_net_sha256": sha,
              "real_vs_real_half": round(frechet_distance(*ref, *half), 3), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sampler_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Sample quality against steps ({args.model}, {args.num} clips)", "",
             f"FD-digits (kinema's feature network, sha256 {sha[:12]}…; not FVD). Real held-out clips against "
             f"their own first half: {report['real_vs_real_half']}.", "",
             "| sampler | steps | model calls | FD-digits | seconds |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r['model_calls']} | {r['fd_digits']} | {r['seconds']} |"
              for r in rows]
    (RESULTS / "sampler_quality.md").write_text("\n".join(lines) + "\n")
    plot(rows, RESULTS / "sampler_quality.png")
    print("\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    """FD-digits against model calls, one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r["model_calls"], r["fd_digits"]) for r in rows if r["sampler"] == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xscale="log", xlabel="model calls", ylabel="FD-digits (lower is better)", title="quality vs steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
