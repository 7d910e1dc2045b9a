"""The `kinema` command line: parse, call the library, print.

    kinema train  --config configs/moving-digits.yaml --out runs/digits [--steps N] [--resume]
    kinema sample --model runs/digits --num 8 --sampler ddim --steps 50 --out samples/

Exit codes: 0 success, 2 usage errors (bad arguments, config or paths), 1 runtime failures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import yaml

# ---- commands ----


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model from a YAML config into a run directory."""
    from .config import load_config
    from .training import Trainer

    overrides = dict(_parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    config = load_config(args.config, overrides)
    trainer = Trainer(config, args.out, resume=args.resume)
    trainer.fit()
    print(f"model: {Path(args.out) / 'model'}  metrics: {Path(args.out) / 'metrics.jsonl'}  "
          f"plot: {Path(args.out) / 'loss.png'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample clips from a model directory; write one mp4 + gif per clip and a grid."""
    from .diffusion import SAMPLERS
    from .pipeline import VideoPipeline

    if args.sampler not in SAMPLERS:
        raise ValueError(f"--sampler {args.sampler!r} is unknown; choose one of {sorted(SAMPLERS)}")
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device)
    options = {"eta": args.eta} if args.sampler == "ddim" else {}
    video = pipe(args.num, num_frames=args.frames, steps=args.steps, sampler=args.sampler, seed=args.seed,
                 **options)
    out = Path(args.out)
    for i in range(len(video)):
        for ext in ("mp4", "gif"):
            video[i].save(out / f"sample_{i:03d}.{ext}")
    video.save(out / "grid.mp4")
    video.save(out / "grid.gif")
    print(f"wrote {len(video)} samples (mp4 + gif) and grid.mp4 / grid.gif to {out}")
    return 0


# ---- parsing ----


def _parse_override(text: str) -> tuple[str, object]:
    """`section.key=value` with the value parsed as YAML data (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(prog="kinema", description="Video generation with diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", help="YAML run config (default: built-in defaults)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model/, metrics, samples)")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set train.batch_size=4 (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate clips from a trained model")
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=4, help="clips to generate (default 4)")
    p.add_argument("--sampler", default="ddim", help="ddim (default) or ddpm")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the training length)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.set_defaults(func=cmd_sample)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `kinema` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"kinema {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinema: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
