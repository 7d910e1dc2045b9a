"""A web page to play with a model (gradio, the optional extra `kinema[ui]`).

    kinema serve --model moving-digits            # http://127.0.0.1:7860

Prompt, negative prompt, an optional image / audio / context video, a path laid by clicking on the
first frame (a model trained with a trajectory condition), the task, sampler, steps,
guidance scales, seed, frame count and feature caching; a progress bar while sampling; the clip
plays in the page and downloads as MP4. Requests wait in one queue: one clip is sampled at a time,
nobody is turned away.

What one request may cost is bounded before any work starts: uploads (MAX_UPLOAD, refused by gradio
itself), prompt length, frames × steps × size² (`max_cost`), and every number must be finite and in
range. Uploads are decoded at the model's size, only the frames a task needs. A job whose client went
away stops at its next network call, so it does not hold the queue. Each clip is written to a
temporary directory of its own, removed once gradio has its copy; gradio deletes its copies
(uploads and clips) after an hour and when the server stops (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import inspect
import math
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import torch

from .data import SAMPLING_TASKS, read_video
from .diffusion import SAMPLERS
from .pipeline import MAX_SEED, VideoPipeline

MAX_PROMPT_CHARS = 500  # per prompt; the text encoders keep far fewer tokens than this
MAX_UPLOAD = "50mb"  # gradio stops reading a larger upload at this size (HTTP 413) and deletes the part it had
BUDGET_WINDOWS, BUDGET_STEPS = 8, 100  # default max_cost: 8 of the model's windows at 100 steps (the form's maxima)
CACHE_SECONDS = 3600  # gradio deletes the uploads and clips of this page older than this, and all at shutdown


class Cancelled(Exception):
    """The request's client went away, so sampling stopped."""


def _require_gradio():
    try:
        import gradio as gr
    except ImportError as err:
        raise RuntimeError("kinema serve needs gradio: pip install 'kinema[ui]'") from err
    return gr


# ---- limits ----


def default_max_cost(pipe: VideoPipeline) -> int:
    """The default budget of one request in frames × steps × size²: 8 of the model's windows at 100 steps."""
    return BUDGET_WINDOWS * pipe.num_frames * BUDGET_STEPS * pipe.size ** 2


def _whole(name: str, value, lo: int, hi: Optional[int] = None) -> int:
    """`value` as an int in [lo, hi]; a ValueError naming the field otherwise (NaN, ±inf and 2.5 included)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        allowed = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be a whole number {allowed}, got {value!r}")
    return value


def _finite(name: str, value) -> float:
    """`value` as a float; a ValueError naming the field when it is NaN, ±inf or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_request(pipe: VideoPipeline, *, prompt: str, negative_prompt: str, steps, frames, seed, guidance,
                  audio_guidance, cache_interval, context_frames=None, trajectory_guidance=1.0,
                  frame_guidance=1.0, max_cost: Optional[int] = None) -> dict:
    """The request's numbers as ints and finite floats, checked before any work; ValueError naming the field."""
    for name, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the {name} has {len(text):,} characters; at most {MAX_PROMPT_CHARS} are allowed")
    n = {"steps": _whole("steps", steps, 1, pipe.diffusion.num_steps), "frames": _whole("frames", frames, 2),
         "seed": _whole("seed", seed, 0, MAX_SEED), "guidance": _finite("guidance", guidance),
         "audio_guidance": _finite("audio guidance", audio_guidance),
         "trajectory_guidance": _finite("path guidance", trajectory_guidance),
         "frame_guidance": _finite("frame guidance", frame_guidance),
         "cache_interval": _whole("cache interval", cache_interval, 1)}
    if context_frames is not None:
        n["context_frames"] = _whole("context frames", context_frames, 1, n["frames"] - 1)
    max_cost = default_max_cost(pipe) if max_cost is None else max_cost
    cost = n["frames"] * n["steps"] * pipe.size ** 2
    if cost > max_cost:
        most = max_cost // (n["steps"] * pipe.size ** 2)
        raise ValueError(f"frames × steps × size² = {n['frames']} × {n['steps']} × {pipe.size}² = {cost:,} is above "
                         f"this server's limit of {max_cost:,}: at most {most} frames at {n['steps']} steps")
    return n


# ---- one request ----


def generate_clip(pipe: VideoPipeline, *, task: str, out_dir: str | Path, prompt: str = "", negative_prompt: str = "",
                  image: Optional[str] = None, audio: Optional[str] = None, video: Optional[str] = None,
                  sampler: str = "dpmpp_2m", steps: int = 20, guidance: float = 3.0, audio_guidance: float = 2.0,
                  seed: int = 0, frames: int = 16, context_frames: Optional[int] = None, cache_interval: int = 1,
                  trajectory: str = "", trajectory_guidance: float = 1.0, frame_guidance: float = 1.0,
                  max_cost: Optional[int] = None, cancelled: Optional[Callable[[], bool]] = None) -> Path:
    """One request of the page: check the form's values, call the pipeline, write the clip as MP4 into out_dir.

    `cancelled()` is asked before every network call; once it says True sampling stops with `Cancelled`.
    """
    if task not in SAMPLING_TASKS:
        raise ValueError(f"task must be one of {SAMPLING_TASKS}, got {task!r}")
    n = check_request(pipe, prompt=prompt, negative_prompt=negative_prompt, steps=steps, frames=frames, seed=seed,
                      guidance=guidance, audio_guidance=audio_guidance, cache_interval=cache_interval,
                      context_frames=context_frames, trajectory_guidance=trajectory_guidance,
                      frame_guidance=frame_guidance, max_cost=max_cost)
    cond = pipe.conditioner.config if pipe.conditioner is not None else None
    kwargs: dict = {"num_frames": n["frames"], "steps": n["steps"], "sampler": sampler, "seed": n["seed"],
                    "cache_interval": n["cache_interval"]}
    if prompt.strip() and cond is not None and cond.text != "none":
        kwargs.update(prompt=prompt.strip(), guidance=n["guidance"])
        if negative_prompt.strip():
            kwargs["negative_prompt"] = negative_prompt.strip()
    if audio and cond is not None and cond.audio:
        kwargs.update(audio=audio, audio_guidance=n["audio_guidance"])
    if trajectory.strip() and cond is not None and cond.trajectory != "none":
        kwargs.update(trajectory=trajectory.strip(), trajectory_guidance=n["trajectory_guidance"])
    if image and cond is not None and cond.image and task == "generate":
        kwargs["image"] = image  # a reference image (global embedding) for plain generation
    frame_tasks = pipe.model.config.frame_conditioning
    if task != "generate" and not frame_tasks:
        raise ValueError(f"this model was trained without frame conditioning: it can only generate, not {task}")
    if task != "generate":
        kwargs["frame_guidance"] = n["frame_guidance"]  # towards the given frames (generation has none)
    if task == "predict":
        if not video:
            raise ValueError("prediction needs a context video")
        kwargs.update(context=video, context_frames=n.get("context_frames"))  # the pipeline decodes only those
    elif task == "animate":
        if not image:
            raise ValueError("animation needs an image")
        kwargs["first_frame"] = image
    elif task == "interpolate":
        if not image or not video:
            raise ValueError("interpolation needs an image (first frame) and a video whose last frame ends the clip")
        kwargs.update(first_frame=image, last_frame=_last_frame(pipe, video))
    with _stop_when(pipe.model, cancelled):
        clip = pipe(**kwargs)
    return clip.save(Path(out_dir) / f"{task}-{n['seed']}.mp4")


def _last_frame(pipe: VideoPipeline, video: str):
    """The last frame of a video file at the model's size, uint8 (H, W, C); only that frame is kept while decoding."""
    return read_video(video, last=1, shorter_side=pipe.size)[-1]


@contextmanager
def _stop_when(model: torch.nn.Module, cancelled: Optional[Callable[[], bool]]):
    """Inside: every call of `model` first asks `cancelled()`, and raises Cancelled once it says True."""
    def check(module, args):
        if cancelled():
            raise Cancelled("the request was cancelled (its client went away); sampling stopped")

    handle = model.register_forward_pre_hook(check) if cancelled is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def _client_gone() -> Callable[[], bool]:
    """For the gradio event running in this thread: True once gradio has given it up.

    A client that closes the page's event stream has its events marked dead (`Event.alive`, set by
    gradio's queue); a cancelled event leaves the queue's active jobs. Gradio itself only stops
    waiting for the function, which runs on in its thread; this check lets the sampler stop.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if event_id is None or queue is None:
        return lambda: False

    def gone() -> bool:
        running = [event for job in queue.active_jobs if job for event in job]
        return not any(event._id == event_id and event.alive for event in running)

    return gone


# ---- the page ----


def build_app(pipe: VideoPipeline, title: str = "kinema", max_cost: Optional[int] = None):
    """The gradio Blocks app around one loaded pipeline; `max_cost` bounds frames × steps × size² per request."""
    gr = _require_gradio()
    cond = pipe.conditioner.config if pipe.conditioner is not None else None
    tasks = list(SAMPLING_TASKS) if pipe.model.config.frame_conditioning else ["generate"]
    # a refused request is the user's mistake, not the server's: no traceback in the log (gradio >= 5.9)
    quiet = {"print_exception": False} if "print_exception" in inspect.signature(gr.Error).parameters else {}

    def run(task, prompt, negative, image, audio, video, sampler, steps, guidance, audio_guidance, seed, frames,
            cache_interval, path, path_guidance, frame_guidance, progress=gr.Progress(track_tqdm=True)):
        with tempfile.TemporaryDirectory(prefix="kinema-serve-") as tmp:
            try:
                path = generate_clip(pipe, task=task, out_dir=tmp, prompt=prompt or "", negative_prompt=negative or "",
                                     image=image, audio=audio, video=video, sampler=sampler, steps=steps,
                                     guidance=guidance, audio_guidance=audio_guidance, seed=seed, frames=frames,
                                     cache_interval=cache_interval, trajectory=path or "",
                                     trajectory_guidance=path_guidance, frame_guidance=frame_guidance,
                                     max_cost=max_cost, cancelled=_client_gone())
            except (ValueError, FileNotFoundError, Cancelled) as err:
                raise gr.Error(str(err), **quiet) from None
            clip = result.move_resource_to_block_cache(path)  # gradio's copy, served and later deleted by gradio
        return clip, clip

    with gr.Blocks(title=title, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as app:
        gr.Markdown(f"# {title}\nA {pipe.size}×{pipe.size} model with a {pipe.num_frames}-frame window"
                    + (f"; conditions: {', '.join(pipe.conditioner.names)}."
                       if cond is not None else "."))
        with gr.Row():
            with gr.Column():
                task = gr.Dropdown(tasks, value="generate", label="Task")
                prompt = gr.Textbox(label="Prompt", placeholder="digit 7 moving left", elem_id="prompt",
                                    visible=_has(cond, "text"), max_length=MAX_PROMPT_CHARS)
                negative = gr.Textbox(label="Negative prompt", visible=_has(cond, "text"), max_length=MAX_PROMPT_CHARS)
                # image_mode=None: gradio hands over the path without decoding; the pipeline decodes at its size
                image = gr.Image(type="filepath", image_mode=None, label="Image (first frame / reference)")
                audio = gr.Audio(type="filepath", label="Audio", visible=_has(cond, "audio"))
                video = gr.Video(label="Context video (prediction) / end clip (interpolation)")
                with gr.Group(visible=_has(cond, "trajectory")):
                    canvas = gr.Image(interactive=False, elem_id="path-canvas",  # drawn when the page loads
                                      label="Path: click points on the first frame, in order", show_label=True)
                    path = gr.Textbox(label="Path (x,y;x,y;... normalised, 0,0 = top left)", elem_id="path")
                    clear = gr.Button("Clear path", size="sm")
                with gr.Accordion("Sampling", open=False):
                    sampler = gr.Dropdown(sorted(SAMPLERS), value="dpmpp_2m", label="Sampler")
                    steps = gr.Slider(2, 100, value=20, step=1, label="Steps")
                    guidance = gr.Slider(1, 10, value=3, step=0.5, label="Text guidance")
                    audio_guidance = gr.Slider(1, 10, value=2, step=0.5, label="Audio guidance")
                    path_guidance = gr.Slider(1, 10, value=3, step=0.5, label="Path guidance",
                                              visible=_has(cond, "trajectory"))
                    frame_guidance = gr.Slider(1, 10, value=3, step=0.5, label="Frame guidance (predict, interpolate, "
                                               "animate: towards the given frames)", visible=len(tasks) > 1)
                    seed = gr.Number(value=0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    f = pipe.temporal_factor  # a clip through a time-compressing autoencoder: 1 + a multiple of f
                    frames = gr.Slider(1 + f, 8 * pipe.num_frames, value=pipe.num_frames, step=f, label="Frames")
                    cache_interval = gr.Slider(1, 4, value=1, step=1, label="Full network every n-th step (faster "
                                               "above 1: deep features reused in between)")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                result = gr.Video(label="Result", elem_id="result", autoplay=True, loop=True)
                download = gr.File(label="Download")
        button.click(run, [task, prompt, negative, image, audio, video, sampler, steps, guidance, audio_guidance,
                           seed, frames, cache_interval, path, path_guidance, frame_guidance], [result, download],
                     api_name="generate")

        if _has(cond, "trajectory"):
            def add_point(current, first, evt: gr.SelectData):
                x, y = evt.index  # pixels of the canvas image
                side = pipe.size * CANVAS_SCALE
                point = f"{min(max(x / side, 0), 1):.3f},{min(max(y / side, 0), 1):.3f}"
                current = f"{current.strip()};{point}" if current and current.strip() else point
                return current, path_canvas(pipe, first, current)

            add_point.__annotations__["evt"] = gr.SelectData  # gradio injects the click by this type, not its name
            canvas.select(add_point, [path, image], [path, canvas])
            clear.click(lambda first: ("", path_canvas(pipe, first, "")), [image], [path, canvas])
            path.submit(lambda first, p: path_canvas(pipe, first, p), [image, path], [canvas])
            image.change(lambda first, p: path_canvas(pipe, first, p), [image, path], [canvas])
            app.load(lambda: path_canvas(pipe, None, ""), None, canvas)  # an event's output: gradio's cache rules
    return app.queue(default_concurrency_limit=1, max_size=64)  # one clip at a time; others wait their turn


def _has(cond, name: str) -> bool:
    if cond is None:
        return False
    if name in ("text", "trajectory"):
        return getattr(cond, name) != "none"
    return bool(getattr(cond, name))


CANVAS_SCALE = 8  # the path canvas shows the model's frame this many times enlarged


def path_canvas(pipe: VideoPipeline, first: Optional[str], path: str):
    """The page's path canvas: the first frame (an uploaded image, or black) enlarged, the waypoints drawn on it."""
    import numpy as np

    from .pipeline import as_video, draw_path, parse_path

    frame = np.zeros((pipe.size, pipe.size, 3), np.uint8)
    if first:
        try:
            image = as_video(first, size=pipe.size, channels=3, image=True)[0, :, 0]  # (3, H, W) in [-1, 1]
            frame = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        except (ValueError, OSError):
            pass  # an unreadable upload: the request itself will say why
    try:
        points = [p for obj in parse_path(path) for p in obj if p is not None] if path.strip() else []
    except ValueError:
        points = []  # the request names the bad point; the canvas shows none
    if not points:
        return np.kron(frame, np.ones((CANVAS_SCALE, CANVAS_SCALE, 1), np.uint8))
    marks = np.array(points, np.float32)[:, None]  # (N, 1, 2): one "frame" per waypoint, the last one ringed
    return draw_path(np.repeat(frame[None], len(points), axis=0), marks, scale=CANVAS_SCALE)[-1]


def serve(model: "str | VideoPipeline" = "moving-digits", *, host: str = "127.0.0.1", port: int = 7860,
          share: bool = False, block: bool = True, max_cost: Optional[int] = None,
          max_file_size: str | int = MAX_UPLOAD):
    """Serve `model` (a directory, bundled name or loaded pipeline) on host:port; block=False returns the app."""
    pipe = model if isinstance(model, VideoPipeline) else VideoPipeline.from_pretrained(model)
    name = Path(str(model)).name if not isinstance(model, VideoPipeline) else "model"
    app = build_app(pipe, title=f"kinema · {name}", max_cost=max_cost)
    if block and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C, so gradio deletes its files of this run
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=True,
               max_file_size=max_file_size)
    return app


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
