"""What a LoRA fine-tune taught a model, what it kept, and what it cost.

    python benchmarks/finetune.py --base moving-digits --adapter runs/inverted/adapter --out benchmarks/results/finetune
    python benchmarks/finetune.py --base moving-digits --tuned runs/inverted-full --cost-steps 0 --out ...
    python benchmarks/finetune.py --new zigzag --adapter runs/zigzag/adapter --out benchmarks/results/finetune-zigzag

- New prompts (`--new inverted`): `--num` held-out captions (test-split digits, data seed 321) with
  ", inverted" appended, sampled from base + adapter: a clip is right when most of its frames are
  light (the look the new word names) and, read inverted, it shows the prompt's digit.
- New prompts (`--new zigzag`): `--num` held-out captions "digit D zigzagging left / right": a clip is
  right when it shows the prompt's digit, its first step goes the caption's way across, and its
  centre turns up / down at least ZIGZAG_TURNS times (a zigzag of 16 frames turns 7 times, a
  bouncing digit at most ~3); the real clips of both kinds are scored too, as the scorer's check.
- Old prompts: the same captions without the new word, from the base alone and from base + adapter:
  digit accuracy and first-step direction (the evaluation's own scorers, kinema.evaluation.alignment).
- Cost: the adapter's file size against the model's; a LoRA step's and a full fine-tune step's time
  (median) and peak memory (max RSS of a process that runs only that arm) on the same batch.
Writes finetune.json and finetune.md (and a strip of clips, finetune.png) under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data import make_grid, write_video
from kinema.data.datasets import DIRECTIONS, MovingDigits, MovingDigitsConfig
from kinema.evaluation.alignment import DigitClassifier, centroid_track, direction_of
from kinema.models.model_dir import resolve_model_dir
from kinema.pipeline import VideoPipeline


ZIGZAG_TURNS = 5  # vertical turns (up <-> down steps of >= 1 px) that make a clip a zigzag


def prompts(num: int, size: int, frames: int, zigzag: float = 0.0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`num` held-out captions, their (digit, direction) labels and the real clips (N, T, H, W, 1) uint8."""
    data = MovingDigits(MovingDigitsConfig(size=size, num_frames=frames, max_digits=1, split="test", seed=321,
                                           length=num, zigzag=zigzag))
    items = [data[i] for i in range(num)]
    clips = np.stack([((it["video"] + 1) * 127.5).round().permute(1, 2, 3, 0).numpy() for it in items])
    return ([it["caption"] for it in items], np.stack([it["labels"][0].numpy() for it in items]),
            clips.astype(np.uint8))


def vertical_turns(track: np.ndarray) -> int:
    """How often a (T, 2) (y, x) track's vertical steps of >= 1 px change sign."""
    dy = np.diff(track[:, 0])
    dy = np.sign(dy[np.isfinite(dy) & (np.abs(dy) >= 1)])
    return int((dy[1:] != dy[:-1]).sum())


def score_zigzag(clips: np.ndarray, labels: np.ndarray, classifier: DigitClassifier) -> dict:
    """Share of clips that show the digit, go the caption's way across first, zigzag; and all three."""
    digit, across, zig = [], [], []
    for clip, (d, m) in zip(clips, labels):
        track = centroid_track(clip)
        digit.append(classifier.predict(clip) == d)
        steps = np.diff(track[:, 1])
        steps = steps[np.isfinite(steps)]
        want = 1 if DIRECTIONS[m].endswith("right") else -1 if DIRECTIONS[m].endswith("left") else 0
        across.append(len(steps) > 0 and want != 0 and np.sign(steps[0]) == want)
        zig.append(vertical_turns(track) >= ZIGZAG_TURNS)
    digit, across, zig = np.array(digit), np.array(across), np.array(zig)
    return {"digit": float(digit.mean()), "across": float(across.mean()), "zigzag": float(zig.mean()),
            "right": float((digit & across & zig).mean())}


def sample(pipe: VideoPipeline, captions: list[str], args) -> np.ndarray:
    """uint8 (N, T, H, W, C) clips, one per caption, in batches of 8 with seeds seed + batch index."""
    out = []
    for k, start in enumerate(range(0, len(captions), 8)):
        batch = captions[start:start + 8]
        out.append(pipe(len(batch), prompt=batch, guidance=args.guidance, sampler=args.sampler, steps=args.steps,
                        seed=args.seed + k, progress=False).numpy())
    return np.concatenate(out)


def score(clips: np.ndarray, labels: np.ndarray, classifier: DigitClassifier) -> dict:
    """Share of clips that are light (inverted), that show the digit (read inverted when light), that move right."""
    light = clips.reshape(len(clips), clips.shape[1], -1).mean(axis=2) / 255 > 0.5  # (N, T) light frames
    inverted = light.mean(axis=1) > 0.5
    digit, direction = [], []
    for clip, inv, (d, m) in zip(clips, inverted, labels):
        seen = 255 - clip if inv else clip  # a dark digit on light ground, read as the scorers expect
        digit.append(classifier.predict(seen) == d)
        direction.append(direction_of(centroid_track(seen)) == m)
    return {"inverted": float(inverted.mean()), "digit": float(np.mean(digit)), "direction": float(np.mean(direction)),
            "inverted_and_digit": float(np.mean(inverted & np.array(digit)))}


def step_cost(arm: str, base: str, steps: int) -> dict:
    """Median step seconds and peak RSS of `steps` steps of one fine-tune arm, in a process of its own."""
    code = f"""
import json, resource, statistics, tempfile, time
from kinema.config import Config, from_dict
from kinema.models.model_dir import read_model_config, resolve_model_dir
from kinema.training import Trainer
base = read_model_config(resolve_model_dir({base!r}))
section = {{"model": base["model"], "diffusion": base["diffusion"], "cond": base["cond"],
           "data": {{"kind": "moving-digits", "size": base["data"]["size"], "num_frames": base["data"]["num_frames"],
                    "max_digits": 1, "audio": True, "inverted": 0.5}},
           "train": {{"steps": {steps + 2}, "batch_size": 8, "sample_every": 0, "log_every": 1}},
           "finetune": {{"init_from": {base!r}, "lora_rank": {8 if arm == "lora" else 0}}}}}
with tempfile.TemporaryDirectory() as out:
    trainer = Trainer(from_dict(Config, section), out)
    batches, times = iter(trainer.loader), []
    for _ in range({steps + 2}):
        batch = next(batches)
        t0 = time.perf_counter()
        trainer.step([batch])
        times.append(time.perf_counter() - t0)
print(json.dumps({{"median_s": statistics.median(times[2:]),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="moving-digits")
    p.add_argument("--new", default="inverted", choices=("inverted", "zigzag"), help="what the fine-tune taught")
    p.add_argument("--adapter", help="a LoRA adapter directory trained on --base")
    p.add_argument("--tuned", help="instead: a fully fine-tuned model directory (its file size is not compared)")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=100)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cost-steps", type=int, default=8, help="steps timed per arm (0: skip the cost)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (args.adapter is None) == (args.tuned is None):
        p.error("give --adapter or --tuned")
    base = VideoPipeline.from_pretrained(args.base)
    tuned = VideoPipeline.from_pretrained(args.tuned or args.base)
    if args.adapter:
        tuned.load_adapter(args.adapter)
    captions, labels, real = prompts(args.num, base.size, base.num_frames)
    classifier = DigitClassifier()
    t0 = time.perf_counter()
    arm = "base + adapter" if args.adapter else "fine-tuned"
    names = (f"new prompts ({arm})", "old prompts, base", f"old prompts, {arm}")
    if args.new == "inverted":
        new = sample(tuned, [c + ", inverted" for c in captions], args)  # (N, T, H, W, C) uint8
        new_scores = score(new, labels, classifier)
    else:
        zig_captions, zig_labels, zig_real = prompts(args.num, base.size, base.num_frames, zigzag=1.0)
        new = sample(tuned, zig_captions, args)
        new_scores = score_zigzag(new, zig_labels, classifier)
        checks = {"real zigzag clips": score_zigzag(zig_real, zig_labels, classifier),
                  "real plain clips": score_zigzag(real, labels, classifier)}
    old_tuned = sample(tuned, captions, args)
    old_base = sample(base, captions, args)
    result = {names[0]: new_scores, names[1]: score(old_base, labels, classifier),
              names[2]: score(old_tuned, labels, classifier),
              "sampling_s": round(time.perf_counter() - t0, 1)}
    if args.new == "zigzag":
        result["scorer check"] = checks
    strip = np.concatenate([new[:4], old_tuned[:4]])  # (8, T, H, W, C)
    write_video(out / "finetune.gif", make_grid(strip), fps=8)
    if args.adapter:
        model_dir = resolve_model_dir(args.base)
        sizes = {"adapter_bytes": (Path(args.adapter) / "adapter.safetensors").stat().st_size,
                 "model_bytes": sum((model_dir / f).stat().st_size for f in ("model.safetensors",
                                                                           "conditioner.safetensors"))}
        sizes["ratio"] = sizes["adapter_bytes"] / sizes["model_bytes"]
        result["size"] = sizes
    if args.cost_steps:
        result["step_cost"] = {arm: step_cost(arm, args.base, args.cost_steps) for arm in ("lora", "full")}
    result["threads"] = torch.get_num_threads()
    (out / "finetune.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = ["| prompts | inverted | digit | direction | inverted and digit |", "| --- | --- | --- | --- | --- |"]
    for name in names[int(args.new == "zigzag"):]:
        r = result[name]
        rows.append(f"| {name} | {r['inverted']:.2f} | {r['digit']:.2f} | {r['direction']:.2f} | "
                    f"{r['inverted_and_digit']:.2f} |")
    if args.new == "zigzag":
        rows = ["| zigzag prompts | digit | first step across right | zigzags | all three |",
                "| --- | --- | --- | --- | --- |",
                *[f"| {name} | {r['digit']:.2f} | {r['across']:.2f} | {r['zigzag']:.2f} | {r['right']:.2f} |"
                  for name, r in [(names[0], new_scores), *checks.items()]], "", *rows]
    lines = [f"# Fine-tune: {args.adapter or args.tuned} on {args.base}", "",
             f"{args.num} held-out captions, {args.sampler} {args.steps} steps, guidance {args.guidance}, seed "
             f"{args.seed}.", "", *rows]
    if args.adapter:
        lines += ["", f"Adapter file {sizes['adapter_bytes'] / 1024:.0f} KiB = {100 * sizes['ratio']:.1f} % of the "
                  f"model's {sizes['model_bytes'] / 1024:.0f} KiB."]
    if args.cost_steps:
        c = result["step_cost"]
        lines += ["", "| arm | median step s | peak RSS MiB |", "| --- | --- | --- |"]
        lines += [f"| {arm} | {c[arm]['median_s']:.3f} | {c[arm]['peak_rss_mib']:.0f} |" for arm in c]
    (out / "finetune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
