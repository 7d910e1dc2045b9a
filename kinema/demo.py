"""The demo: every task of one model in a minute — text to video, prediction, interpolation, animation and
audio-driven motion — written as GIF + MP4 with an `index.html` contact sheet.

    kinema demo --model moving-digits --out outputs/demo

Inputs for the frame and audio tasks come from held-out moving-digits clips (digit images the model
never saw in training), so everything runs offline from what ships in the package.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .data import MovingDigits, MovingDigitsConfig, Video, to_uint8
from .data.audio import write_wav
from .pipeline import VideoPipeline, draw_path, task_inputs, trajectory_input

PROMPTS = ("digit 3 moving right", "digit 7 moving up", "digit 0 moving down left")
PATH = "0.3,0.3;0.7,0.3;0.7,0.7;0.3,0.7"  # three sides of a square, clockwise from the top left
PATH_PROMPT = "digit 2 moving right"  # the caption names the first step's direction, as in training


@dataclass
class DemoItem:
    """One clip of the contact sheet: what was asked and where the result is."""

    task: str
    title: str
    detail: str
    gif: str
    mp4: str
    inputs: list[str] = field(default_factory=list)  # files shown beside the result (context, audio, ...)


def _save(video: Video, out: Path, name: str) -> tuple[str, str]:
    for ext in ("gif", "mp4"):
        video.save(out / f"{name}.{ext}")
    return f"{name}.gif", f"{name}.mp4"


def run_demo(model: str | Path = "moving-digits", out: str | Path = "outputs/demo", *, steps: int = 50,
             sampler: str = "dpmpp_2m_sde", guidance: float = 3.0, frame_guidance: float = 3.0, seed: int = 0,
             prompts=PROMPTS, progress: bool = True) -> dict:
    """Run every task the model supports once, write the clips and index.html into `out`; return a summary."""
    start = time.time()
    pipe = VideoPipeline.from_pretrained(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cc = pipe.conditioner.config if pipe.conditioner is not None else None
    data = MovingDigits(MovingDigitsConfig(size=pipe.size, num_frames=pipe.num_frames, split="test", max_digits=1,
                                           seed=2024, length=8, audio=bool(cc and cc.audio),
                                           audio_rate=pipe.audio_rate, fps=pipe.fps))
    common = dict(steps=steps, sampler=sampler, progress=progress)
    items: list[DemoItem] = []
    if cc is not None and cc.text != "none":
        video = pipe(len(prompts), prompt=list(prompts), guidance=guidance, seed=seed, **common)
        for i, prompt in enumerate(prompts):
            gif, mp4 = _save(video[i], out, f"text_{i}")
            items.append(DemoItem("text → video", f"“{prompt}”", f"guidance {guidance}", gif, mp4))
    # frame tasks: guided towards the given frames and, when the model has an image encoder, towards their first
    # frame as the reference image (prediction keeps its digit in 0.83 of clips so, 0.70 without: docs/pretrained.md)
    image_guidance = guidance if pipe.takes("image") else 1.0
    framed = dict(frame_guidance=frame_guidance, image_guidance=image_guidance, seed=seed, **common)
    how = f"frame guidance {frame_guidance}" + (f", reference image guidance {image_guidance}"
                                                 if image_guidance != 1 else "")
    if pipe.model.config.frame_conditioning:
        clip = data[0]["video"]  # (C, T, H, W)
        k = pipe.fit_context(max(1, pipe.num_frames // 4))  # whole latent frames when the autoencoder compresses time
        ctx = Video(to_uint8(clip[:, :k][None]))
        ctx_gif, _ = _save(ctx, out, "predict_context")
        video = pipe(**task_inputs("predict", clip[None], k), **framed)
        gif, mp4 = _save(video, out, "predict")
        items.append(DemoItem("prediction", f"the next {pipe.num_frames - k} frames",
                              f"from {k} frames of a held-out clip, {how}", gif, mp4,
                              [ctx_gif]))
        clip = data[1]["video"]
        ends = Video(to_uint8(clip[:, [0, -1]][None]))
        ends_gif, _ = _save(ends, out, "interpolate_ends")
        video = pipe(**task_inputs("interpolate", clip[None]), **framed)
        gif, mp4 = _save(video, out, "interpolate")
        items.append(DemoItem("interpolation", f"{pipe.num_frames - 2} frames in between",
                              f"first and last frame of a held-out clip, {how}", gif, mp4,
                              [ends_gif]))
        clip = data[2]["video"]
        image = Video(to_uint8(clip[:, :1][None]))
        image_gif, _ = _save(image, out, "animate_image")
        video = pipe(**task_inputs("animate", clip[None]), **framed)
        gif, mp4 = _save(video, out, "animate")
        items.append(DemoItem("animation", "an image set in motion",
                              f"first frame of a held-out clip, {how}", gif, mp4,
                              [image_gif]))
    if cc is not None and cc.audio:
        sample = data[3]
        wav = out / "audio_input.wav"
        write_wav(wav, sample["audio"].numpy(), pipe.audio_rate)
        video = pipe(audio=sample["audio"], audio_guidance=2.0, seed=seed, **common)
        gif, mp4 = _save(video, out, "audio")
        real = Video(to_uint8(sample["video"][None]))
        real_gif, _ = _save(real, out, "audio_source")
        items.append(DemoItem("audio → motion", "motion from a sound track",
                              "pitch = height, clicks = bounces; right: the clip the sound came from", gif, mp4,
                              [real_gif, "audio_input.wav"]))
    if cc is not None and cc.trajectory != "none":
        prompt = {"prompt": PATH_PROMPT, "guidance": guidance} if cc.text != "none" else {}
        video = pipe(trajectory=PATH, trajectory_guidance=guidance, seed=seed, **prompt, **common)
        gif, mp4 = _save(video, out, "path")
        drawn = Video(draw_path(video.numpy()[0], trajectory_input(PATH, 1, video.numpy().shape[1])[0])[None],
                      fps=video.fps)
        drawn_gif, _ = _save(drawn, out, "path_drawn")
        items.append(DemoItem("path → motion", "a digit following a drawn path",
                              f"waypoints {PATH}, guidance {guidance}; the path and each frame's target (ring) drawn "
                              "over the result; below: the result alone", drawn_gif, mp4, [gif]))
    if not items:  # an unconditional model without frame conditioning: plain generation
        video = pipe(4, seed=seed, **common)
        for i in range(len(video)):
            gif, mp4 = _save(video[i], out, f"sample_{i}")
            items.append(DemoItem("generation", f"sample {i}", "unconditional", gif, mp4))
    seconds = time.time() - start
    summary = {"model": str(model), "sampler": sampler, "steps": steps, "guidance": guidance,
               "frame_guidance": frame_guidance, "image_guidance": image_guidance, "seed": seed,
               "seconds": round(seconds, 1), "clips": [item.__dict__ for item in items]}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "index.html").write_text(contact_sheet(items, summary))
    return summary


def contact_sheet(items: list[DemoItem], summary: dict) -> str:
    """An HTML page showing every clip (as GIF, pixel-art scaled) with its task and prompt."""
    cards = []
    for it in items:
        inputs = "".join(
            f'<audio controls src="{html.escape(f)}"></audio>' if f.endswith(".wav")
            else f'<img class="input" src="{html.escape(f)}" alt="input">' for f in it.inputs)
        cards.append(f"""<figure>
  <div class="task">{html.escape(it.task)}</div>
  <img class="clip" src="{html.escape(it.gif)}" alt="{html.escape(it.title)}">
  <figcaption><b>{html.escape(it.title)}</b><br>{html.escape(it.detail)}<br>
  <a href="{html.escape(it.mp4)}">mp4</a></figcaption>
  <div class="inputs">{inputs}</div>
</figure>""")
    meta = (f"model {html.escape(summary['model'])} · {html.escape(summary['sampler'])}, {summary['steps']} steps · "
            f"seed {summary['seed']} · {summary['seconds']} s")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kinema demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; background: #fafafa; color: #222; }}
main {{ display: flex; flex-wrap: wrap; gap: 1.2em; }}
figure {{ margin: 0; padding: 0.8em; background: #fff; border: 1px solid #ddd; border-radius: 8px; width: 220px; }}
.task {{ font-size: 0.8em; text-transform: uppercase; color: #666; margin-bottom: 0.4em; }}
img.clip {{ width: 192px; height: 192px; image-rendering: pixelated; background: #000; }}
img.input {{ height: 48px; image-rendering: pixelated; margin-right: 4px; background: #000; }}
audio {{ width: 190px; }}
figcaption {{ font-size: 0.9em; margin-top: 0.4em; }}
</style></head>
<body>
<h1>kinema demo</h1>
<p>{meta}</p>
<main>
{chr(10).join(cards)}
</main>
</body></html>
"""
