"""A web page to play with a model (gradio, the optional extra `kinema[ui]`).

    kinema serve --model moving-digits            # http://127.0.0.1:7860

Prompt, negative prompt, an optional image / audio / context video, the task, sampler, steps,
guidance scales, seed, frame count and feature caching; a progress bar while sampling; the clip
plays in the page and downloads as MP4. Requests wait in one queue: one clip is sampled at a time, nobody is turned away.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

from .data import read_video
from .diffusion import SAMPLERS
from .pipeline import VideoPipeline

TASKS = ("generate", "predict", "interpolate", "animate")


def _require_gradio():
    try:
        import gradio as gr
    except ImportError as err:
        raise RuntimeError("kinema serve needs gradio: pip install 'kinema[ui]'") from err
    return gr


def generate_clip(pipe: VideoPipeline, *, task: str, prompt: str = "", negative_prompt: str = "",
                  image: Optional[str] = None, audio: Optional[str] = None, video: Optional[str] = None,
                  sampler: str = "dpmpp_2m", steps: int = 20, guidance: float = 3.0, audio_guidance: float = 2.0,
                  seed: int = 0, frames: int = 16, context_frames: int = 4, cache_interval: int = 1,
                  out_dir: Optional[str] = None) -> Path:
    """One request of the page: turn the form's values into a pipeline call, write the clip as MP4, return its path."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    cond = pipe.conditioner.config if pipe.conditioner is not None else None
    kwargs: dict = {"num_frames": int(frames), "steps": int(steps), "sampler": sampler, "seed": int(seed),
                    "cache_interval": int(cache_interval)}
    if prompt.strip() and cond is not None and cond.text != "none":
        kwargs.update(prompt=prompt.strip(), guidance=float(guidance))
        if negative_prompt.strip():
            kwargs["negative_prompt"] = negative_prompt.strip()
    if audio and cond is not None and cond.audio:
        kwargs.update(audio=audio, audio_guidance=float(audio_guidance))
    if image and cond is not None and cond.image and task == "generate":
        kwargs["image"] = image  # a reference image (global embedding) for plain generation
    frame_tasks = pipe.model.config.frame_conditioning
    if task != "generate" and not frame_tasks:
        raise ValueError(f"this model was trained without frame conditioning: it can only generate, not {task}")
    if task == "predict":
        if not video:
            raise ValueError("prediction needs a context video")
        kwargs.update(context=video, context_frames=int(context_frames))
    elif task == "animate":
        if not image:
            raise ValueError("animation needs an image")
        kwargs["first_frame"] = image
    elif task == "interpolate":
        if not image or not video:
            raise ValueError("interpolation needs an image (first frame) and a video whose last frame ends the clip")
        kwargs.update(first_frame=image, last_frame=_last_frame(video))
    clip = pipe(**kwargs)
    out = Path(out_dir or tempfile.mkdtemp(prefix="kinema-serve-"))
    out.mkdir(parents=True, exist_ok=True)
    return clip.save(out / f"{task}-{int(seed)}.mp4")


def _last_frame(video: str):
    """The last frame of a video file, uint8 (H, W, C)."""
    return read_video(video)[-1]


def build_app(pipe: VideoPipeline, title: str = "kinema"):
    """The gradio Blocks app around one loaded pipeline."""
    gr = _require_gradio()
    cond = pipe.conditioner.config if pipe.conditioner is not None else None
    tasks = list(TASKS) if pipe.model.config.frame_conditioning else ["generate"]

    def run(task, prompt, negative, image, audio, video, sampler, steps, guidance, audio_guidance, seed, frames,
            cache_interval, progress=gr.Progress(track_tqdm=True)):
        try:
            path = generate_clip(pipe, task=task, prompt=prompt or "", negative_prompt=negative or "", image=image,
                                 audio=audio, video=video, sampler=sampler, steps=steps, guidance=guidance,
                                 audio_guidance=audio_guidance, seed=seed, frames=frames,
                                 cache_interval=cache_interval)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err))
        return str(path), str(path)

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nA {pipe.size}×{pipe.size} model with a {pipe.num_frames}-frame window"
                    + (f"; conditions: {', '.join(n for n in ('text', 'image', 'audio') if _has(cond, n))}."
                       if cond is not None else "."))
        with gr.Row():
            with gr.Column():
                task = gr.Dropdown(tasks, value="generate", label="Task")
                prompt = gr.Textbox(label="Prompt", placeholder="digit 7 moving left", elem_id="prompt",
                                    visible=_has(cond, "text"))
                negative = gr.Textbox(label="Negative prompt", visible=_has(cond, "text"))
                image = gr.Image(type="filepath", label="Image (first frame / reference)")
                audio = gr.Audio(type="filepath", label="Audio", visible=_has(cond, "audio"))
                video = gr.Video(label="Context video (prediction) / end clip (interpolation)")
                with gr.Accordion("Sampling", open=False):
                    sampler = gr.Dropdown(sorted(SAMPLERS), value="dpmpp_2m", label="Sampler")
                    steps = gr.Slider(2, 100, value=20, step=1, label="Steps")
                    guidance = gr.Slider(1, 10, value=3, step=0.5, label="Text guidance")
                    audio_guidance = gr.Slider(1, 10, value=2, step=0.5, label="Audio guidance")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    frames = gr.Slider(2, 8 * pipe.num_frames, value=pipe.num_frames, step=1, label="Frames")
                    cache_interval = gr.Slider(1, 4, value=1, step=1, label="Full network every n-th step (faster "
                                               "above 1: deep features reused in between)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                result = gr.Video(label="Result", elem_id="result", autoplay=True, loop=True)
                download = gr.File(label="Download")
        button.click(run, [task, prompt, negative, image, audio, video, sampler, steps, guidance, audio_guidance,
                           seed, frames, cache_interval], [result, download])
    return app.queue(default_concurrency_limit=1, max_size=64)  # one clip at a time; others wait their turn


def _has(cond, name: str) -> bool:
    if cond is None:
        return False
    return cond.text != "none" if name == "text" else bool(getattr(cond, name))


def serve(model: str = "moving-digits", *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True):
    """Load `model` and serve the page on host:port; with block=False return the running app."""
    pipe = VideoPipeline.from_pretrained(model)
    app = build_app(pipe, title=f"kinema · {Path(str(model)).name}")
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=True)
    return app
