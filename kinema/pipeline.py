"""VideoPipeline: load a model directory and generate video with any sampler.

    pipe = VideoPipeline.from_pretrained("runs/digits")
    video = pipe(num_videos=4, steps=50, sampler="ddim", seed=0)
    video.save("digits.mp4")
    video = pipe(prompt="digit 7 moving left", guidance=4, audio="tone.wav", seed=0)  # a conditioned model
    pipe.load_adapter("runs/inverted/adapter", scale=1.0)  # a LoRA adapter trained by `kinema finetune`
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .config import DiffusionConfig, is_int, resolve_precision
from .data import Video, task_mask, to_uint8
from .diffusion import edit, generate, make_schedule, sampling_denoiser
from .models import SpaceTimeUNet, StepCache
from .models.autoencoder import given_latent_frames, latent_frame_count, latent_frame_span, whole_latent_prefix
from .inputs import as_video, audio_input, draw_path, known_frames, parse_path, prompts, trajectory_input

# the pipeline's names, and the input helpers demo and serve take from here (they sit above the pipeline)
__all__ = ["MAX_SEED", "VideoPipeline", "default_spacing", "task_inputs", "as_video", "draw_path", "parse_path",
           "trajectory_input"]
from .models.encoders import Conditioner
from .models.lora import add_adapter, adapters, merge, set_scale
from .models.model_dir import load_adapter_dir, load_video_model, weights_sha256
from .models.unet import check_activation_memory
from .runtime import available_memory
from .types import Cond, FrameMask

# ---- the pipeline ----

MAX_SEED = 2**64 - 1  # the largest seed torch.Generator.manual_seed takes


def default_spacing(sampler: str) -> str:
    """Karras spacing for the ODE / multistep solvers (their sigma-space steps suit it), DDIM's leading otherwise."""
    return "karras" if sampler in ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde") else "leading"


def task_inputs(task: str, clip: torch.Tensor, context_frames: int = 1) -> dict:
    """The `VideoPipeline.__call__` keywords that give `task` the frames of `clip` (B, C, T, H, W) it keeps.

    Which frames those are is `data.masks.task_mask`'s to say (none, the first k, the first and the
    last, the first); this only names them in the pipeline's terms. `num_frames` is T.
    """
    t = clip.shape[2]
    known = task_mask(task, t, context_frames).nonzero().flatten().tolist()  # positions of the given frames
    inputs: dict = {"num_frames": t}
    if task == "predict":
        inputs.update(context=clip[:, :, : len(known)], context_frames=len(known))
    elif known:
        inputs["first_frame"] = clip[:, :, known[0]]
        if len(known) > 1:
            inputs["last_frame"] = clip[:, :, known[-1]]
    return inputs


def _check_scale(what: str, value) -> None:
    """A guidance or adapter scale must be a real, finite number (not a bool); ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")


def _frames_of(cond: Optional[Cond], start: int, length: int) -> Optional[Cond]:
    """The part of a condition that belongs to frames start .. start + length - 1 (frame-aligned parts are cut)."""
    if cond is None or (cond.per_frame is None and cond.maps is None):
        return cond
    frames = slice(start, start + length)
    return Cond(tokens=cond.tokens, mask=cond.mask, pooled=cond.pooled,
                per_frame=None if cond.per_frame is None else cond.per_frame[:, frames],
                maps=None if cond.maps is None else cond.maps[:, :, frames])


class VideoPipeline:
    """A trained model plus its schedule; call it to generate clips.

    `batch_guidance` (default True): the branches of classifier-free guidance run as one network
    call on a batch repeated once per branch; False calls the network once per branch (less memory).
    `decode_tile` (default None): a latent model decodes each frame in overlapping squares of this many
    latent positions (`VideoAutoencoder.decode_tiles`), so decoding memory stays flat for large frames.
    """

    batch_guidance = True
    decode_tile: Optional[int] = None

    def __init__(self, model: SpaceTimeUNet, diffusion: DiffusionConfig, *, size: int, num_frames: int,
                 conditioner: Optional[Conditioner] = None, fps: float = 8.0, audio_rate: int = 16000,
                 device: Optional[str] = None, precision: str = "auto", autoencoder: Optional[nn.Module] = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # a latent model: the UNet samples latents on a grid `spatial_factor` times smaller, decoded at the end
        self.autoencoder = None if autoencoder is None else autoencoder.to(self.device).eval().requires_grad_(False)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.conditioner = None if conditioner is None else conditioner.to(self.device).eval().requires_grad_(False)
        self.fps, self.audio_rate = fps, audio_rate
        self.diffusion, self.size, self.num_frames = diffusion, size, num_frames
        self.grid = size // (autoencoder.config.spatial_factor if autoencoder is not None else 1)  # the UNet's H, W
        self.schedule = make_schedule(diffusion.schedule, diffusion.num_steps, diffusion.shift, diffusion.frame_noise)
        self.precision = resolve_precision(precision, self.device.type)
        self._base_sha256: Optional[str] = None  # hashed when an adapter first needs it, before any change

    @property
    def channels(self) -> int:
        """Channels of the video the pipeline takes and returns (1 grayscale, 3 RGB)."""
        return self.model.config.in_channels if self.autoencoder is None else self.autoencoder.config.in_channels

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (1: the UNet samples every frame itself)."""
        return 1 if self.autoencoder is None else self.autoencoder.config.temporal_factor

    def fit_context(self, frames: int) -> int:
        """The most context frames, at most `frames`, the model takes: all of them, or with time compressed by f the
        most that fill whole latent frames (1 + a multiple of f)."""
        return whole_latent_prefix(frames, self.temporal_factor)

    def latent_frames(self, num_frames: int, what: str = "num_frames") -> int:
        """The frames the UNet samples for a clip of `num_frames`: its latent frames; a ValueError naming the counts
        that fit (1 + a multiple of the temporal factor)."""
        if self.autoencoder is None:
            return num_frames
        return latent_frame_count(self.autoencoder.config, num_frames, what)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: Optional[str] = None, precision: str = "auto",
                        trust_pickle: bool = False):
        """Load a model directory (config.json + model.safetensors), or a training run's `model/` inside it.

        Args:
            path: the model directory, a run directory written by `kinema train`, or the name of a model
                bundled with kinema ("moving-digits").
            device: "cpu", "cuda", ... (default: cuda when available).
            precision: "auto" (bf16 where the hardware has it), "bf16" or "no".
            trust_pickle: read weights from a `.pt` / `.ckpt` pickle when the directory has no safetensors
                (with torch.load(weights_only=True)); without it such a directory is refused.
        """
        loaded = load_video_model(path, trust_pickle=trust_pickle)
        return cls(loaded.model, loaded.diffusion, size=loaded.size, num_frames=loaded.num_frames,
                   conditioner=loaded.conditioner, fps=loaded.fps, audio_rate=loaded.audio_rate, device=device,
                   precision=precision, autoencoder=loaded.autoencoder)

    @torch.no_grad()
    def __call__(self, num_videos: int = 1, *, num_frames: Optional[int] = None, context=None,
                 context_frames: Optional[int] = None, first_frame=None, last_frame=None, steps: int = 50,
                 sampler: str = "ddim", seed: Optional[int] = None, spacing: Optional[str] = None,
                 overlap: Optional[int] = None, long_mode: str = "sliding", prompt=None, negative_prompt=None,
                 image=None, audio=None, trajectory=None, guidance: float = 1.0, image_guidance: float = 1.0,
                 audio_guidance: float = 1.0, trajectory_guidance: float = 1.0, draws: int = 1,
                 cache_interval: int = 1, progress: bool = True, frame_reference: bool = True,
                 frame_guidance: float = 1.0, **sampler_options) -> Video:
        """Generate, predict, interpolate or animate clips of any length with one call.

        Args:
            num_videos: clips per call (ignored when `context` holds a batch: one clip per context).
            num_frames: frames of the result, given frames included (default: the training window); with an
                autoencoder that compresses time by f, 1 + a multiple of f.
            context: past frames to continue (prediction): a video file path, uint8 (T, H, W, C) or
                (B, T, H, W, C) array, or float (C, T, H, W) / (B, C, T, H, W) tensor in [-1, 1].
            context_frames: use the last k frames of `context` (default: all, at most window - 1); with an
                autoencoder that compresses time by f, 1 + a multiple of f (the default: the most that fit).
            first_frame: an image (path, uint8 (H, W, C) array or float (C, H, W) tensor) the clip starts
                with (animation; with `last_frame`, interpolation).
            last_frame: an image the clip ends with.
            steps: sampler steps per window (1..diffusion.num_steps).
            sampler: a name from `kinema.diffusion.SAMPLERS` ("ddpm", "ddim", ...).
            seed: makes the result reproducible; None draws a fresh one.
            spacing: how steps are spread over the schedule: "leading", "linspace", "trailing" or "karras"
                (default: karras for euler / heun / dpmpp_2m / dpmpp_2m_sde, leading for ddim / ddpm).
            overlap: frames a new window shares with the previous one in long videos (default: window // 4); with
                an autoencoder that compresses time by f, a multiple of f (windows slide over latent frames).
            long_mode: "sliding" (each window continues the last `overlap` frames) or "keyframes" (first
                every (window - 1)-th frame, then the gaps in interpolation mode).
            prompt: text (or one per clip) for a text-conditioned model.
            negative_prompt: text to steer away from; replaces the unconditional branch of text guidance.
            image: a reference image (path, array or tensor) for a model with an image encoder.
            audio: a sound track: an audio or video file path, or float (A,) / (B, A) samples at the
                model's audio rate; it is cut or padded to num_frames / fps seconds, frame t to frame t.
            trajectory: where the object is in each frame, for a model trained with cond.trajectory:
                "x,y;x,y;..." (normalised, 0,0 = top left; '|' separates objects; exactly num_frames
                points are one per frame, '-' = absent; any other number are waypoints spread evenly
                along the path), a .json file of [x, y] points, or (T, 2) / (T, K, 2) / (B, T, K, 2) numbers.
            guidance: classifier-free guidance scale of the text (1 = plain conditional).
            image_guidance: guidance scale of the reference image.
            audio_guidance: guidance scale of the audio.
            trajectory_guidance: guidance scale of the trajectory.
            draws: sample each clip this many times and return the pixel-wise mean of the draws: an
                estimate of the posterior mean, the prediction with the least squared error (highest
                expected PSNR), blurred where the draws disagree. 1 (default) returns one sharp sample.
            cache_interval: n > 1 runs the network in full once every n steps and, in between, only its
                top level on the deeper levels' output from the last full step (DeepCache): about
                (1 + (n - 1) / 5) / n of the FLOPs at the config-B size, for some loss of quality
                (benchmarks/sampler_quality.py). 1 (default) runs every step in full.
            progress: show a progress bar.
            frame_reference: a model with an image encoder takes the given first frame as its reference
                image when no `image` is given (True, default): the pairing it was trained with, which
                tells every frame, not only the neighbours of the given ones, what the clip shows.
            frame_guidance: classifier-free guidance scale of the given frames (prediction, interpolation,
                animation): the prediction with the frames against the same model's without them (its
                generation task), > 1 holding the made frames closer to what the given ones show. 1 (default)
                = plain conditional, one network call per step; any other value, one more.
            **sampler_options: passed to the sampler, e.g. `eta=` for DDIM, `variance=` for DDPM.
        Returns:
            a `Video` of uint8 (B, num_frames, H, W, C); given frames appear in it exactly.
        """
        spacing = spacing or default_spacing(sampler)
        if not is_int(draws) or draws < 1:
            raise ValueError(f"draws must be a positive integer, got {draws!r}")
        if num_frames is not None and (not is_int(num_frames) or num_frames < 1):
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if long_mode not in ("sliding", "keyframes"):
            raise ValueError(f"long_mode must be 'sliding' or 'keyframes', got {long_mode!r}")
        known, batch = self._known_frames(num_videos, context, context_frames, first_frame, last_frame)
        n_ctx = sum(1 for p in known if p >= 0)
        total = num_frames or max(self.num_frames, n_ctx + self.temporal_factor)  # pixel frames, given ones included
        known = {(p if p >= 0 else total + p): f for p, f in known.items()}  # -1 = the last frame
        if min(known, default=0) < 0 or max(known, default=0) >= total or len(known) >= total:
            raise ValueError(f"num_frames={total} leaves no frame to generate beside the {len(known)} given")
        n_latent = self.latent_frames(total)  # T': the frames the UNet samples (= total without an autoencoder)
        result = batch * total * self.channels * self.size**2 * 9  # float sum, stack, uint8
        free = available_memory()
        if free is not None and result > free:
            raise ValueError(f"num_frames={total} x num_videos={batch} at {self.size}x{self.size} needs about "
                             f"{result / 2**30:.1f} GiB for the result, more than the {free / 2**30:.1f} GiB free")
        window = min(self.latent_frames(self.num_frames), n_latent)  # long videos slide over latent frames
        plan = self._plan(n_latent, window, self._latent_overlap(overlap, window, n_latent), long_mode)
        if image is None and frame_reference and 0 in known and self.takes("image"):
            image = known[0]  # (B, C, H, W): training pairs a clip with its first frame as the reference image
        conds = self.conditions(batch, total, prompt=prompt, negative_prompt=negative_prompt, image=image,
                                audio=audio, trajectory=trajectory,
                                scales={"text": guidance, "image": image_guidance, "audio": audio_guidance,
                                        "trajectory": trajectory_guidance})
        _check_scale("frame_guidance", frame_guidance)
        if frame_guidance != 1 and not (known and self.model.config.frame_conditioning):
            raise ValueError(f"frame_guidance={frame_guidance} needs given frames (context, first_frame, last_frame) "
                             "and a model trained with frame conditioning")
        branches = (len(conds[0]) if conds[1] else 1) + (frame_guidance != 1)
        self._check_memory(batch, window, branches, what=f"num_videos={batch}")
        latent_known = self._encode_known(known, total)  # {latent frame: (B, Z, H', W')}
        if len(latent_known) >= n_latent:
            raise ValueError(f"num_frames={total} leaves no latent frame to generate beside the given frames "
                             f"(temporal factor {self.temporal_factor}); ask for more frames")
        generator = self._generator(seed)
        bar = tqdm(total=draws * len(plan) * steps, desc=f"sample ({sampler})", unit="step", disable=not progress)
        video = 0.0
        for _ in range(draws):
            done = dict(latent_known)  # given frames, then each window's new frames
            for start, length, keep in plan:
                frames = self._window(done, batch, start, length, conds=conds, steps=steps, sampler=sampler,
                                      spacing=spacing, generator=generator, bar=bar, cache_interval=cache_interval,
                                      frame_guidance=frame_guidance, **sampler_options)  # (B, C, L, H, W)
                for i in keep:
                    done.setdefault(start + i, frames[:, :, i])
            clip = torch.stack([done[p] for p in range(n_latent)], dim=2).float()  # (B, C or Z, T', H', W')
            video = video + self._decode(clip, window) / draws  # (B, C, T, H, W)
        bar.close()
        for p, f in known.items():  # given frames exact, not a float mean of copies
            video[:, :, p] = f.float()
        return Video(to_uint8(video.cpu()), fps=self.fps)

    @torch.no_grad()
    def edit(self, video, *, strength: float = 0.6, prompt=None, negative_prompt=None, image=None, audio=None,
             trajectory=None, guidance: float = 1.0, image_guidance: float = 1.0, audio_guidance: float = 1.0,
             trajectory_guidance: float = 1.0, steps: int = 50, sampler: str = "ddim", seed: Optional[int] = None,
             spacing: Optional[str] = None, cache_interval: int = 1, progress: bool = True, **sampler_options) -> Video:
        """Re-generate a clip under new conditions, keeping its layout (SDEdit); the frame count is kept.

        Args:
            video: the source clip(s): a file path, uint8 (T, H, W, C) / (B, T, H, W, C) or float (B, C, T, H, W).
            strength: how far to noise the source, in (0, 1]: near 0 keeps it, 1 ignores it.
            prompt, negative_prompt, image, audio, trajectory and their guidance scales: as in `__call__`.
            steps: sampler steps over the whole schedule (about strength * steps are taken).
            sampler, seed, spacing, cache_interval, progress, **sampler_options: as in `__call__`.
        Returns:
            a `Video` with the source's frame count.
        """
        x0 = self._as_video(video)  # (B, C, T, H, W)
        b, _, t = x0.shape[:3]
        frames = self.latent_frames(t, "the video's frame count")
        if self.autoencoder is not None:
            x0 = self.autoencoder.encode(x0)  # (B, Z, T', H / f, W / f): SDEdit runs on the latent
        spacing = spacing or default_spacing(sampler)
        chain, scales = self.conditions(b, t, prompt=prompt, negative_prompt=negative_prompt, image=image,
                                        audio=audio, trajectory=trajectory,
                                        scales={"text": guidance, "image": image_guidance, "audio": audio_guidance,
                                                "trajectory": trajectory_guidance})
        self._check_memory(b, frames, len(chain) if scales else 1, what=f"editing {b} clip(s)")
        denoise = self._denoiser(cache_interval, [{"cond": c} for c in chain], scales)
        generator = self._generator(seed)
        bar = tqdm(desc=f"edit ({sampler})", unit="step", disable=not progress)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            out = edit(denoise, x0, strength=strength, schedule=self.schedule,
                       sampler=sampler, num_steps=steps, spacing=spacing, generator=generator,
                       callback=lambda info: bar.update(1), **sampler_options)
        bar.close()
        return Video(to_uint8(self._decode(out.float(), self.latent_frames(self.num_frames)).cpu()), fps=self.fps)

    def _generator(self, seed: Optional[int]) -> torch.Generator:
        """A generator on the device seeded with `seed` (0 .. MAX_SEED), or a fresh seed when None."""
        if seed is not None and (not is_int(seed) or not 0 <= seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")
        return torch.Generator(self.device).manual_seed(seed if seed is not None else torch.seed())

    def _check_memory(self, batch: int, frames: int, branches: int, what: str) -> None:
        """Refuse, before sampling, a network call on batch x branches clips of `frames` frames that cannot fit."""
        shown = f"{what}{f' x {branches} guidance branches' if branches > 1 else ''} x {frames} frames"
        check_activation_memory(self.model.config, batch * branches, frames, self.grid, self.grid, grad=False,
                                device=str(self.device), what=shown)

    def _denoiser(self, cache_interval: int, chain: list[dict], scales: list[float],
                  frames: Optional[FrameMask] = None):
        """The denoiser of one sampling run: the model (or a fresh StepCache around it: the cache is per run), guided
        over `chain`, with the given `frames` kept."""
        network = StepCache(self.model, cache_interval) if cache_interval != 1 else self.model
        return sampling_denoiser(network, self.schedule, prediction=self.diffusion.prediction,
                                 learned_variance=self.model.config.learned_variance, chain=chain, scales=scales,
                                 frames=frames, batch_guidance=self.batch_guidance,
                                 latent=self.autoencoder is not None)

    # ---- long videos: which windows, in which order ----

    def _latent_overlap(self, overlap: Optional[int], window: int, frames: int) -> int:
        """The latent frames consecutive windows share: `overlap` frames (a multiple of the temporal factor) or, by
        default, window // 4; checked when `frames` needs more than one window."""
        f = self.temporal_factor
        if overlap is None:
            return max(1, window // 4)
        if frames > window and (overlap % f or not 1 <= overlap // f < window):
            multiple = f"a multiple of {f} " if f > 1 else ""
            raise ValueError(f"overlap must be {multiple}in [{f}, {(window - 1) * f}] for a "
                             f"{latent_frame_span(window - 1, f).stop}-frame window, got {overlap}")
        return overlap // f

    @staticmethod
    def _plan(total: int, window: int, overlap: int, long_mode: str) -> list[tuple[int, int, tuple | range]]:
        """(start, length, frames to keep) per window; every frame of 0..total-1 is covered."""
        if total <= window:
            return [(0, total, range(total))]
        if long_mode == "sliding":
            starts = list(range(0, total - window, window - overlap)) + [total - window]
            return [(s, window, range(window)) for s in starts]
        hop = window - 1  # keyframes 0, hop, 2 hop, ...: each from the previous one, then the gaps
        keys = list(range(0, total - 1, hop))
        lengths = [min(window, total - k) for k in keys]
        first = [(k, n, (0, n - 1)) for k, n in zip(keys, lengths)]  # keep the two end frames only
        fill = [(k, n, range(n)) for k, n in zip(keys, lengths)]  # interpolation between known ends
        return first + fill

    def _window(self, known: dict, batch: int, start: int, length: int, *, conds, steps: int, sampler: str,
                spacing: str, generator: torch.Generator, bar, cache_interval: int = 1, frame_guidance: float = 1.0,
                **options) -> torch.Tensor:
        """Sample one window of `length` frames from `start`, with the frames already known kept exact (and, at
        frame_guidance != 1, guided towards them: a first branch without them, as the generation task sees none)."""
        c, hw = self.model.config.in_channels, (self.grid, self.grid)
        mask = torch.zeros(batch, length, device=self.device)
        given = torch.zeros(batch, c, length, *hw, device=self.device)
        for i in range(length):
            if start + i in known:
                mask[:, i], given[:, :, i] = 1, known[start + i].to(self.device)
        frames = FrameMask(mask=mask, frames=given)
        base = {"frames": frames} if self.model.config.frame_conditioning else {}
        chain, scales = conds  # with scales, classifier-free guidance: one more branch per guided condition
        chain = [{**base, "cond": _frames_of(c, start, length)} for c in chain]
        if frame_guidance != 1 and base and bool(mask.any()):
            unseen = FrameMask(mask=torch.zeros_like(mask), frames=torch.zeros_like(given))  # the generation task's
            chain, scales = [{"frames": unseen, "cond": chain[0]["cond"]}] + chain, [frame_guidance] + list(scales)
        guided_x0 = self._denoiser(cache_interval, chain, scales, frames)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            x0 = generate(guided_x0, (batch, c, length, *hw), schedule=self.schedule, sampler=sampler,
                          num_steps=steps, spacing=spacing, generator=generator, device=self.device,
                          callback=lambda info: bar.update(1), **options)
        return x0.float()

    # ---- adapters ----

    @property
    def base_sha256(self) -> str:
        """sha256 of the weights as loaded (adapters and added words left out): which base an adapter must fit."""
        if self._base_sha256 is None:
            self._base_sha256 = weights_sha256(self.model, self.conditioner)
        return self._base_sha256

    def load_adapter(self, path: str | Path, scale: float = 1.0, name: Optional[str] = None) -> str:
        """Add a LoRA adapter directory trained on this model (and its new caption words); returns its name.

        Several adapters may be loaded at once; each adds scale * its update. A directory trained on
        another base model is refused.
        """
        adapter = load_adapter_dir(path)
        if adapter.base_sha256 != self.base_sha256:
            raise ValueError(f"adapter {path} was trained on {adapter.base} (weights sha256 "
                             f"{adapter.base_sha256[:12]}...), not on this model (sha256 {self.base_sha256[:12]}...)")
        name = name or f"adapter{len(adapters(self.model))}"
        if name in adapters(self.model):
            raise ValueError(f"an adapter named {name!r} is already loaded; pass another name")
        if adapter.new_words:
            text = getattr(self.conditioner, "text", None)
            if not hasattr(text, "add_words"):
                raise ValueError(f"adapter {path} adds caption words, but this model has no GRU text encoder")
            text.add_words(adapter.new_words, adapter.embeddings)
        add_adapter(self.model, name, rank=adapter.rank, alpha=adapter.alpha, targets=adapter.targets)
        state = {k.rsplit(".", 2)[0] + f".lora.{name}." + ".".join(k.rsplit(".", 2)[1:]): v
                 for k, v in adapter.lora.items()}  # "<layer>.down.weight" -> "<layer>.lora.<name>.down.weight"
        missing = {k for k in self.model.state_dict() if f".lora.{name}." in k} - set(state)
        result = self.model.load_state_dict(state, strict=False)
        if missing or result.unexpected_keys:
            raise ValueError(f"adapter {path} does not fit this model: missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(result.unexpected_keys)[:3]}")
        self.model.requires_grad_(False)
        self.set_adapter_scale(name, scale)
        return name

    def set_adapter_scale(self, name: str, scale: float) -> None:
        """How strongly adapter `name` acts: 0 = off (the base exactly), 1 = as trained."""
        _check_scale("the adapter scale", scale)
        set_scale(self.model, name, scale)

    def merge_adapter(self, name: str) -> None:
        """Fold adapter `name` into the base weights at its scale (sampling runs at the base's speed again)."""
        merge(self.model, name)

    # ---- user inputs -> conditions ----

    def takes(self, name: str) -> bool:
        """Whether the model takes condition `name` ("text", "image", "audio", "trajectory")."""
        return self.conditioner is not None and name in self.conditioner.names

    def conditions(self, batch: int, num_frames: int, *, prompt=None, negative_prompt=None, image=None, audio=None,
                   trajectory=None, scales: Optional[dict] = None) -> tuple[list[Optional[Cond]], list[float]]:
        """The guidance chain for these inputs: Conds with none, then one more, ... of the given conditions, and scales.

        With every scale 1 and no negative prompt the chain is just [full Cond] and no scale: one model call.
        """
        scales = scales or {}
        given = {"text": prompt, "image": image, "audio": audio, "trajectory": trajectory}
        given = {k: v for k, v in given.items() if v is not None}
        if negative_prompt is not None and prompt is None:
            raise ValueError("negative_prompt needs a prompt")
        if given and self.conditioner is None:
            raise ValueError(f"this model takes no conditions, got {sorted(given)}; it was trained unconditioned")
        for name, scale in scales.items():
            _check_scale(f"the {name} guidance scale", scale)
            if name not in given and scale != 1:
                raise ValueError(f"a guidance scale for {name} ({scale}) but no {name} was given")
        parts = {name: self.conditioner.encode(name, self._cond_input(name, value, batch, num_frames))[0]
                 for name, value in given.items()}
        if not parts:
            return [None], []
        negative = None
        if negative_prompt is not None:
            negative = self.conditioner.encode("text", self._cond_input("text", negative_prompt, batch, num_frames))[0]
        names = list(parts)
        if negative is None and all(scales.get(n, 1.0) == 1 for n in names):
            return [Cond.cat(list(parts.values()))], []
        chain = [Cond.cat([negative]) if negative is not None else None]
        chain += [Cond.cat([parts[n] for n in names[: k + 1]]) for k in range(len(names))]
        return chain, [float(scales.get(n, 1.0)) for n in names]

    def _cond_input(self, name: str, value, batch: int, num_frames: int):
        """User input -> what the encoder takes: list[str] (B), image (B, C, H, W), log-mel (B, n_mels, S) or
        points (B, T, K, 2)."""
        if name == "text":
            return prompts(value, batch, getattr(self.conditioner.text, "tokenizer", None))
        if name == "trajectory":
            return trajectory_input(value, batch, num_frames).to(self.device)
        if name == "image":
            img = self._as_video(value, image=True)[:, :, 0]  # (B', C, H, W)
            return img.expand(batch, *img.shape[1:]) if img.shape[0] == 1 else img
        cfg = self.conditioner.config
        return audio_input(value, batch, num_frames, rate=self.audio_rate, fps=self.fps, n_mels=cfg.n_mels,
                           steps_per_frame=cfg.audio_steps_per_frame)

    def _encode_known(self, known: dict, total: int) -> dict:
        """Given frames {position: (B, C, H, W)} of a `total`-frame clip as the UNet takes them: a latent model's
        {latent frame: (B, Z, H', W')}, else as is (the rules: docs/latent.md).

        A latent frame is given when every frame it stands for is (`given_latent_frames`). The autoencoder
        is causal (latent frame j reads frames <= its last): the given ones from latent frame 0 on are
        encoded together as the clip they begin (as in training), any other alone. A last frame left over
        (interpolation's end when time is compressed) is held: its latent frame is a still clip's of it.
        """
        if self.autoencoder is None or not known:
            return known
        f = self.temporal_factor
        given = given_latent_frames(known, f)
        prefix = 0
        while prefix in given:
            prefix += 1
        out = {}
        if prefix:
            frames = range(latent_frame_span(prefix - 1, f).stop)  # the pixel frames of latent frames 0 .. prefix - 1
            latents = self.autoencoder.encode(torch.stack([known[p] for p in frames], dim=2).float())  # (B, Z, J, ...)
            out.update({j: latents[:, :, j] for j in range(prefix)})
        for j in given[prefix:]:
            out[j] = self._encode_alone([known[p] for p in latent_frame_span(j, f)])
        left = sorted(set(known) - {p for j in given for p in latent_frame_span(j, f)})
        if left == [total - 1]:
            out[self.latent_frames(total) - 1] = self._encode_alone([known[total - 1]] * f)
        elif left:
            raise ValueError(f"given frames {left} do not fill whole latent frames: at temporal factor {f} latent "
                             f"frame 0 is frame 0 and latent frame j covers frames {f}j - {f - 1} .. {f}j; give those "
                             "frames too, or fewer")
        return out

    def _encode_alone(self, group: list[torch.Tensor]) -> torch.Tensor:
        """The latent frame (B, Z, H', W') of a latent frame's frames [(B, C, H, W)] encoded without what came before:
        one frame as a one-frame clip, f > 1 frames behind a copy of their first (a clip starts with one frame)."""
        clip = torch.stack(group if len(group) == 1 else [group[0], *group], dim=2)  # (B, C, 1 or 1 + f, H, W)
        return self.autoencoder.encode(clip.float())[:, :, -1]

    def _decode(self, clip: torch.Tensor, chunk: int) -> torch.Tensor:
        """A sampled clip (B, C or Z, T, H, W) as pixels: a latent model decodes it `chunk` latent frames at a time."""
        if self.autoencoder is None:
            return clip
        return self.autoencoder.decode(clip, chunk=chunk, tile=self.decode_tile).float()

    def _known_frames(self, num_videos, context, context_frames, first_frame, last_frame):
        """{position: (B, C, H, W) frame} from the user's inputs (position -1 = the last frame), and B."""
        known, batch = known_frames(num_videos, size=self.size, channels=self.channels, window=self.num_frames,
                                    temporal_factor=self.temporal_factor,
                                    frame_conditioning=self.model.config.frame_conditioning,
                                    context=context, context_frames=context_frames, first_frame=first_frame,
                                    last_frame=last_frame)
        return {p: f.to(self.device) for p, f in known.items()}, batch

    def _as_video(self, x, image: bool = False) -> torch.Tensor:
        """A path, uint8 array or float tensor as float (B, C, T, H, W) at the model's size, on its device."""
        return as_video(x, size=self.size, channels=self.channels, image=image).to(self.device)
