"""The `kinema` command line: parse, call the library, print.

    kinema train  --config configs/moving-digits.yaml --out runs/digits [--steps N] [--resume]
    kinema sample --model runs/digits --num 8 --sampler ddim --steps 50 --out samples/ [--frames 128]
    kinema predict     --model M --video in.mp4 --context 4 --frames 32 --out o.mp4
    kinema interpolate --model M --first a.png --last b.png --frames 16 --out o.mp4
    kinema animate     --model M --image a.png --frames 16 --out o.mp4
    kinema sample  --model M --prompt "digit 7 moving left" --guidance 4 [--audio a.wav] [--image ref.png] --out d/
    kinema edit    --model M --video in.mp4 --prompt "digit 3 moving up" --strength 0.6 --out o.mp4
    kinema augment --model M --prompts prompts.txt --per-prompt 4 --out DIR   (a captioned video folder)
    kinema train-flow --data moving-digits --out flow/ [--steps N] [--set flow.width=32]
    kinema eval    --model M [--task predict] --num 256 --sampler dpmpp_2m --steps 10 --out report/ [--i3d W]
    kinema demo  [--model moving-digits] [--out outputs/demo]   (every task once + index.html)
    kinema serve [--model moving-digits] [--port 7860]           (a web page; pip install 'kinema[ui]')
    kinema data inspect DIR [--kind folder|ucf101|kinetics400] [--preview preview.png] [--json report.json]
    kinema data cache   DIR --out CACHE [--config run.yaml] [--set data.size=64]

Exit codes: 0 success, 2 usage errors (bad arguments, config or paths), 1 runtime failures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import warnings
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


def cmd_train_flow(args: argparse.Namespace) -> int:
    """Train the optical-flow network without labels on consecutive frames; write a flow model directory."""
    from .config import DataConfig, FlowConfig, FlowTrainConfig, from_dict, load_config, to_dict
    from .training.flow_training import train_flow

    sections: dict[str, dict] = {"data": {}, "flow": {}, "flow_train": {}}
    for dotted, value in (_parse_override(s) for s in args.set):
        section, _, key = dotted.partition(".")
        if section not in sections:
            raise ValueError(f"--set {dotted}: train-flow takes data.*, flow.* and flow_train.* keys")
        sections[section][key] = value
    if args.steps is not None:
        sections["flow_train"]["steps"] = args.steps
    if args.data.endswith((".yaml", ".yml")):
        base = to_dict(load_config(args.data).data)  # the data section of a run config
    else:
        base = {"kind": args.data}
    data = from_dict(DataConfig, {**base, **sections["data"]}, "data.")
    channels = 1 if data.kind == "moving-digits" else 3
    flow = from_dict(FlowConfig, {"in_channels": channels, **sections["flow"]}, "flow.")
    summary = train_flow(data, args.out, flow, from_dict(FlowTrainConfig, sections["flow_train"], "flow_train."))
    print(f"flow model: {args.out}  ({summary['steps']} steps in {summary['seconds']} s, "
          f"final loss {summary['final']['loss']:.4f})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run every task of a model once; write GIF / MP4 clips and an index.html contact sheet."""
    from .demo import run_demo

    _check_seed(args.seed)

    summary = run_demo(args.model, args.out, steps=args.steps, sampler=args.sampler, guidance=args.guidance,
                       seed=args.seed)
    print(f"{len(summary['clips'])} clips in {summary['seconds']} s; open {Path(args.out) / 'index.html'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a model in a web page (gradio): prompt, image / audio / video inputs, task, sampler, guidance."""
    import socket

    from .serve import serve

    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    try:  # a bad address or a taken port, named before the model loads
        info = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.bind(info[4])
    except OSError as err:
        raise ValueError(f"--host {args.host} --port {args.port}: cannot listen there: "
                         f"{err.strerror or err}") from err
    serve(args.model, host=args.host, port=args.port, share=False)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample clips from a model directory; write one mp4 + gif per clip as each batch finishes, and a grid."""
    import numpy as np

    from .files import check_writable_dir
    from .data import Video
    from .pipeline import VideoPipeline

    out = check_writable_dir(args.out)  # before any work
    _check_count(args.num, "--num")
    _check_count(args.batch, "--batch")
    sampling = _sampling(args)
    seed = sampling.pop("seed")
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                         trust_pickle=args.trust_pickle)
    tiles, done = [], 0  # the grid shows the first GRID_CLIPS clips; the rest stream to disk only
    for k, (_, start, n) in enumerate(_batches(args.num, args.batch)):
        video = pipe(n, num_frames=args.frames, seed=(seed + k) % 2**64, **sampling)  # batch k: seed + k
        for i in range(n):
            for ext in ("mp4", "gif"):
                video[i].save(out / f"sample_{start + i:03d}.{ext}")
        room = GRID_CLIPS - sum(len(t) for t in tiles)
        if room > 0:
            tiles.append(video.numpy()[:room])
        done += n
    grid = Video(np.concatenate(tiles), fps=video.fps)
    grid.save(out / "grid.mp4")
    grid.save(out / "grid.gif")
    print(f"wrote {done} samples (mp4 + gif) and grid.mp4 / grid.gif "
          f"({'all' if done <= GRID_CLIPS else f'the first {GRID_CLIPS}'}) to {out}")
    return 0


GRID_CLIPS = 64  # clips tiled into grid.mp4 / grid.gif


def _batches(total: int, size: int, per: Optional[int] = None):
    """(group, start in the group, n) of each batch of `size` clips out of `total` (in groups of `per`, e.g. per prompt), saying on
    stderr which batch runs and, from the time the earlier ones took, about how long the rest will take."""
    import time

    per = per or total
    spans = [(g + s, min(size, per - s)) for g in range(0, total, per) for s in range(0, per, size)]
    begun = time.perf_counter()
    for k, (start, n) in enumerate(spans):
        if len(spans) > 1:
            left = ""
            if k:
                rest = (time.perf_counter() - begun) / start * (total - start)
                left = f", about {rest / 60:.1f} min left" if rest >= 60 else f", about {rest:.0f} s left"
            which = f"clips {start}-{start + n - 1}" if n > 1 else f"clip {start}"
            print(f"batch {k + 1} of {len(spans)}: {which}{left}", file=sys.stderr)
        yield start // per, start % per, n


def _check_count(value: int, flag: str, low: int = 1) -> None:
    """A count flag must be >= low."""
    if value < low:
        raise ValueError(f"{flag} must be >= {low}, got {value}")


def cmd_frames(args: argparse.Namespace) -> int:
    """predict / interpolate / animate: continue a video, fill between two images, or animate one image."""
    from .pipeline import VideoPipeline

    from .files import check_output_file

    out = check_output_file(args.out, (".mp4", ".gif"))  # before any work
    for name in ("video", "first", "last", "image"):
        path = getattr(args, name, None)
        if path is not None:
            _check_input(path, f"--{name}", folder_ok=name == "video")  # a video may be a folder of frames
    _check_count(args.draws, "--draws")
    if getattr(args, "context", None) is not None:
        _check_count(args.context, "--context")
    sampling = _sampling(args)
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                         trust_pickle=args.trust_pickle)
    given = {"predict": lambda: {"context": args.video, "context_frames": args.context},
             "interpolate": lambda: {"first_frame": args.first, "last_frame": args.last},
             "animate": lambda: {"first_frame": args.image}}[args.command]()
    video = pipe(num_frames=args.frames, draws=args.draws, **given, **sampling)
    video.save(out)
    print(f"wrote {video.numpy().shape[1]} frames to {out}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    """Re-generate a video under a new prompt / image / audio, keeping its layout (SDEdit)."""
    from .pipeline import VideoPipeline

    from .files import check_output_file

    out = check_output_file(args.out, (".mp4", ".gif"))  # before any work
    _check_input(args.video, "--video", folder_ok=True)
    sampling = _sampling(args)
    for key in ("overlap", "long_mode"):
        sampling.pop(key)
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                         trust_pickle=args.trust_pickle)
    video = pipe.edit(args.video, strength=args.strength, **sampling)
    video.save(out)
    print(f"wrote {video.numpy().shape[1]} edited frames to {out}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    """Generate a captioned data set (one mp4 + sidecar .txt per clip, and captions.jsonl) from a prompt list."""
    from .files import atomic_write, check_writable_dir
    from .pipeline import VideoPipeline

    prompts_file = _check_input(args.prompts, "--prompts")
    try:
        text = prompts_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--prompts: {prompts_file} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
                         f"offset {err.start}); save it as UTF-8") from err
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"--prompts: {prompts_file} has no prompt (one per line)")
    _check_count(args.per_prompt, "--per-prompt")
    _check_count(args.batch, "--batch")
    out = check_writable_dir(args.out)  # before any work
    sampling = _sampling(args)
    if sampling.pop("prompt", None) is not None:
        raise ValueError("augment reads its prompts from --prompts; drop --prompt")
    seed = sampling.pop("seed")
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, precision=args.precision,
                                         trust_pickle=args.trust_pickle)
    rows = []
    for p_index, start, n in _batches(len(prompts) * args.per_prompt, args.batch, per=args.per_prompt):
        prompt, k = prompts[p_index], start // args.batch  # batch k of prompt p draws with seed + p + k * prompts
        video = pipe(n, num_frames=args.frames, prompt=prompt, seed=(seed + p_index + k * len(prompts)) % 2**64,
                     **sampling)
        for i in range(n):
            name = f"clip_{p_index:04d}_{start + i:03d}"
            video[i].save(out / f"{name}.mp4")
            atomic_write(out / f"{name}.txt", lambda tmp: tmp.write_text(prompt + "\n"), durable=False)
            rows.append({"path": f"{name}.mp4", "caption": prompt})
    index = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(out / "captions.jsonl", lambda tmp: tmp.write_text(index))
    print(f"wrote {len(rows)} captioned clips for {len(prompts)} prompts to {out}")
    return 0


def _check_input(path: str, flag: str, folder_ok: bool = False) -> Path:
    """An input path must exist and be a regular file (or, with `folder_ok`, a folder): the message says which."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{flag}: {path} does not exist")
    if path.is_dir() and not folder_ok:
        raise ValueError(f"{flag}: {path} is a directory; give a file")
    if not path.is_dir() and not path.is_file():
        raise ValueError(f"{flag}: {path} is not a regular file (a pipe or device?)")
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    """Score a model on a task against real clips; write report.json, report.md and plots."""
    import time

    import torch

    from . import __version__
    from .evaluation.evaluate import build_scorers, evaluate
    from .evaluation.protocol import EvalProtocol, data_spec, real_clips
    from .evaluation.report import write_report
    from .pipeline import VideoPipeline

    start = time.perf_counter()
    _check_sampler(args)
    flow = None
    if args.flow is not None:
        from .models.model_dir import load_flow_net

        flow = load_flow_net(args.flow)
    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, precision=args.precision)
    kind, root = ("moving-digits", None) if args.data == "moving-digits" else (args.kind, args.data)
    spec = data_spec(kind, size=pipe.size, num_frames=pipe.num_frames, num=args.num, seed=args.data_seed, root=root,
                     audio="audio" in args.cond, audio_rate=pipe.audio_rate, fps=pipe.fps)
    protocol = EvalProtocol(model=str(args.model), data=spec, task=args.task, num_clips=args.num, draws=args.draws,
                            context_frames=args.context, conditions=tuple(args.cond), guidance=args.guidance,
                            sampler=args.sampler, steps=tuple(args.steps), spacing=args.spacing, eta=args.eta,
                            cache_interval=args.cache_interval, seed=args.seed, batch_size=args.batch, count_frames=args.count_frames,
                            precision=pipe.precision)
    scorers = build_scorers(kind, args.i3d, args.trust_pickle, flow=flow, lpips_path=args.lpips)
    real = real_clips(spec, args.num)
    other = real_clips({**spec, "seed": spec["seed"] + 1}, args.num) if kind == "moving-digits" else None
    report, clips = evaluate(_eval_sampler(pipe, protocol), protocol, scorers, real, other)
    report["environment"] = {"kinema": __version__, "torch": torch.__version__, "device": str(pipe.device),
                             "threads": torch.get_num_threads(), "flow_model": args.flow,
                             "seconds_total": round(time.perf_counter() - start, 1)}
    write_report(report, args.out, real["video"], clips)
    for row in report["results"]:
        figures = {"FD-digits": row.get("fd_digits"), "FVD": row["fvd"],
                   "PSNR dB": row.get("frame_metrics", {}).get("mean_over_draws", {}).get("psnr")}
        text = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
                         if v is not None)
        print(f"{row['steps']} steps: {text}  ({row['seconds']['sampling']} s sampling)")
    print(f"report: {Path(args.out) / 'report.md'}  ({report['environment']['seconds_total']} s)")
    return 0


def _eval_sampler(pipe, protocol):
    """The sampling function of `kinema eval`: a batch of real clips -> the task's given frames and conditions."""
    from .pipeline import task_inputs

    k, scale = protocol.context_frames, protocol.guidance
    options = {"eta": protocol.eta} if protocol.eta is not None else {}

    def sample(batch: dict, steps: int, seed: int):
        video = batch["video"]  # (B, C, T, H, W)
        given = task_inputs(protocol.task, video, k)  # the task's given frames of each real clip, and T
        conds = {}
        if "text" in protocol.conditions:
            conds.update(prompt=list(batch["caption"]), guidance=scale)
        if "image" in protocol.conditions:
            conds.update(image=video[:, :, 0], image_guidance=scale)
        if "audio" in protocol.conditions:
            conds.update(audio=batch["audio"].numpy(), audio_guidance=scale)
        return pipe(len(video), steps=steps, sampler=protocol.sampler, seed=seed,
                    spacing=protocol.spacing, cache_interval=protocol.cache_interval, progress=False, **given, **conds,
                    **options).torch()

    return sample


def _data_config(args: argparse.Namespace):
    """The DataConfig of a `kinema data` command: --config's data section, then --set, --kind and DIR."""
    from .config import DataConfig, from_dict, read_config

    overrides = dict(_parse_override(s) for s in args.set)
    if any(not key.startswith("data.") for key in overrides):
        raise ValueError(f"kinema data: --set only takes data.* keys, got {sorted(overrides)}")
    section = dict(read_config(args.config, overrides).get("data") or {})
    section.update(root=str(args.dir), kind=args.kind or section.get("kind", "folder"))
    for name in ("split_file", "annotations"):
        if getattr(args, name):
            section[name] = getattr(args, name)
    return from_dict(DataConfig, section, prefix="data.")


def cmd_data(args: argparse.Namespace) -> int:
    """inspect: report a video collection and write a preview sheet; cache: decode every clip once to a shard."""
    from .data import build_cache, build_dataset, dataset_options, preview_grid, summarize, write_image
    from .data.cache import check_cache_target
    from .data.video_datasets import MAX_WARNED

    dc = _data_config(args)
    if dc.kind not in ("folder", "ucf101", "kinetics400"):
        raise ValueError(f"kinema data: --kind must be folder, ucf101 or kinetics400, got {dc.kind!r}")
    if not Path(args.dir).is_dir():
        raise FileNotFoundError(f"kinema data: no such directory: {args.dir}")
    if args.action == "cache":
        check_cache_target(Path(args.out), args.overwrite)  # before decoding anything
    dataset = build_dataset(dc.kind, **dataset_options(dc))
    if args.action == "cache":
        index = build_cache(dataset, args.out, overwrite=args.overwrite)
        print(f"cached {index['count']} clips of {index['clip_shape']} (uint8) to {args.out}; "
              f"skipped {len(index['bad_files'])} bad files")
        return 0
    report = summarize(dataset)
    write_image(args.preview, preview_grid(dataset))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['videos']} readable videos ({report['clips']} clips), {report['bad']} bad, "
          f"{report['missing']} listed but missing")
    print(f"duration: {report['seconds_total']:.1f} s in total, {report['seconds_min']:.2f}-"
          f"{report['seconds_max']:.2f} s each; {report['with_audio']} with audio")
    print(f"resolutions: {report['resolutions']}")
    print(f"fps: {report['fps']}")
    print(f"captions: {report['captions']} of {report['videos']}; labels: {report['labels']} classes")
    bad, shown = list(report["bad_files"].items()), MAX_WARNED  # as many as were warned about one by one
    for path, reason in bad[:shown]:
        print(f"bad: {path}: {reason}")
    if len(bad) > shown:
        print(f"bad: ... and {len(bad) - shown} more" + (f" (all listed in {args.json})" if args.json else
                                                              " (--json FILE lists them all)"))
    print(f"preview: {args.preview}")
    return 0


def _sampling(args: argparse.Namespace) -> dict:
    """The pipeline keywords shared by every generating command (sampler, steps, seed, conditions, guidance)."""
    _check_sampler(args)
    for name in ("ref_image", "audio"):
        path = getattr(args, name, None)
        if path is not None:
            _check_input(path, f"--{name.replace('_', '-')}")
    _check_seed(args.seed)
    for flag in ("guidance", "image_guidance", "audio_guidance", "eta"):
        value = getattr(args, flag)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number, got {value}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    options = {"eta": args.eta} if args.eta is not None else {}
    conds = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, image=args.ref_image, audio=args.audio,
                 guidance=args.guidance, image_guidance=args.image_guidance, audio_guidance=args.audio_guidance)
    return dict(steps=args.steps, sampler=args.sampler, seed=args.seed, spacing=args.spacing,
                overlap=args.overlap, long_mode=args.long_mode, cache_interval=args.cache_interval, **conds, **options)


def _check_sampler(args: argparse.Namespace) -> None:
    """--sampler must name a sampler, and --eta is for the samplers that take it."""
    from .diffusion import SAMPLERS

    if args.sampler not in SAMPLERS:
        raise ValueError(f"--sampler {args.sampler!r} is unknown; choose one of {sorted(SAMPLERS)}")
    if args.eta is not None and args.sampler not in ("ddim", "dpmpp_2m_sde"):
        raise ValueError(f"--eta applies to ddim and dpmpp_2m_sde, not {args.sampler!r}")


def _check_seed(seed: int) -> None:
    """--seed must fit a random generator's seed: 0 .. 2**64 - 1."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2**64 - 1], got {seed}")


def _add_sampling_args(p: argparse.ArgumentParser, image_flags: tuple[str, ...] = ("--image", "--ref-image")) -> None:
    p.add_argument("--model", required=True, help="model directory or training run directory")
    p.add_argument("--prompt", help="text condition (a text-conditioned model)")
    p.add_argument("--negative-prompt", help="text to steer away from (replaces the unconditional branch)")
    p.add_argument("--guidance", type=float, default=1.0, help="text guidance scale (default 1 = none)")
    p.add_argument(*image_flags, dest="ref_image", help="reference image (a model with an image encoder)")
    p.add_argument("--image-guidance", type=float, default=1.0, help="reference-image guidance scale")
    p.add_argument("--audio", help="sound track: an audio or video file (a model with an audio encoder)")
    p.add_argument("--audio-guidance", type=float, default=1.0, help="audio guidance scale")
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


# ---- parsing ----


def _parse_override(text: str) -> tuple[str, object]:
    """`section.key=value` with the value parsed as YAML data (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as err:
        from .config import yaml_error

        raise ValueError(f"--set {text!r}: the value is not valid YAML: {yaml_error(err)}") from err
    if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
        return key, value  # YAML 1.1 reads no / off / yes / on as booleans; keep the word (e.g. mixed_precision=no)
    if isinstance(parsed, str):
        try:
            return key, float(parsed)  # YAML 1.1 wants a dot in floats: 1e-3 would stay a string
        except ValueError:
            pass
    return key, parsed


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
    p.add_argument("--steps", type=int, default=15, help="sampler steps (default 15)")
    p.add_argument("--sampler", default="dpmpp_2m", help="sampler name (default dpmpp_2m)")
    p.add_argument("--guidance", type=float, default=3.0, help="text guidance scale (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="a web page to play with a model (needs kinema[ui]: gradio)")
    p.add_argument("--model", default="moving-digits", help="model directory or bundled name (default moving-digits)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("sample", help="generate clips from a trained model")
    _add_sampling_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, default=4, help="clips to generate (default 4), made --batch at a time")
    p.add_argument("--batch", type=int, default=8,
                   help="clips per sampler call (default 8); any --num streams to disk in batches of this size")
    p.add_argument("--frames", type=int, help="frames per clip, any length (default: the training window)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("edit", help="re-generate a video under new conditions, keeping its layout (SDEdit)")
    _add_sampling_args(p)
    p.add_argument("--video", required=True, help="the source video file")
    p.add_argument("--strength", type=float, default=0.6, help="noise level in (0, 1]: low keeps the source")
    p.add_argument("--out", required=True, help="output .mp4 or .gif")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("augment", help="generate a captioned video folder from a list of prompts")
    _add_sampling_args(p)
    p.add_argument("--prompts", required=True, help="text file, one prompt per line")
    p.add_argument("--per-prompt", type=int, default=4, help="clips per prompt (default 4)")
    p.add_argument("--batch", type=int, default=8, help="clips per sampler call (default 8)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the training window)")
    p.add_argument("--out", required=True, help="output folder (mp4 + .txt captions + captions.jsonl)")
    p.set_defaults(func=cmd_augment)

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
    p.add_argument("--cond", nargs="+", default=[], choices=("text", "image", "audio"),
                   help="conditions each real clip lends: its caption, first frame, sound (a conditioned model)")
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
