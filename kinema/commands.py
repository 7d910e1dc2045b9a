"""What each `kinema` command does: check its arguments (and every output) before any work, call the
library, print one summary line. `cli.py` parses the command line and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

from .config import parse_override

def cmd_train(args: argparse.Namespace) -> int:
    """Train a model from a YAML config into a run directory."""
    from .training import Trainer

    return _train(args, Trainer)


def cmd_train_ae(args: argparse.Namespace) -> int:
    """Train a video autoencoder from a YAML config (its autoencoder, ae_loss, data and train sections)."""
    from .training.autoencoder_trainer import AutoencoderTrainer

    return _train(args, AutoencoderTrainer)


def _train(args: argparse.Namespace, trainer_class) -> int:
    """`trainer_class` on the config of --config (or, resuming, the run's own) with --set and --steps."""
    from .config import load_config

    overrides = dict(parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    path = args.config
    if path is None and args.resume and (Path(args.out) / "config.json").is_file():
        path = Path(args.out) / "config.json"  # resuming continues with the run's own settings
    config = load_config(path, overrides)  # an autoencoder run's clips have the autoencoder's channels
    trainer = trainer_class(config, args.out, resume=args.resume)
    trainer.fit()
    print(f"model: {Path(args.out) / 'model'}  metrics: {Path(args.out) / 'metrics.jsonl'}  "
          f"plot: {Path(args.out) / 'loss.png'}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a trained model on the data of --config: every weight, or LoRA adapters on a frozen base."""
    from .config import COND_TRAINING_KEYS, Config, from_dict, read_config
    from .models.model_dir import read_model_config, resolve_model_dir
    from .training import Trainer

    overrides = dict(parse_override(s) for s in args.set)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.lora_rank is not None:
        overrides["finetune.lora_rank"] = args.lora_rank
    run_config = Path(args.out) / "config.json"
    if args.resume and args.model is None and args.config is None and run_config.is_file():
        section = read_config(run_config, overrides)  # resuming continues with the run's own settings
    else:
        section = read_config(args.config, overrides)
        model = args.model or (section.get("finetune") or {}).get("init_from")
        if model is None:
            raise ValueError("kinema finetune needs --model (the base model) or finetune.init_from in --config, "
                             "or --resume on a run directory")
        base = read_model_config(resolve_model_dir(model))
        data = section.setdefault("data", {})
        for key in ("size", "num_frames"):  # the base's frame size and window, unless the config says otherwise
            data.setdefault(key, base["data"][key])
        ours = {k: section.get(k) or {} for k in ("model", "diffusion")}
        differ = [f"{k}.{key}" for k in ours for key, v in ours[k].items() if base[k].get(key, v) != v]
        if differ:
            raise ValueError(f"--config sets {', '.join(differ)} unlike the base model {model}; a fine-tune keeps "
                             "the base's network and noise process (leave those keys out)")
        section.update(model=base["model"], diffusion=base["diffusion"])
        if "cond" in base:  # the base's conditioner; the config may change how often conditions are dropped
            section["cond"] = {**base["cond"], **{k: v for k, v in (section.get("cond") or {}).items()
                                                  if f"cond.{k}" in COND_TRAINING_KEYS}}
        section.setdefault("finetune", {})["init_from"] = str(model)
    config = from_dict(Config, section)
    trainer = Trainer(config, args.out, resume=args.resume)
    trainer.fit()
    made = "adapter" if config.finetune.lora_rank else "model"
    print(f"{made}: {Path(args.out) / made}  metrics: {Path(args.out) / 'metrics.jsonl'}  "
          f"plot: {Path(args.out) / 'loss.png'}")
    return 0


def cmd_train_flow(args: argparse.Namespace) -> int:
    """Train the optical-flow network without labels on consecutive frames; write a flow model directory."""
    from .config import DataConfig, FlowConfig, FlowTrainConfig, from_dict, load_config, to_dict
    from .training.flow_training import train_flow

    sections: dict[str, dict] = {"data": {}, "flow": {}, "flow_train": {}}
    for dotted, value in (parse_override(s) for s in args.set):
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
                       frame_guidance=args.frame_guidance, seed=args.seed)
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
    serve(load_pipeline(args), host=args.host, port=args.port, share=False)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Sample clips from a model directory; write one mp4 + gif per clip as each batch finishes, and a grid."""
    import numpy as np

    from .files import check_writable_dir
    from .data import Video
    from .pipeline import MAX_SEED

    out = check_writable_dir(args.out)  # before any work
    _check_count(args.num, "--num")
    _check_count(args.batch, "--batch")
    sampling = _sampling(args)
    seed = sampling.pop("seed")
    pipe = load_pipeline(args, trust_pickle=args.trust_pickle)
    tiles, done = [], 0  # the grid shows the first GRID_CLIPS clips; the rest stream to disk only
    for k, (_, start, n) in enumerate(_batches(args.num, args.batch)):
        video = pipe(n, num_frames=args.frames, seed=(seed + k) % (MAX_SEED + 1), **sampling)  # batch k: seed + k
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
    pipe = load_pipeline(args, trust_pickle=args.trust_pickle)
    given = {"predict": lambda: {"context": args.video, "context_frames": args.context},
             "interpolate": lambda: {"first_frame": args.first, "last_frame": args.last},
             "animate": lambda: {"first_frame": args.image}}[args.command]()
    video = pipe(num_frames=args.frames, draws=args.draws, **given, **sampling)
    video.save(out)
    print(f"wrote {video.numpy().shape[1]} frames to {out}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    """Re-generate a video under a new prompt / image / audio, keeping its layout (SDEdit)."""
    from .files import check_output_file

    out = check_output_file(args.out, (".mp4", ".gif"))  # before any work
    _check_input(args.video, "--video", folder_ok=True)
    sampling = _sampling(args)
    if sampling["frame_guidance"] != 1:
        raise ValueError(f"--frame-guidance {sampling['frame_guidance']}: an edit has no given frames to guide towards")
    for key in ("overlap", "long_mode", "frame_reference", "frame_guidance"):  # an edit keeps every frame's layout;
        sampling.pop(key)  # none is given
    pipe = load_pipeline(args, trust_pickle=args.trust_pickle)
    video = pipe.edit(args.video, strength=args.strength, **sampling)
    video.save(out)
    print(f"wrote {video.numpy().shape[1]} edited frames to {out}")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    """Generate a captioned data set (one mp4 + sidecar .txt per clip, and captions.jsonl) from a prompt list."""
    from .files import atomic_write, check_writable_dir
    from .pipeline import MAX_SEED

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
    pipe = load_pipeline(args, trust_pickle=args.trust_pickle)
    rows = []
    for p_index, start, n in _batches(len(prompts) * args.per_prompt, args.batch, per=args.per_prompt):
        prompt, k = prompts[p_index], start // args.batch  # batch k of prompt p draws with seed + p + k * prompts
        video = pipe(n, num_frames=args.frames, prompt=prompt,
                     seed=(seed + p_index + k * len(prompts)) % (MAX_SEED + 1), **sampling)
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

    start = time.perf_counter()
    _check_sampler(args)
    flow = None
    if args.flow is not None:
        from .models.model_dir import load_flow_net

        flow = load_flow_net(args.flow)
    pipe = load_pipeline(args)
    kind, root = ("moving-digits", None) if args.data == "moving-digits" else (args.kind, args.data)
    if "trajectory" in args.cond and kind != "moving-digits":
        raise ValueError("--cond trajectory: the real clips' tracks come from moving-digits data only")
    spec = data_spec(kind, size=pipe.size, num_frames=pipe.num_frames, num=args.num, seed=args.data_seed, root=root,
                     audio="audio" in args.cond, audio_rate=pipe.audio_rate, fps=pipe.fps)
    protocol = EvalProtocol(model=str(args.model), data=spec, task=args.task, num_clips=args.num, draws=args.draws,
                            context_frames=args.context, conditions=tuple(args.cond), guidance=args.guidance,
                            sampler=args.sampler, steps=tuple(args.steps), spacing=args.spacing, eta=args.eta,
                            cache_interval=args.cache_interval, seed=args.seed, batch_size=args.batch,
                            count_frames=args.count_frames, precision=pipe.precision,
                            frame_reference=args.frame_reference and pipe.takes("image") and "image" not in args.cond,
                            frame_guidance=args.frame_guidance)
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
        if "trajectory" in protocol.conditions:
            conds.update(trajectory=batch["trajectory"], trajectory_guidance=scale)
        return pipe(len(video), steps=steps, sampler=protocol.sampler, seed=seed, spacing=protocol.spacing,
                    cache_interval=protocol.cache_interval, progress=False, frame_reference=protocol.frame_reference,
                    frame_guidance=protocol.frame_guidance, **given, **conds, **options).torch()

    return sample


def _data_config(args: argparse.Namespace):
    """The DataConfig of a `kinema data` command: --config's data section, then --set, --kind and DIR."""
    from .config import DataConfig, from_dict, read_config

    overrides = dict(parse_override(s) for s in args.set)
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
    encode = tag = None
    if args.action == "cache":
        check_cache_target(Path(args.out), args.overwrite)  # before decoding anything
        if args.autoencoder:
            encode, tag = _cache_encoder(args.autoencoder, dc)
    dataset = build_dataset(dc.kind, **dataset_options(dc))
    if args.action == "cache":
        index = build_cache(dataset, args.out, overwrite=args.overwrite, encode=encode, latent_tag=tag)
        latents = f", latents {index['latents']['shape']} (float32)" if "latents" in index else ""
        print(f"cached {index['count']} clips of {index['clip_shape']} (uint8){latents} to {args.out}; "
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


def _cache_encoder(name: str, data) -> tuple:
    """`kinema data cache --autoencoder`: the autoencoder's float32 encode and the tag the cache records."""
    import torch

    from .models.model_dir import load_autoencoder, weights_sha256

    ae = load_autoencoder(name).requires_grad_(False)
    if ae.config.in_channels != 3:
        raise ValueError(f"--autoencoder {name} takes {ae.config.in_channels}-channel clips; a cache holds RGB clips")
    if hasattr(ae, "latent_shape"):  # kinema's own: a ValueError naming what does not fit, before any decoding
        ae.latent_shape(3, data.num_frames, data.size, data.size)

    def encode(clips: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ae.encode(clips.float())

    return encode, {"autoencoder": str(name), "sha256": weights_sha256(ae)}


def load_pipeline(args: argparse.Namespace, **options):
    """VideoPipeline.from_pretrained(--model) with every --adapter at its --adapter-scale."""
    from .pipeline import VideoPipeline

    paths, scales = args.adapter, args.adapter_scale or [1.0]
    if len(scales) not in (1, len(paths)) or (scales != [1.0] and not paths):
        raise ValueError(f"--adapter-scale: give one value, or one per --adapter ({len(paths)}), got {len(scales)}")
    for path in paths:
        _check_input(path, "--adapter", folder_ok=True)
    pipe = VideoPipeline.from_pretrained(args.model, device=getattr(args, "device", None),
                                         precision=getattr(args, "precision", "auto"), **options)
    for i, path in enumerate(paths):
        pipe.load_adapter(path, scale=scales[min(i, len(scales) - 1)])
    return pipe


def _sampling(args: argparse.Namespace) -> dict:
    """The pipeline keywords shared by every generating command (sampler, steps, seed, conditions, guidance)."""
    _check_sampler(args)
    for name in ("ref_image", "audio"):
        path = getattr(args, name, None)
        if path is not None:
            _check_input(path, f"--{name.replace('_', '-')}")
    _check_seed(args.seed)
    for flag in ("guidance", "image_guidance", "audio_guidance", "trajectory_guidance", "frame_guidance", "eta"):
        value = getattr(args, flag)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number, got {value}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    options = {"eta": args.eta} if args.eta is not None else {}
    conds = dict(prompt=args.prompt, negative_prompt=args.negative_prompt, image=args.ref_image, audio=args.audio,
                 trajectory=args.trajectory, guidance=args.guidance, image_guidance=args.image_guidance,
                 audio_guidance=args.audio_guidance, trajectory_guidance=args.trajectory_guidance)
    return dict(steps=args.steps, sampler=args.sampler, seed=args.seed, spacing=args.spacing, overlap=args.overlap,
                long_mode=args.long_mode, cache_interval=args.cache_interval, frame_reference=args.frame_reference,
                frame_guidance=args.frame_guidance, **conds, **options)


def _check_sampler(args: argparse.Namespace) -> None:
    """--sampler must name a sampler, and --eta is for the samplers that take it."""
    from .diffusion import SAMPLERS

    if args.sampler not in SAMPLERS:
        raise ValueError(f"--sampler {args.sampler!r} is unknown; choose one of {sorted(SAMPLERS)}")
    if args.eta is not None and args.sampler not in ("ddim", "dpmpp_2m_sde"):
        raise ValueError(f"--eta applies to ddim and dpmpp_2m_sde, not {args.sampler!r}")


def _check_seed(seed: int) -> None:
    """--seed must fit a random generator's seed: 0 .. 2**64 - 1."""
    from .pipeline import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"--seed must be in [0, 2**64 - 1], got {seed}")
