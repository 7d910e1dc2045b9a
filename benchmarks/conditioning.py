"""Does a conditioned moving-digits model follow its text, its audio, and an edit prompt?

    python benchmarks/conditioning.py --model runs/text --num 100 --steps 20 --scales 1 2 4

Text: prompts of held-out clips (the test split: digit images never seen in training), generated from
the text alone at each guidance scale; a digit classifier (trained on the train-split digit images
only) and a centroid tracker score digit and direction accuracy. The same scorers on the real
clips give the ceiling.
Audio: the sound tracks of held-out clips, generated from the audio alone and with nothing at all;
the Pearson correlation between the generated digit's height and the audio's pitch, per clip.
Edit (SDEdit): real held-out clips re-generated under the prompt of another clip; PSNR to the
source at strength 0.3, and digit accuracy to the new prompt at 0.8.
Writes benchmarks/results/conditioning.{json,md} (or NAME.{json,md} with --name) and, with --examples,
example grids to docs/examples/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from kinema.data import MovingDigits, MovingDigitsConfig, make_grid, to_uint8, write_video
from kinema.data.audio import dominant_frequency
from kinema.evaluation import frame_metrics
from kinema.evaluation.alignment import DigitClassifier, centroid_track, direction_of, height_pitch_correlation
from kinema.pipeline import VideoPipeline

RESULTS = Path(__file__).parent / "results"
EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"


def held_out(pipe: VideoPipeline, num: int) -> tuple[MovingDigits, list[int]]:
    """The test-split data set at the model's size and window, and the indices used."""
    ds = MovingDigits(MovingDigitsConfig(size=pipe.size, num_frames=pipe.num_frames, split="test", max_digits=1,
                                         seed=123, length=num, audio=True, audio_rate=pipe.audio_rate, fps=pipe.fps))
    return ds, list(range(num))


def in_batches(fn, items: list, batch: int) -> torch.Tensor:
    """Run fn over chunks of items and stack the videos, (N, C, T, H, W)."""
    return torch.cat([fn(items[i : i + batch]) for i in range(0, len(items), batch)])


def scores(videos: torch.Tensor, digits: list[int], directions: list[int], clf: DigitClassifier) -> dict:
    """Digit and direction accuracy of generated clips against what was asked."""
    d = [clf.predict(v) == want for v, want in zip(videos, digits)]
    r = [direction_of(centroid_track(v)) == want for v, want in zip(videos, directions)]
    return {"digit_accuracy": float(np.mean(d)), "direction_accuracy": float(np.mean(r))}


def pitch_correlation(videos: torch.Tensor, pitches: list[np.ndarray]) -> dict:
    """Mean height-vs-log-pitch correlation over the clips where both vary."""
    c = np.array([height_pitch_correlation(centroid_track(v), p) for v, p in zip(videos, pitches)])
    return {"mean_correlation": float(np.nanmean(c)) if np.isfinite(c).any() else float("nan"),
            "clips_scored": int(np.isfinite(c).sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num", type=int, default=100, help="held-out clips per measurement")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 4.0], help="text guidance scales")
    p.add_argument("--audio-scales", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--examples", action="store_true", help="write example grids to docs/examples/")
    p.add_argument("--name", default="conditioning", help="results file stem: benchmarks/results/NAME.{json,md}")
    args = p.parse_args()

    pipe = VideoPipeline.from_pretrained(args.model)
    ds, idx = held_out(pipe, args.num)
    tracks = [ds.tracks(i)[0] for i in idx]
    prompts = [ds.caption(i) for i in idx]
    digits, directions = [tr.digit for tr in tracks], [tr.direction for tr in tracks]
    clf = DigitClassifier(digit_size=ds.config.digit_size)
    real = torch.stack([ds[i]["video"] for i in idx])
    report = {"model": args.model, "num": args.num, "steps": args.steps, "sampler": args.sampler,
              "held_out": "MovingDigits split=test seed=123 (digit images never seen in training)",
              "text": {"real clips (ceiling)": scores(real, digits, directions, clf)}, "audio": {}, "edit": {}}
    common = dict(steps=args.steps, sampler=args.sampler, progress=False)
    examples = {}

    if "text" in pipe.conditioner.names:
        for scale in args.scales:
            t0 = time.time()
            videos = in_batches(lambda ps: pipe(len(ps), prompt=ps, guidance=scale, seed=0, **common).torch(),
                                prompts, args.batch)
            report["text"][f"guidance {scale:g}"] = {**scores(videos, digits, directions, clf),
                                                     "seconds": round(time.time() - t0, 1)}
            examples[f"text_g{scale:g}"] = videos[:8]
            print("text", scale, report["text"][f"guidance {scale:g}"], flush=True)

    if "audio" in pipe.conditioner.names:
        audio = [ds[i]["audio"].numpy() for i in idx]
        pitches = [dominant_frequency(a, rate=pipe.audio_rate, fps=pipe.fps, num_frames=pipe.num_frames)
                   for a in audio]
        report["audio"]["real clips (ceiling)"] = pitch_correlation(real, pitches)
        t0 = time.time()
        none = in_batches(lambda ix: pipe(len(ix), seed=1, **common).torch(), idx, args.batch)
        report["audio"]["audio dropped"] = {**pitch_correlation(none, pitches), "seconds": round(time.time() - t0, 1)}
        print("audio dropped", report["audio"]["audio dropped"], flush=True)
        for scale in args.audio_scales:
            t0 = time.time()
            videos = in_batches(lambda ix: pipe(len(ix), audio=np.stack([audio[i] for i in ix]), audio_guidance=scale,
                                                seed=1, **common).torch(), idx, args.batch)
            report["audio"][f"audio, guidance {scale:g}"] = {**pitch_correlation(videos, pitches),
                                                            "seconds": round(time.time() - t0, 1)}
            examples[f"audio_g{scale:g}"] = videos[:8]
            print("audio", scale, report["audio"][f"audio, guidance {scale:g}"], flush=True)

    if "text" in pipe.conditioner.names:
        best = max(args.scales, key=lambda s: report["text"][f"guidance {s:g}"]["digit_accuracy"])
        new = [prompts[(i + 1) % len(prompts)] for i in range(len(prompts))]  # another clip's prompt
        new_digits = [digits[(i + 1) % len(digits)] for i in range(len(digits))]
        for strength in (0.3, 0.8):
            t0 = time.time()
            videos = in_batches(lambda ix: pipe.edit(real[ix[0] : ix[-1] + 1], prompt=[new[i] for i in ix],
                                                     strength=strength, guidance=best, seed=2, **common).torch(),
                                idx, args.batch)
            m = frame_metrics(videos, real)
            report["edit"][f"strength {strength:g}"] = {
                "psnr_to_source_db": round(float(m["psnr"]), 2), "ssim_to_source": round(float(m["ssim"]), 3),
                "digit_accuracy_to_new_prompt": float(np.mean([clf.predict(v) == d
                                                               for v, d in zip(videos, new_digits)])),
                "digit_kept_from_source": float(np.mean([clf.predict(v) == d for v, d in zip(videos, digits)])),
                "guidance": best, "seconds": round(time.time() - t0, 1)}
            examples[f"edit_s{strength:g}"] = videos[:8]
            print("edit", strength, report["edit"][f"strength {strength:g}"], flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    if args.examples:
        for name, videos in examples.items():
            write_video(EXAMPLES / f"cond_{name}.gif", make_grid(to_uint8(videos)), fps=8)
        (EXAMPLES / "cond_prompts.txt").write_text("".join(f"{i}: {prompts[i]}\n" for i in range(8)))
    print((RESULTS / f"{args.name}.md").read_text())


def markdown(r: dict) -> str:
    """The report as markdown tables."""
    lines = [f"# Conditioning on held-out moving digits ({r['model']})", "",
             f"{r['num']} clips per row, {r['sampler']} with {r['steps']} steps; {r['held_out']}.", "",
             "## Text -> video", "", "| | digit accuracy | direction accuracy |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v['digit_accuracy']:.2f} | {v['direction_accuracy']:.2f} |" for k, v in r["text"].items()]
    lines += ["", "Chance: digit 0.10, direction 0.125."]
    if r["audio"]:  # a model without an audio condition has no such section
        lines += ["", "## Audio -> motion", "", "| | height vs log-pitch correlation | clips scored |",
                  "| --- | --- | --- |"]
        lines += [f"| {k} | {v['mean_correlation']:.3f} | {v['clips_scored']} |" for k, v in r["audio"].items()]
    lines += ["", "## Edit (SDEdit) under another clip's prompt", "",
              "| | PSNR to source (dB) | SSIM to source | digit = new prompt | digit = source |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['psnr_to_source_db']:.2f} | {v['ssim_to_source']:.3f} | "
              f"{v['digit_accuracy_to_new_prompt']:.2f} | {v['digit_kept_from_source']:.2f} |"
              for k, v in r["edit"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
