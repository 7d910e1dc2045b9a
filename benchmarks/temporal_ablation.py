"""Temporal-loss ablation: warping error and flicker of generated clips, with and without the losses.

    python benchmarks/temporal_ablation.py --runs runs/temporal-off runs/temporal-on --num 64
    python benchmarks/temporal_ablation.py --runs runs/patch1 runs/patch2 --name patch_ablation \
        --title "Patch-size ablation"

For each run directory (its `model/` and `metrics.jsonl`) and for real held-out clips: the
occlusion-masked warping error (flow from the bundled flow network, estimated on each clip itself),
the flicker index of the static background, FD-digits (kinema's digit/motion feature network, not
FVD), the training loss of the last 100 logged steps, a held-out diffusion loss (the same noise and
timesteps for every run), and the run's training time. Any set of runs trained on moving digits can be
compared this way. Writes benchmarks/results/<name>.{json,md} (default temporal_ablation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kinema.config import DiffusionConfig, from_dict
from kinema.data import MovingDigits, MovingDigitsConfig
from kinema.diffusion import make_schedule, training_loss
from kinema.evaluation.features import clip_features, frechet_distance, gaussian_stats, load_feature_net
from kinema.evaluation.temporal import flicker_index, warping_error
from kinema.models.model_dir import load_flow_net
from kinema.models.model_dir import read_model_config
from kinema.pipeline import VideoPipeline

RESULTS = Path(__file__).parent / "results"


def clip_scores(videos: torch.Tensor, flow_net, feat_net, ref) -> dict:
    """Warping error, flicker and FD-digits of (N, C, T, H, W) clips."""
    return {"warping_error": round(float(warping_error(videos, flow_net).mean()), 5),
            "flicker": round(float(flicker_index(videos).mean()), 5),
            "fd_digits": round(frechet_distance(*ref, *gaussian_stats(clip_features(feat_net, videos))), 3)}


def heldout_loss(pipe: VideoPipeline, run: Path, real: torch.Tensor) -> float:
    """Mean diffusion MSE of the EMA model on held-out clips, with fixed noise and timesteps."""
    cfg = from_dict(DiffusionConfig, read_model_config(run / "model")["diffusion"], "diffusion.")
    schedule = make_schedule(cfg.schedule, cfg.num_steps, cfg.shift, cfg.frame_noise)
    g = torch.Generator().manual_seed(0)
    losses = []
    with torch.no_grad():
        for i in range(0, len(real), 32):
            terms = training_loss(pipe.model, real[i:i + 32], schedule=schedule, prediction=cfg.prediction,
                                  generator=g)
            losses.append(float(terms["mse"]) * len(real[i:i + 32]))
    return sum(losses) / len(real)


def train_summary(run: Path) -> dict:
    """Steps, wall time and the mean loss / mse of the last 100 logged steps of a run."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tail = [r for r in rows if r["step"] > rows[-1]["step"] - 100]
    out = {"steps": rows[-1]["step"], "train_mse_last100": round(sum(r["mse"] for r in tail) / len(tail), 5)}
    for key in ("flow", "cycle"):
        if key in tail[-1]:
            out[f"train_{key}_last100"] = round(sum(r[key] for r in tail) / len(tail), 5)
    steps = [0] + [r["step"] for r in rows]
    out["train_seconds"] = round(sum(r.get("sec_per_step", 0.0) * (b - a) for r, a, b in zip(rows, steps, steps[1:])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run directories (each with model/ and metrics.jsonl)")
    p.add_argument("--num", type=int, default=64, help="clips per row")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--name", default="temporal_ablation", help="results file stem")
    p.add_argument("--title", default="Temporal-loss ablation", help="heading of the markdown report")
    args = p.parse_args()
    flow_net, (feat_net, sha) = load_flow_net("flow-moving-digits"), load_feature_net()
    first = VideoPipeline.from_pretrained(Path(args.runs[0]) / "model")
    ds = MovingDigits(MovingDigitsConfig(size=first.size, num_frames=first.num_frames, split="test", max_digits=1,
                                         seed=321, length=2 * args.num))
    real = torch.stack([ds[i]["video"] for i in range(2 * args.num)])
    ref = gaussian_stats(clip_features(feat_net, real[: args.num]))
    rows = [{"name": "real clips (other seeds)", **clip_scores(real[args.num:], flow_net, feat_net, ref)}]
    print(rows[-1], flush=True)
    for run in map(Path, args.runs):
        pipe = VideoPipeline.from_pretrained(run / "model")
        t0 = time.time()
        videos = pipe(args.num, steps=args.steps, sampler=args.sampler, seed=7, progress=False).torch()
        rows.append({"name": run.name, **clip_scores(videos, flow_net, feat_net, ref),
                     "heldout_mse": round(heldout_loss(pipe, run, real[: args.num]), 5),
                     "sample_seconds": round(time.time() - t0, 1), **train_summary(run)})
        print(rows[-1], flush=True)
    report = {"num": args.num, "sampler": args.sampler, "steps": args.steps, "feature_net_sha256": sha,
              "flow_model": "flow-moving-digits", "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    cols = ["warping_error", "flicker", "fd_digits", "heldout_mse", "train_mse_last100", "steps", "train_seconds"]
    lines = [f"# {args.title} ({args.num} clips per row, {args.sampler} {args.steps} steps)", "",
             "| | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
