"""Bad input through the `kinema` command line: each case's one-line message and exit code.

    python benchmarks/bad_inputs.py [--out benchmarks/results/bad_inputs]

Builds tiny model directories (a good one, and broken variants: a pickle, another format, foreign,
mismatched or truncated weights) and broken input files, runs every case as its own `kinema`
process and writes <out>.md and <out>.json: input, exit code, the last line of stderr, and whether
a traceback appeared. Expected: exit 2 for usage errors, 1 for runtime failures, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TINY = {"model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
        "data.size": 24, "data.num_frames": 4, "data.length": 64, "train.batch_size": 2,
        "train.sample_every": 0, "train.log_every": 1}


class Payload:
    """Unpickling this runs code: it writes `marker` (the proof that a loader executed it)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# ---- inputs ----


def build_inputs(root: Path) -> dict[str, Path]:
    """Write the model directories and files the cases use under `root`; return them by name."""
    import torch
    from safetensors.torch import save_file

    from kinema.config import load_config
    from kinema.models import SpaceTimeUNet
    from kinema.models.encoders import Conditioner, Tokenizer
    from kinema.models.model_dir import save_model_dir
    from kinema.training.checkpoint import save_checkpoint
    from kinema.models.model_dir import video_model_config

    root.mkdir(parents=True, exist_ok=True)
    config = load_config(None, {**TINY, "model.frame_conditioning": True, "model.cond_dim": 16,
                                "cond.text": "gru", "cond.audio": True, "data.audio": True, "cond.max_tokens": 8})
    torch.manual_seed(0)
    model = SpaceTimeUNet(config.model)
    tokenizer = Tokenizer.build(["digit 1 moving left", "digit 2 moving up"])
    conditioner = Conditioner(config.cond, config.model.cond_dim, in_channels=1, tokenizer=tokenizer)
    meta = video_model_config(config, fps=8.0)
    good = save_model_dir(root / "model", model, meta, extra={"conditioner": conditioner}, vocab=tokenizer.words)

    plain = load_config(None, TINY)
    plain_meta = video_model_config(plain)
    net = SpaceTimeUNet(plain.model)
    pickled = root / "pickled"
    save_model_dir(pickled, net, plain_meta)
    (pickled / "model.safetensors").unlink()
    torch.save(net.state_dict(), pickled / "model.pt")  # an honest pickle: refused without --trust-pickle
    evil = root / "evil"
    save_model_dir(evil, net, plain_meta)
    (evil / "model.safetensors").unlink()
    torch.save(Payload(root / "PWNED"), evil / "model.ckpt")  # unpickling it runs code

    future = save_model_dir(root / "future", net, plain_meta)
    raw = json.loads((future / "config.json").read_text())
    (future / "config.json").write_text(json.dumps({**raw, "kinema_version": "9.0.0", "format": 7}))
    foreign = save_model_dir(root / "foreign", net, plain_meta)
    raw = json.loads((foreign / "config.json").read_text())
    (foreign / "config.json").write_text(json.dumps({k: v for k, v in raw.items()
                                                     if k not in ("kinema_version", "format")}))
    misfit = save_model_dir(root / "misfit", net, plain_meta)
    raw = json.loads((misfit / "config.json").read_text())
    raw["model"]["channels"] = 16
    (misfit / "config.json").write_text(json.dumps(raw))
    cut = save_model_dir(root / "truncated", net, plain_meta)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    odd = save_model_dir(root / "odd-size", net, plain_meta)
    raw = json.loads((odd / "config.json").read_text())
    raw["data"]["size"] = 25
    (odd / "config.json").write_text(json.dumps(raw))
    save_file({"x": torch.zeros(1)}, str(root / "weights.safetensors"))

    _guard_inputs(root, plain_meta, net)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    (root / "typo.yaml").write_text("trian:\n  steps: 10\n")
    (root / "evil.yaml").write_text(f"train: !!python/object/apply:os.system ['touch {root / 'PWNED-yaml'}']\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "tabs.yaml").write_text("train:\n\tsteps: 3\n")
    (root / "tiny.yaml").write_text(yaml.safe_dump(_nested(TINY)))
    (root / "empty-run").mkdir(exist_ok=True)
    save_checkpoint(root / "old-run", 2, {"w": torch.zeros(1)})
    return {"root": root, "model": good, "pickled": pickled, "evil": evil, "future": future, "foreign": foreign,
            "misfit": misfit, "truncated": cut, "odd": odd}


def _guard_inputs(root: Path, meta: dict, net) -> None:
    """Inputs of the guards against data loss, exhaustion and silent garbage (issue 32)."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from kinema.data import write_video
    from kinema.models.model_dir import save_model_dir

    thesis = root / "thesis"
    thesis.mkdir(exist_ok=True)
    (thesis / "thesis.tex").write_text("\\documentclass{article} years of work\n")
    clips = root / "clips"
    clips.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    write_video(clips / "a.mp4", rng.integers(0, 255, (20, 24, 24, 3), dtype=np.uint8), fps=8)
    (clips / "captions.jsonl").write_text('{"path": "a.mp4", "caption": "noise"}\n{"path": "b.mp4", caption}\n')
    os.mkfifo(clips / "pipe.mp4")  # reading it would block for ever
    cache = root / "old-cache"  # a cache folder as `kinema data cache` writes it
    cache.mkdir(exist_ok=True)
    (cache / "clips.u8").write_bytes(bytes(4 * 16 * 16 * 3))
    (cache / "index.json").write_text(json.dumps({"version": 1, "count": 1, "clip_shape": [4, 16, 16, 3],
                                                  "items": [{"caption": None, "label": -1, "source": "a.mp4"}]}))
    state = net.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    broken = {"nan-weights": {**state, first: torch.full_like(state[first], float("nan"))},
              "int8-weights": {k: (v * 100).to(torch.int8) if v.is_floating_point() else v for k, v in state.items()}}
    for name, weights in broken.items():
        out = save_model_dir(root / name, net, meta)
        save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"))
    for name, key, value in (("fps-zero", "fps", 0), ("fps-word", "fps", "fast"), ("frames-negative", "num_frames", -4),
                             ("frames-text", "num_frames", "16")):
        out = save_model_dir(root / name, net, meta)
        raw = json.loads((out / "config.json").read_text())
        raw["data"][key] = value
        (out / "config.json").write_text(json.dumps(raw))
    (root / "latin1.txt").write_bytes("digit 1 moving left caf\xe9\n".encode("latin-1"))
    (root / "prompts-dir").mkdir(exist_ok=True)
    (root / "prompts.txt").write_text("digit 1 moving left\n")
    (root / "taken.mp4").mkdir(exist_ok=True)  # a folder where the output file belongs
    (root / "a-file").write_text("not a folder\n")
    Image.new("L", (12_500, 12_500)).save(root / "huge.png")  # 156 megapixels in ~150 kB


def user_files(root: Path) -> dict[str, str]:
    """sha256 of every regular file a user owns in the inputs (the thesis, the source clips, an old cache)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("thesis", "clips", "old-cache") for p in sorted((root / folder).rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders kinema left behind under `root` (hidden names with .tmp-)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if ".tmp-" in p.name)


def _nested(flat: dict) -> dict:
    out: dict = {}
    for dotted, value in flat.items():
        section, _, key = dotted.partition(".")
        out.setdefault(section, {})[key] = value
    return out


# ---- the cases: (what is wrong, argv with {root} / {model} placeholders, expected exit code, expected text) ----

LONG_PROMPT = " ".join(["digit 1 moving left"] * 6)
SAMPLE = ["sample", "--out", "{root}/out", "--num", "1", "--steps", "2"]
CASES = [
    ("mistyped config key (--set)", ["train", "--out", "{root}/r", "--set", "model.chanels=8"], 2,
     "did you mean 'channels'"),
    ("mistyped section in a YAML file", ["train", "--config", "{root}/typo.yaml", "--out", "{root}/r"], 2,
     "did you mean 'train'"),
    ("negative learning rate", ["train", "--out", "{root}/r", "--set", "train.lr=-1"], 2, "train.lr = -1"),
    ("wrong type", ["train", "--out", "{root}/r", "--set", "train.batch_size=two"], 2, "train.batch_size must be int"),
    ("unknown choice", ["train", "--out", "{root}/r", "--set", "diffusion.prediction=noise"], 2, "eps, v, x0"),
    ("H/W not divisible by the UNet's factor", ["train", "--out", "{root}/r", "--set", "data.size=30"], 2,
     "not divisible by 4"),
    ("--set without a value", ["train", "--out", "{root}/r", "--set", "model.channels"], 2, "section.key=value"),
    ("--set value that is not YAML", ["train", "--out", "{root}/r", "--set", "model.channel_mult=[1, 2"], 2,
     "not valid YAML"),
    ("missing config file", ["train", "--config", "{root}/nope.yaml", "--out", "{root}/r"], 2,
     "config file not found"),
    ("YAML that would run code (!!python tag)", ["train", "--config", "{root}/evil.yaml", "--out", "{root}/r"], 2,
     "not valid YAML data"),
    ("config file that is a list", ["train", "--config", "{root}/list.yaml", "--out", "{root}/r"], 2,
     "must be a mapping"),
    ("YAML with tab indentation", ["train", "--config", "{root}/tabs.yaml", "--out", "{root}/r"], 2,
     "not valid YAML"),
    ("--resume with no checkpoint", ["train", "--config", "{root}/tiny.yaml", "--out", "{root}/empty-run",
                                     "--resume"], 2, "no checkpoint"),
    ("fresh run into a directory holding checkpoints", ["train", "--config", "{root}/tiny.yaml", "--out",
                                                         "{root}/old-run"], 2, "already holds checkpoints"),
    ("diverging training (lr 1e6)", ["train", "--config", "{root}/tiny.yaml", "--out", "{root}/diverge", "--steps",
                                     "50", "--set", "train.lr=1e6", "--set", "train.grad_clip=0",
                                     "--set", "train.warmup_steps=1", "--set", "train.max_bad_steps=3",
                                     "--set", "train.checkpoint_every=1"], 1, "in a row had a NaN / Inf"),
    ("missing model directory", SAMPLE + ["--model", "{root}/no/such/dir"], 2, "not found"),
    ("a file where a model directory belongs", SAMPLE + ["--model", "{root}/weights.safetensors"], 2, "not found"),
    ("weights only as a pickle (.pt)", SAMPLE + ["--model", "{pickled}"], 2, "is a pickle"),
    ("code-running pickle with --trust-pickle", SAMPLE + ["--model", "{evil}", "--trust-pickle"], 2,
     "weights_only=True) rejected it"),
    ("model directory from another kinema version", SAMPLE + ["--model", "{future}"], 2, "model format 7"),
    ("directory not written by kinema", SAMPLE + ["--model", "{foreign}"], 2, "a kinema model directory?"),
    ("weights that do not fit config.json", SAMPLE + ["--model", "{misfit}"], 2, "do not fit"),
    ("truncated weights file", SAMPLE + ["--model", "{truncated}"], 2, "cannot read"),
    ("model size not divisible by the UNet's factor", SAMPLE + ["--model", "{odd}"], 2, "not a positive multiple"),
    ("unknown sampler", SAMPLE + ["--model", "{model}", "--sampler", "euler_magic"], 2, "euler_magic"),
    ("zero clips", ["sample", "--model", "{model}", "--out", "{root}/out", "--num", "0"], 2, "--num must be >= 1"),
    ("non-integer --steps", ["sample", "--model", "{model}", "--out", "{root}/out", "--steps", "ten"], 2,
     "invalid int value"),
    ("unknown command", ["trian", "--out", "x"], 2, "invalid choice"),
    ("unreadable image", ["animate", "--model", "{model}", "--image", "{root}/broken.png", "--out",
                          "{root}/a.mp4", "--steps", "2"], 2, "cannot read"),
    ("missing image", ["animate", "--model", "{model}", "--image", "{root}/none.png", "--out", "{root}/a.mp4"], 2,
     "does not exist"),
    ("unreadable audio", SAMPLE + ["--model", "{model}", "--audio", "{root}/broken.wav"], 2, "cannot read audio"),
    ("unreadable video", ["predict", "--model", "{model}", "--video", "{root}/broken.mp4", "--context", "2",
                          "--out", "{root}/p.mp4", "--steps", "2"], 2, "broken.mp4"),
    ("wrong output suffix", ["interpolate", "--model", "{model}", "--first", "{root}/broken.png", "--last",
                             "{root}/broken.png", "--out", "{root}/x.avi"], 2, "--out must end in .mp4 or .gif"),
    ("guidance without its condition", SAMPLE + ["--model", "{model}", "--guidance", "4"], 2, "no text was given"),
    ("prompt longer than the encoder takes", SAMPLE + ["--model", "{model}", "--prompt", LONG_PROMPT], 0,
     "only the first 8 are used"),
    # ---- never lose a user's files ----
    ("data cache into a folder holding a user's file", ["data", "cache", "{root}/clips", "--out", "{root}/thesis"], 2,
     "not a kinema cache"),
    ("data cache into its own source folder", ["data", "cache", "{root}/clips", "--out", "{root}/clips"], 2,
     "not a kinema cache"),
    ("data cache into the parent of the source", ["data", "cache", "{root}/clips", "--out", "{root}"], 2,
     "not a kinema cache"),
    ("data cache over a cache without --overwrite", ["data", "cache", "{root}/clips", "--out", "{root}/old-cache"], 2,
     "pass --overwrite"),
    ("data cache --overwrite of a user's folder", ["data", "cache", "{root}/clips", "--out", "{root}/thesis",
                                                   "--overwrite"], 2, "not a kinema cache"),
    ("data cache --out that is a file", ["data", "cache", "{root}/clips", "--out", "{root}/a-file"], 2,
     "a-file is a file; a cache is a folder"),
    # ---- one input must not exhaust the machine ----
    ("a 12,500 x 12,500 PNG to animate", ["animate", "--model", "{model}", "--image", "{root}/huge.png", "--out",
                                          "{root}/a.mp4", "--steps", "2"], 2, "156 megapixels"),
    ("100,000 clips in one sampler call", SAMPLE[:3] + ["--num", "100000", "--batch", "100000", "--steps", "2",
                                                        "--model", "{model}"], 2, "GiB of activations"),
    ("10^8 frames", SAMPLE + ["--model", "{model}", "--frames", "100000000"], 2, "GiB for the result"),
    ("training batch of 100,000", ["train", "--config", "{root}/tiny.yaml", "--out", "{root}/big-batch", "--set",
                                   "train.batch_size=100000"], 2, "train.batch_size=100000"),
    ("training at 8192 x 8192", ["train", "--config", "{root}/tiny.yaml", "--out", "{root}/big-size", "--set",
                                 "data.size=8192"], 2, "at 8192x8192 needs"),
    ("--draws 0", ["animate", "--model", "{model}", "--image", "{root}/huge.png", "--out", "{root}/a.mp4",
                   "--draws", "0"], 2, "--draws must be >= 1"),
    ("--steps 0", SAMPLE[:3] + ["--steps", "0", "--model", "{model}"], 2, "--steps must be >= 1"),
    ("--per-prompt 0", ["augment", "--model", "{model}", "--prompts", "{root}/prompts.txt", "--out", "{root}/aug",
                        "--per-prompt", "0"], 2, "--per-prompt must be >= 1"),
    # ---- no silent garbage ----
    ("guidance NaN", SAMPLE + ["--model", "{model}", "--prompt", "digit 1 moving left", "--guidance", "nan"], 2,
     "--guidance must be a finite number"),
    ("guidance -inf", SAMPLE + ["--model", "{model}", "--prompt", "digit 1 moving left", "--guidance=-inf"], 2,
     "--guidance must be a finite number"),
    ("audio guidance inf", SAMPLE + ["--model", "{model}", "--audio-guidance", "inf"], 2,
     "--audio-guidance must be a finite number"),
    ("NaN weights", SAMPLE + ["--model", "{root}/nan-weights"], 2, "NaN or infinite values"),
    ("int8 weights", SAMPLE + ["--model", "{root}/int8-weights"], 2, "torch.int8 tensors where floats belong"),
    ("a prompt of only unknown words", SAMPLE + ["--model", "{model}", "--prompt", "a cat on a skateboard"], 2,
     "no word this model knows"),
    ("a prompt with one unknown word", SAMPLE + ["--model", "{model}", "--prompt", "digit 1 moving sideways"], 0,
     "never saw 'sideways'"),
    ("--context 0", ["predict", "--model", "{model}", "--video", "{root}/clips/a.mp4", "--context", "0", "--out",
                     "{root}/p.mp4"], 2, "--context must be >= 1"),
    ("fps 0 in config.json", SAMPLE + ["--model", "{root}/fps-zero"], 2, "data.fps = 0"),
    ("fps 'fast' in config.json", SAMPLE + ["--model", "{root}/fps-word"], 2, "data.fps = 'fast'"),
    # ---- outputs checked before any work ----
    ("--out of sample is a file", ["sample", "--model", "{model}", "--out", "{root}/a-file", "--num", "1"], 2,
     "exists and is not a directory"),
    ("--out of predict is a folder", ["predict", "--model", "{model}", "--video", "{root}/clips/a.mp4", "--context",
                                      "2", "--out", "{root}/taken.mp4"], 2, "is a directory"),
    ("--out of predict in a folder that is a file", ["animate", "--model", "{model}", "--image", "{root}/huge.png",
                                                     "--out", "{root}/a-file/x.mp4"], 2, "a-file exists and is not a directory"),
    # ---- messages that name what is wrong ----
    ("--prompts is a directory", ["augment", "--model", "{model}", "--prompts", "{root}/prompts-dir", "--out",
                                  "{root}/aug"], 2, "prompts-dir is a directory"),
    ("--prompts not UTF-8", ["augment", "--model", "{model}", "--prompts", "{root}/latin1.txt", "--out", "{root}/aug"],
     2, "latin1.txt is not UTF-8"),
    ("--seed 2**70", SAMPLE + ["--model", "{model}", "--seed", str(2**70)], 2, "--seed must be in"),
    ("--host that is not this machine's", ["serve", "--model", "{model}", "--host", "1.2.3.4"], 2,
     "--host 1.2.3.4"),
    ("num_frames -4 in config.json", SAMPLE + ["--model", "{root}/frames-negative"], 2, "data.num_frames = -4"),
    ("num_frames '16' in config.json", SAMPLE + ["--model", "{root}/frames-text"], 2, "data.num_frames = '16'"),
    ("a path with two spaces", ["animate", "--model", "{model}", "--image", "{root}/two  spaces.png", "--out",
                                "{root}/a.mp4"], 2, "two  spaces.png does not exist"),
    ("a FIFO named pipe.mp4 in a data folder", ["data", "inspect", "{root}/clips", "--preview", "{root}/p.png"], 0,
     "a FIFO, not a regular file"),
    ("a broken line in captions.jsonl", ["data", "inspect", "{root}/clips", "--preview", "{root}/p.png"], 0,
     "captions.jsonl:2"),
]


def fill(argv: list[str], paths: dict[str, Path]) -> list[str]:
    """The argv with {name} placeholders replaced by the built paths."""
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]


def run_case(argv: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run `kinema argv` in a fresh process; return (exit code, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("KINEMA_TRACEBACK", None)
    out = subprocess.run([sys.executable, "-m", "kinema.cli", *argv], capture_output=True, text=True, env=env,
                         timeout=timeout)
    return out.returncode, out.stderr


def message(stderr: str) -> str:
    """The error or warning line of a run's stderr (progress bars dropped)."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    lines = [ln for ln in lines if ln.startswith(("kinema", "usage:")) or "error" in ln] or lines
    return next((ln for ln in reversed(lines) if "error" in ln or "warning" in ln), lines[-1] if lines else "")


# ---- main ----


def main() -> None:
    """Run every case and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/bad_inputs", help="output path without suffix")
    args = parser.parse_args()
    rows, start = [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_inputs(Path(tmp))
        owned = user_files(Path(tmp))
        for what, argv, want_code, want_text in CASES:
            code, stderr = run_case(fill(argv, paths))
            line = message(stderr).replace(tmp, "$TMP")
            ok = code == want_code and want_text in stderr and "Traceback" not in stderr
            rows.append({"input": what, "argv": " ".join(argv), "exit": code, "message": line,
                         "traceback": "Traceback" in stderr, "as_expected": ok})
            print(f"{'ok ' if ok else 'BAD'} {code} {what}: {line}", flush=True)
        ran_code = [p.name for p in Path(tmp).glob("PWNED*")]
        kept = user_files(Path(tmp)) == owned
        left = leftovers(Path(tmp))
    summary = {"cases": len(rows), "as_expected": sum(r["as_expected"] for r in rows),
               "tracebacks": sum(r["traceback"] for r in rows), "payload_ran": ran_code,
               "user_files_kept": kept, "files_owned": len(owned), "temporary_files_left": left,
               "seconds": round(time.time() - start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    table = ["| # | input | exit | message |", "| --- | --- | --- | --- |"]
    table += [f"| {i} | {r['input']} | {r['exit']} | `{r['message'].replace('|', '/')}` |"
              for i, r in enumerate(rows, 1)]
    md = (f"# Bad input through the CLI\n\n`python benchmarks/bad_inputs.py`: {summary['cases']} cases, "
          f"{summary['as_expected']} with the expected exit code and message, {summary['tracebacks']} tracebacks; "
          f"the code-running pickle and YAML payloads ran: {ran_code or 'no'}; the user's {len(owned)} files "
          f"(a thesis, source clips, an old cache) kept byte for byte: {'yes' if kept else 'NO'}; temporary files "
          f"left: {left or 'none'}.\n"
          "Exit 2 = usage error, 1 = runtime failure, 0 = done (with a warning).\n\n" + "\n".join(table) + "\n")
    out.with_suffix(".md").write_text(md)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
