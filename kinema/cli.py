"""The `kinema` command line: parse, hand each command to `commands.py`, map errors to exit codes.

    kinema train  --config configs/moving-digits.yaml --out runs/digits [--steps N] [--resume]
    kinema sample --model runs/digits --num 8 --sampler ddim --steps 50 --out samples/ [--frames 128]
    kinema predict     --model M --video in.mp4 --context 4 --frames 32 --out o.mp4
    kinema interpolate --model M --first a.png --last b.png --frames 16 --out o.mp4
    kinema animate     --model M --image a.png --frames 16 --out o.mp4
    kinema sample  --model M --prompt "digit 7 moving left" --guidance 4 [--audio a.wav] [--image ref.png] --out d/
    kinema edit    --model M --video in.mp4 --prompt "digit 3 moving up" --strength 0.6 --out o.mp4
    kinema augment --model M --prompts prompts.txt --per-prompt 4 --out DIR   (a captioned video folder)
    kinema train-flow --data moving-digits --out flow/ [--steps N] [--set flow.width=32]
    kinema train-ae --config configs/autoencoder-digits.yaml --out runs/ae   (pixels <-> latents)
    kinema eval    --model M [--task predict] --num 256 --sampler dpmpp_2m --steps 10 --out report/ [--i3d W]
    kinema demo  [--model moving-digits] [--out outputs/demo]   (every task once + index.html)
    kinema serve [--model moving-digits] [--port 7860]           (a web page; pip install 'kinema[ui]')
    kinema data inspect DIR [--kind folder|ucf101|kinetics400] [--preview preview.png] [--json report.json]
    kinema data cache   DIR --out CACHE [--config run.yaml] [--set data.size=64] [--autoencoder AE]

Exit codes: 0 success, 2 usage errors (bad arguments, config or paths), 1 runtime failures.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from typing import Optional

from .commands import (cmd_augment, cmd_data, cmd_demo, cmd_edit, cmd_eval, cmd_finetune, cmd_frames, cmd_sample,
                       cmd_serve, cmd_train, cmd_train_ae, cmd_train_flow)

# ---- parsing ----


def _sampling_command(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    """A subcommand that samples from a model: its parser with the shared sampling flags, running `func`."""
    p = sub.add_parser(name, help=help)
    _add_sampling_args(p)
    p.set_defaults(func=func)
    return p


def _add_batch_args(p: argparse.ArgumentParser, batching: str) -> None:
    """--batch and --frames of the commands that write many clips."""
    p.add_argument("--batch", type=int, default=8, help=f"clips per sampler call (default 8); {batching}")
    p.add_argument("--frames", type=int, help="frames per clip, any length (default: the training window)")


def _add_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """--steps, --resume and --set of the commands that train into a run directory."""
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help=f"override one config value, e.g. --set {example} (repeatable)")


def _add_adapter_args(p: argparse.ArgumentParser) -> None:
    """--adapter / --adapter-scale: LoRA adapters on top of --model."""
    p.add_argument("--adapter", action="append", default=[], metavar="DIR",
                   help="a LoRA adapter directory trained on --model by kinema finetune (repeatable)")
    p.add_argument("--adapter-scale", type=float, action="append", default=[], metavar="S",
                   help="strength of each --adapter (one value for all, or one per adapter; default 1)")


def _add_sampling_args(p: argparse.ArgumentParser, image_flags: tuple[str, ...] = ("--image", "--ref-image")) -> None:
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--prompt", help="text condition (a text-conditioned model)")
    p.add_argument("--negative-prompt", help="text to steer away from (replaces the unconditional branch)")
    p.add_argument("--guidance", type=float, default=1.0, help="text guidance scale (default 1 = none)")
    p.add_argument(*image_flags, dest="ref_image", help="reference image (a model with an image encoder)")
    p.add_argument("--image-guidance", type=float, default=1.0, help="reference-image guidance scale")
    p.add_argument("--audio", help="sound track: an audio or video file (a model with an audio encoder)")
    p.add_argument("--audio-guidance", type=float, default=1.0, help="audio guidance scale")
    p.add_argument("--trajectory", metavar="PATH", help="where the object goes (a model trained with "
                   "cond.trajectory): 'x,y;x,y;...' normalised, 0,0 = top left; one point per frame, or waypoints "
                   "spread evenly along the path; '|' separates objects; or a .json file of [x, y] points")
    p.add_argument("--trajectory-guidance", type=float, default=1.0, help="trajectory guidance scale")
    p.add_argument("--no-frame-reference", dest="frame_reference", action="store_false",
                   help="do not hand a model with an image encoder the given first frame as its reference image")
    p.add_argument("--frame-guidance", type=float, default=1.0,
                   help="guidance scale of the given frames (predict / interpolate / animate; default 1 = none)")
    _add_adapter_args(p)
    p.add_argument("--sampler", default="ddim", help="ddim (default), ddpm, euler, heun, dpmpp_2m, dpmpp_2m_sde")
    p.add_argument("--steps", type=int, default=50, help="sampler steps per window (default 50)")
    p.add_argument("--spacing", choices=("leading", "linspace", "trailing", "karras"),
                   help="timestep spacing (default: karras for euler / heun / dpmpp_*, leading otherwise)")
    p.add_argument("--eta", type=float, help="noise of ddim (default 0, deterministic) or dpmpp_2m_sde (default 1)")
    p.add_argument("--cache-interval", type=int, default=1,
                   help="n > 1: run the network in full every n-th step, only its top level in between (DeepCache; "
                        "faster, some loss of quality; default 1 = every step in full)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overlap", type=int, help="frames shared by consecutive windows of a long video")
    p.add_argument("--long-mode", default="sliding", choices=("sliding", "keyframes"),
                   help="how videos longer than the window are made (default sliding)")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "no"),
                   help="auto (default): bf16 autocast where the hardware computes it natively (AMX / "
                        "AVX-512-BF16 CPUs, bf16 GPUs), float32 elsewhere; bf16 or no (float32) to force one")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow weights in a .pt / .ckpt pickle, read with torch.load(weights_only=True); "
                        "only for files you trust (default: safetensors only)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(prog="kinema", description="Video generation with diffusion models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config",
                   help="YAML run config (default: built-in defaults; with --resume, the run's own config.json)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model/, metrics, samples)")
    _add_run_args(p, "train.batch_size=4")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-ae", help="train a video autoencoder (latent diffusion's pixels <-> latents)")
    p.add_argument("--config", help="YAML run config: its autoencoder, ae_loss, data and train sections (default: "
                                    "built-in defaults; with --resume, the run's own config.json)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model/, metrics, samples)")
    _add_run_args(p, "autoencoder.spatial_factor=8")
    p.set_defaults(func=cmd_train_ae)

    p = sub.add_parser("finetune", help="fine-tune a trained model on new clips: every weight, or LoRA adapters")
    p.add_argument("--model", help="the base: a model directory or bundled name (not needed with --resume)")
    p.add_argument("--config", help="YAML run config: its data and train sections (the network is the base's)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, adapter/ or model/, metrics)")
    p.add_argument("--lora-rank", type=int, help="train rank-R adapters on a frozen base (default: every weight)")
    _add_run_args(p, "finetune.lora_targets=[attention]")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("train-flow", help="train the optical-flow network on video frames, without labels")
    p.add_argument("--data", required=True,
                   help="a data kind (moving-digits, folder, ...) or a YAML run config whose data section to use")
    p.add_argument("--out", required=True, help="flow model directory to write")
    p.add_argument("--steps", type=int, help="override flow_train.steps")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override data.*, flow.* or flow_train.* values, e.g. --set data.root=clips/ (repeatable)")
    p.set_defaults(func=cmd_train_flow)

    p = sub.add_parser("demo", help="run every task of a model once and write an HTML contact sheet")
    p.add_argument("--model", default="moving-digits", help="model directory or bundled name (default moving-digits)")
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--sampler", default="dpmpp_2m_sde",
                   help="sampler name (default dpmpp_2m_sde: its clips hold their digit best, docs/pretrained.md)")
    p.add_argument("--guidance", type=float, default=3.0,
                   help="guidance scale of the captions, and of the reference image (the given first frame) in the "
                        "frame tasks (default 3)")
    p.add_argument("--frame-guidance", type=float, default=3.0,
                   help="guidance scale of the given frames in prediction, interpolation, animation (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="a web page to play with a model (needs kinema[ui]: gradio)")
    p.add_argument("--model", default="moving-digits", help="model directory or bundled name (default moving-digits)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=7860)
    _add_adapter_args(p)
    p.set_defaults(func=cmd_serve)

    p = _sampling_command(sub, "sample", cmd_sample, "generate clips from a trained model")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=4, help="clips to generate (default 4), made --batch at a time")
    _add_batch_args(p, "any --num streams to disk in batches of this size")

    p = _sampling_command(sub, "edit", cmd_edit,
                          "re-generate a video under new conditions, keeping its layout (SDEdit)")
    p.add_argument("--video", required=True, help="the source video file")
    p.add_argument("--strength", type=float, default=0.6, help="noise level in (0, 1]: low keeps the source")
    p.add_argument("--out", required=True, help="output .mp4 or .gif")

    p = _sampling_command(sub, "augment", cmd_augment, "generate a captioned video folder from a list of prompts")
    p.add_argument("--prompts", required=True, help="text file, one prompt per line")
    p.add_argument("--per-prompt", type=int, default=4, help="clips per prompt (default 4)")
    _add_batch_args(p, "clips stream to disk in batches of this size")
    p.add_argument("--out", required=True, help="output folder (mp4 + .txt captions + captions.jsonl)")

    p = sub.add_parser("eval", help="score a model against real clips (FD-digits, KID, FVD with --i3d, frame, "
                                    "alignment and temporal metrics) and write a report")
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--data", default="moving-digits",
                   help="real clips: moving-digits (held-out digit images, default) or a directory of videos")
    p.add_argument("--kind", default="folder", choices=("folder", "ucf101", "kinetics400", "cache"),
                   help="layout of a --data directory (default folder)")
    p.add_argument("--data-seed", type=int, default=123, help="which real clips (moving-digits; default 123)")
    p.add_argument("--task", default="generate", choices=("generate", "predict", "interpolate", "animate"))
    p.add_argument("--num", type=int, default=256, help="real clips, and generated clips per step count")
    p.add_argument("--draws", type=int, default=1, help="samples per clip for predict / interpolate / animate: "
                                                        "reports the mean over them, the best of them and the score "
                                                        "of their pixel-wise average")
    p.add_argument("--context", type=int, default=4, help="predict: given frames (default 4)")
    p.add_argument("--cond", nargs="+", default=[], choices=("text", "image", "audio", "trajectory"),
                   help="conditions each real clip lends: its caption, first frame, sound, track (a conditioned "
                        "model)")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance scale of every given condition")
    p.add_argument("--sampler", default="ddim", help="ddim (default), ddpm, euler, heun, dpmpp_2m, dpmpp_2m_sde")
    p.add_argument("--steps", type=int, nargs="+", default=[25],
                   help="sampler steps; several values evaluate each and plot the metrics against them")
    p.add_argument("--spacing", choices=("leading", "linspace", "trailing", "karras"),
                   help="timestep spacing (default: karras for euler / heun / dpmpp_*, leading otherwise)")
    p.add_argument("--eta", type=float, help="noise of ddim or dpmpp_2m_sde")
    p.add_argument("--cache-interval", type=int, default=1,
                   help="n > 1: the full network every n-th step, its top level in between (feature caching)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--batch", type=int, default=8,
                   help="clips per sampler call (default 8: on CPU larger batches cost more per clip)")
    p.add_argument("--no-frame-reference", dest="frame_reference", action="store_false",
                   help="do not hand a model with an image encoder the given first frame as its reference image")
    p.add_argument("--frame-guidance", type=float, default=1.0,
                   help="guidance scale of the given frames (predict / interpolate / animate; default 1 = none)")
    _add_adapter_args(p)
    p.add_argument("--count-frames", default="all", choices=("all", "generated"),
                   help="frames the distribution metrics see: all (given ones included) or the generated ones")
    p.add_argument("--lpips", help="LPIPS (AlexNet) weights, the whole LPIPS(net='alex') state dict as .safetensors "
                                  "(a .pt with --trust-pickle); without them LPIPS is not reported")
    p.add_argument("--i3d", help="I3D Kinetics-400 weights (.safetensors; a state dict .pt with --trust-pickle) "
                                 "for FVD; without them FVD is reported unavailable")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow --i3d / --lpips to be a pickled state dict (read with torch.load(weights_only=True))")
    p.add_argument("--flow", help="flow model directory: adds the warping error to the temporal metrics")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "no"), help="sampling precision")
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--out", required=True, help="report directory (report.json, report.md, png plots)")
    p.set_defaults(func=cmd_eval)

    tasks = {
        "predict": ("continue a video from its last --context frames", [("--video", "input video file"),
                                                                         ("--context", "frames of context")]),
        "interpolate": ("fill the frames between two images", [("--first", "first image"), ("--last", "last image")]),
        "animate": ("make a clip that starts with an image", [("--image", "the first frame")]),
    }
    for name, (help_text, inputs) in tasks.items():
        p = sub.add_parser(name, help=help_text)
        _add_sampling_args(p, image_flags=("--ref-image",))
        for flag, flag_help in inputs:
            p.add_argument(flag, required=True, help=flag_help, type=int if flag == "--context" else str)
        p.add_argument("--frames", type=int, default=16, help="frames of the result, given ones included")
        p.add_argument("--draws", type=int, default=1,
                       help="average this many samples: the least-squares estimate, blurrier but closer "
                            "on average (PSNR) than one sample (default 1)")
        p.add_argument("--out", required=True, help="output .mp4 or .gif")
        p.set_defaults(func=cmd_frames)

    data = sub.add_parser("data", help="inspect or cache a collection of videos")
    data_sub = data.add_subparsers(dest="action", required=True)
    for action, help_text in (("inspect", "counts, durations, sizes, fps, captions, bad files, a preview"),
                              ("cache", "decode every clip once into a memory-mapped uint8 shard")):
        p = data_sub.add_parser(action, help=help_text)
        p.add_argument("dir", help="the videos' root directory")
        p.add_argument("--kind", choices=("folder", "ucf101", "kinetics400"),
                       help="how DIR is laid out (default: --config's data.kind, else folder)")
        p.add_argument("--split-file", help="ucf101: trainlist0k.txt / testlist0k.txt")
        p.add_argument("--annotations", help="kinetics400: the annotations CSV")
        p.add_argument("--config", help="YAML run config whose data section sets the clip sampling")
        p.add_argument("--set", action="append", default=[], metavar="data.KEY=VALUE",
                       help="override one data setting, e.g. --set data.size=64 (repeatable)")
        if action == "cache":
            p.add_argument("--out", required=True, help="cache directory to write: a new or empty folder")
            p.add_argument("--overwrite", action="store_true",
                           help="replace the kinema cache already in --out (nothing but a cache is ever replaced)")
            p.add_argument("--autoencoder", metavar="AE",
                           help="also store every clip's latent under this autoencoder (model directory, train-ae "
                                "run, bundled name or diffusers:PATH): latent training then encodes nothing")
        else:
            p.add_argument("--preview", default="preview.png", help="preview sheet image (default preview.png)")
            p.add_argument("--json", help="also write the report as JSON here")
        p.set_defaults(func=cmd_data)
    return parser


def _one_line(message) -> str:
    """A message on one line: line breaks (and the indentation after them) become one space, other spaces stay,
    so a path with two spaces in it is printed as it is."""
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, without the source line Python adds."""
    return f"kinema: warning: {_one_line(message)}\n"


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the `kinema` console script; returns the exit code (0 ok, 2 usage error, 1 failure).

    Errors print one line; set KINEMA_TRACEBACK=1 to see the traceback of a runtime failure. Run from
    the command line (argv None), it first makes malloc keep freed memory for reuse
    (`kinema.runtime.keep_freed_memory`: no page faults on every step); KINEMA_MALLOC=system opts out.
    """
    if argv is None and os.environ.get("KINEMA_MALLOC", "keep") != "system":
        from .runtime import keep_freed_memory

        keep_freed_memory()
    args = build_parser().parse_args(argv)
    default_format, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:  # bad input
        print(f"kinema {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinema: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a runtime failure (diverged training, out of memory, I/O)
        if os.environ.get("KINEMA_TRACEBACK") == "1":
            raise
        print(f"kinema {args.command}: error: {type(err).__name__}: {_one_line(err)} "
              "(KINEMA_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = default_format

if __name__ == "__main__":
    sys.exit(main())
