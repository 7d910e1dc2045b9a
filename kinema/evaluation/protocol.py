"""What `kinema eval` measures against: the protocol (every choice that moves a figure) and the real clips.

FVD numbers are known not to reproduce across papers: they move with the feature network's weights,
the resolution, the clip count and whether given (conditioning) frames are counted. `EvalProtocol`
holds every such choice and the report records it beside the figures; `real_clips` draws the real
side through the training data's own `DataConfig -> dataset_options`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import DataConfig
from ..data import SAMPLING_TASKS, build_dataset, dataset_options, task_mask, to_tensor, to_uint8
from ..data.datasets import MovingDigits, digit_pitch

CONDITIONS = ("text", "image", "audio", "trajectory")  # from each real clip: caption, first frame, sound, track
COUNT_FRAMES = ("all", "generated")
# ---- the protocol ----


@dataclass
class EvalProtocol:
    model: str  # the model directory evaluated
    data: dict  # the real clips: kind and the data set's options (split, seed, size, frames, ...)
    task: str = "generate"  # generate | predict | interpolate | animate
    num_clips: int = 256  # real clips, and generated clips per step count
    draws: int = 1  # samples per real clip (tasks with a target): mean over them and best of them
    context_frames: int = 4  # predict: the first k frames are given
    conditions: tuple[str, ...] = ()  # what each real clip lends as condition: text, image, audio
    guidance: float = 1.0  # classifier-free guidance scale of every given condition
    sampler: str = "ddim"  # a name of kinema.diffusion.SAMPLERS
    steps: tuple[int, ...] = (25,)  # sampler steps; one full evaluation per entry
    spacing: Optional[str] = None  # timestep spacing; None = the pipeline's default for the sampler
    eta: Optional[float] = None  # ddim / dpmpp_2m_sde noise; None = the sampler's default
    cache_interval: int = 1  # n > 1: the full network every n-th step, its top level in between (feature caching)
    seed: int = 0  # batch b of draw d is sampled with seed + 1000 d + b
    batch_size: int = 8  # clips per sampler call (the noise drawn depends on it); 8 is faster per clip on CPU
    count_frames: str = "all"  # distribution metrics on all frames or only on the generated ones
    precision: str = "auto"  # the pipeline's precision setting (bf16 autocast where native)
    frame_reference: bool = False  # the given frame 0 is also the reference image (a model with an image encoder)
    frame_guidance: float = 1.0  # classifier-free guidance scale of the given frames (tasks that give frames)

    def __post_init__(self):
        if self.task not in SAMPLING_TASKS:
            raise ValueError(f"task must be one of {SAMPLING_TASKS}, got {self.task!r}")
        if self.count_frames not in COUNT_FRAMES:
            raise ValueError(f"count_frames must be one of {COUNT_FRAMES}, got {self.count_frames!r}")
        unknown = sorted(set(self.conditions) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; choose from {CONDITIONS}")
        if self.num_clips < 2 or self.batch_size < 1 or self.draws < 1:
            raise ValueError(f"need num_clips >= 2, batch_size >= 1 and draws >= 1, got {self.num_clips}, "
                             f"{self.batch_size}, {self.draws}")
        if self.draws > 1 and self.task == "generate":
            raise ValueError(f"draws={self.draws}: several draws per clip need a task with a target "
                             f"(predict, interpolate, animate), not generate")
        if not isinstance(self.cache_interval, int) or self.cache_interval < 1:
            raise ValueError(f"cache_interval must be a positive integer, got {self.cache_interval!r}")
        if self.frame_guidance != 1 and self.task == "generate":
            raise ValueError(f"frame_guidance={self.frame_guidance} needs a task that gives frames "
                             f"(predict, interpolate, animate), not generate")
        if not self.steps or min(self.steps) < 1:
            raise ValueError(f"steps must be one or more positive counts, got {self.steps}")
        if self.num_clips // self.batch_size >= 1000:
            raise ValueError(f"{self.num_clips} clips in batches of {self.batch_size} overrun the seed plan "
                             f"(seed + 1000 draw + batch); use larger batches")

    @property
    def num_frames(self) -> int:
        return int(self.data["num_frames"])

    def known(self) -> torch.Tensor:
        """(T,) bool: the frames the task gives (copied from the real clip) rather than generates."""
        return task_mask(self.task, self.num_frames, self.context_frames).bool()

    def counted(self) -> torch.Tensor:
        """(T,) bool: the frames the distribution metrics see."""
        return torch.ones(self.num_frames, dtype=torch.bool) if self.count_frames == "all" else ~self.known()

    def record(self) -> dict:
        """Every choice as plain JSON data, with the frames each metric counts spelled out."""
        out = asdict(self)
        out["steps"], out["conditions"] = list(self.steps), list(self.conditions)
        known = self.known()
        out["frames"] = {
            "per_clip": self.num_frames, "size": self.data.get("size"),
            "given": torch.nonzero(known).flatten().tolist(),
            "generated": torch.nonzero(~known).flatten().tolist(),  # what frame metrics count (given a target)
            "distribution_metrics_count": torch.nonzero(self.counted()).flatten().tolist(),
        }
        out["seed_plan"] = "batch b of draw d: seed + 1000 d + b; real clips: data.seed; KID subsets: seed"
        return out


def data_spec(kind: str, *, size: int, num_frames: int, num: int, seed: int = 123, root: Optional[str] = None,
              audio: bool = False, audio_rate: int = 16000, fps: float = 8.0) -> dict:
    """The real clips' description: build_dataset keywords plus "kind", through the training data's own
    `DataConfig` -> `dataset_options` (moving digits: held-out digits, one each; videos: fixed clip starts)."""
    if audio and kind != "moving-digits":
        raise ValueError(f"audio conditions come from moving-digits data only, not from {kind!r}")
    try:
        config = DataConfig(kind=kind, root=str(root or ""), size=size, num_frames=num_frames, max_digits=1,
                            length=num, seed=seed, audio=audio, audio_rate=audio_rate, start="uniform")
    except ValueError as err:
        raise ValueError(f"the real clips: {err}") from err
    spec = {"kind": kind, **dataset_options(config, split="test")}
    return {**spec, "fps": fps} if audio else spec


# ---- real clips ----


def real_clips(spec: dict, num: int) -> dict:
    """The first `num` clips of the data set in `spec`, on the uint8 grid as generated clips are.

    {"video": (N, C, T, H, W), "caption": [N], "audio": (N, A)?, "digit" / "direction": (N,), "pitch": (N, T) Hz
    and "trajectory": (N, T, 1, 2) normalised (x, y) for moving digits}
    """
    options = {k: v for k, v in spec.items() if k != "kind"}
    ds = build_dataset(spec["kind"], **options)
    if len(ds) < num:
        raise ValueError(f"the {spec['kind']} data has {len(ds)} clips, fewer than the {num} asked for")
    items = [ds[i] for i in tqdm(range(num), desc="real clips", unit="clip", leave=False)]
    video = to_tensor(to_uint8(torch.stack([it["video"] for it in items])))  # (N, C, T, H, W), uint8 levels
    out = {"video": video, "caption": [it.get("caption", "") for it in items]}
    if "audio" in items[0]:
        out["audio"] = torch.stack([it["audio"] for it in items])  # (N, A)
    if isinstance(ds, MovingDigits):
        labels = torch.stack([it["labels"][0] for it in items])  # (N, 2): digit, direction of the one digit
        out["digit"], out["direction"] = labels[:, 0], labels[:, 1]
        out["trajectory"] = torch.stack([it["trajectory"][:, :1] for it in items])  # (N, T, 1, 2): the one digit
        room = ds.config.size - ds.config.digit_size
        out["pitch"] = torch.from_numpy(np.stack([digit_pitch(ds.tracks(i)[0].positions.astype(np.float64), room)
                                                  for i in range(num)]))  # (N, T)
    return out


def rows_of(real: dict, start: int, stop: int) -> dict:
    """Items start .. stop - 1 of every per-clip field of `real`."""
    return {k: v[start:stop] for k, v in real.items() if isinstance(v, (torch.Tensor, list))}
