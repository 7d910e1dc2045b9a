"""Sample quality against sampler steps: FD-digits of DDPM, DDIM, DPM-Solver++ and Heun on one trained model.

    python benchmarks/sampler_quality.py --model moving-digits-text --num 48 --name sampler_quality-text
    python benchmarks/sampler_quality.py --model moving-digits-text --only dpmpp_2m:25 dpmpp_2m:25:2 --name cache

FD-digits is the Fréchet distance between the features of kinema's moving-digits network
(`kinema.evaluation.features`, shipped weights) on real held-out clips and on unconditional
samples; it is not FVD. KID-digits, the unbiased kernel distance on the same features, is given
beside it: at a few dozen clips FD carries a bias that KID does not. The reference is `--real`
held-out clips; the floor is another `--num` real clips scored against it. Each sampler runs from
the same seeds; the model calls are counted (Heun makes two per step but the last). An entry
`sampler:steps:n` runs the network in full every n-th step only and its top level in between
(feature caching, `cache_interval=n`), so its cost in quality is measured here. The grid runs
cheapest first and the results are rewritten after every row, so a run cut short keeps its rows.
Writes benchmarks/results/<name>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kinema.data import MovingDigits, MovingDigitsConfig
from kinema.evaluation.features import (
    clip_features,
    frechet_distance,
    gaussian_stats,
    kernel_distance,
    load_feature_net,
)
from kinema.pipeline import VideoPipeline

RESULTS = Path(__file__).parent / "results"
# (sampler, steps): the grid of the issue, cheapest first
GRID = [("dpmpp_2m", 10), ("dpmpp_2m", 15), ("heun", 15), ("ddim", 25), ("dpmpp_2m", 25), ("dpmpp_2m_sde", 25),
        ("heun", 25), ("ddim", 50), ("ddpm", 250), ("ddpm", 1000)]


def model_calls(sampler: str, steps: int) -> int:
    """Network evaluations of one sampling run (Heun: two per step, one in the last)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def parse_entry(text: str) -> tuple[str, int, int]:
    """"sampler:steps" or "sampler:steps:cache_interval" -> (sampler, steps, interval)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        raise SystemExit(f"--only entries are sampler:steps or sampler:steps:cache_interval, got {text!r}")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 1


def real_clips(pipe: VideoPipeline, num: int, seed: int) -> torch.Tensor:
    """`num` held-out moving-digits clips (N, 1, T, H, W) at the model's size and length."""
    ds = MovingDigits(MovingDigitsConfig(size=pipe.size, num_frames=pipe.num_frames, split="test", max_digits=1,
                                         seed=seed, length=num))
    return torch.stack([ds[i]["video"] for i in range(num)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num", type=int, default=256, help="samples per sampler")
    p.add_argument("--real", type=int, default=512, help="real held-out clips in the reference statistics")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=1000, help="batch i of the samples is drawn with seed + i")
    p.add_argument("--name", default="sampler_quality", help="results file stem")
    p.add_argument("--only", nargs="*", help="sampler:steps[:cache interval] entries to run instead of the full grid")
    args = p.parse_args()
    grid = [parse_entry(s) for s in args.only] if args.only else [(s, n, 1) for s, n in GRID]

    pipe = VideoPipeline.from_pretrained(args.model)
    net, sha = load_feature_net()
    ref_feats = clip_features(net, real_clips(pipe, args.real, seed=321))
    ref = gaussian_stats(ref_feats)
    floor_feats = clip_features(net, real_clips(pipe, args.num, seed=654))
    report = {"model": args.model, "num": args.num, "real": args.real, "seed": args.seed, "feature_net_sha256": sha,
              "real_floor": {"fd_digits": round(frechet_distance(*ref, *gaussian_stats(floor_feats)), 3),
                             "kid_digits": round(kernel_distance(ref_feats, floor_feats)["mean"], 4)},
              "rows": []}
    for sampler, steps, interval in grid:
        t0 = time.time()
        videos = []
        for i in range(0, args.num, args.batch):
            n = min(args.batch, args.num - i)
            videos.append(pipe(n, steps=steps, sampler=sampler, seed=args.seed + i, cache_interval=interval,
                               progress=False).torch())
        seconds = time.time() - t0
        feats = clip_features(net, torch.cat(videos))
        report["rows"].append({"sampler": sampler, "steps": steps, "cache_interval": interval,
                               "model_calls": model_calls(sampler, steps),
                               "fd_digits": round(frechet_distance(*ref, *gaussian_stats(feats)), 3),
                               "kid_digits": round(kernel_distance(ref_feats, feats)["mean"], 4),
                               "seconds": round(seconds, 1)})
        print(report["rows"][-1], flush=True)
        write(report, args.name)


def write(report: dict, name: str) -> None:
    """The JSON, the markdown table and the plot of the rows so far."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    floor = report["real_floor"]
    lines = [f"# Sample quality against steps ({report['model']}, {report['num']} clips per sampler)", "",
             f"FD-digits / KID-digits (kinema's feature network, sha256 {report['feature_net_sha256'][:12]}…; "
             f"not FVD) against {report['real']} real held-out clips. Floor, {report['num']} other real clips: "
             f"FD {floor['fd_digits']}, KID {floor['kid_digits']}.", "",
             "| sampler | steps | cache interval | model calls | FD-digits | KID-digits | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r.get('cache_interval', 1)} | {r['model_calls']} | "
              f"{r['fd_digits']} | {r['kid_digits']} | {r['seconds']} |" for r in report["rows"]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(report["rows"], RESULTS / f"{name}.png")


def plot(rows: list[dict], path: Path) -> None:
    """FD-digits against model calls, one line per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    def label(r: dict) -> str:
        n = r.get("cache_interval", 1)
        return r["sampler"] if n == 1 else f"{r['sampler']}, cache every {n}"

    for name in dict.fromkeys(label(r) for r in rows):
        pts = sorted((r["model_calls"], r["fd_digits"]) for r in rows if label(r) == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    ax.set(xscale="log", xlabel="model calls", ylabel="FD-digits (lower is better)", title="quality vs steps")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
