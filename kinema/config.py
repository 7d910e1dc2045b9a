"""Typed configuration: one dataclass per component, YAML in, validation with clear errors.

Config files are parsed as data (yaml.safe_load) and never executed. Unknown keys are errors with a
"did you mean" hint; every field has a default, so a YAML file only names what it changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml

TASKS = ("generate", "predict", "interpolate", "animate", "random")  # frame tasks, see data/masks.py

# ---- components ----


@dataclass
class UNetConfig:
    """The space-time UNet."""

    in_channels: int = 1  # video channels (1 grayscale, 3 RGB)
    channels: int = 64  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level; H, W shrink 2x per level
    num_res_blocks: int = 2  # residual blocks per level on the way down
    spatial_attention_levels: tuple[int, ...] = (2,)  # levels (0 = full size) with spatial self-attention
    spacetime_attention_levels: tuple[int, ...] = ()  # of those, levels whose attention spans every frame of
    # the clip (each pixel attends to all pixels of all frames: an object is found wherever it moved)
    temporal_attention: bool = True  # temporal self-attention at every level
    head_dim: int = 32  # channels per attention head
    max_relative_position: int = 32  # relative frame offsets beyond this share one bias
    dropout: float = 0.0  # dropout inside residual blocks
    norm_groups: int = 8  # groups of the per-frame GroupNorm
    learned_variance: bool = False  # emit 2x channels: the prediction and the variance interpolation v
    frame_conditioning: bool = False  # also take the known frames and the frame mask as input channels
    frame_fill: str = "zero"  # what the known-frames channels hold at an unknown frame: "zero", or "nearest" (the
    # nearest given frame's pixels, the mask still 0): every frame to be made sees the given digit at its own place
    cond_dim: int = 0  # width D of condition tokens / vectors (text, image, audio); 0 = unconditional
    map_channels: int = 0  # condition maps laid beside the input frames (a trajectory's heatmap: 1); 0 = none
    patch_size: int = 1  # fold p x p pixels into channels at the stem: every level runs 1/p the size, ~1/p^2 FLOPs
    autoencoder: str = ""  # latent diffusion: an autoencoder model directory (kinema train-ae) or bundled name; the
    # UNet then runs on its latents (in_channels = its latent channels) and sampling decodes. "" = pixels

    def __post_init__(self):
        _check(self.cond_dim >= 0, "model.cond_dim", self.cond_dim, ">= 0 (0 = no conditions)")
        _check(self.map_channels >= 0, "model.map_channels", self.map_channels, ">= 0 (0 = no condition maps)")
        _check(isinstance(self.patch_size, int) and self.patch_size >= 1, "model.patch_size", self.patch_size,
               "an int >= 1 (1 = no patching)")
        self.channel_mult = tuple(self.channel_mult)
        self.spatial_attention_levels = tuple(self.spatial_attention_levels)
        self.spacetime_attention_levels = tuple(self.spacetime_attention_levels)
        _check(self.in_channels >= 1, "model.in_channels", self.in_channels, ">= 1")
        _check(self.channels >= 1, "model.channels", self.channels, ">= 1")
        _check(len(self.channel_mult) >= 1 and all(m >= 1 for m in self.channel_mult), "model.channel_mult",
               self.channel_mult, "a non-empty list of positive ints")
        _check(self.num_res_blocks >= 1, "model.num_res_blocks", self.num_res_blocks, ">= 1")
        _check(all(0 <= lv < len(self.channel_mult) for lv in self.spatial_attention_levels),
               "model.spatial_attention_levels", self.spatial_attention_levels,
               f"level indices in [0, {len(self.channel_mult) - 1}]")
        _check(set(self.spacetime_attention_levels) <= set(self.spatial_attention_levels),
               "model.spacetime_attention_levels", self.spacetime_attention_levels,
               f"a subset of model.spatial_attention_levels {list(self.spatial_attention_levels)}")
        _check(0 <= self.dropout < 1, "model.dropout", self.dropout, "in [0, 1)")
        _check(self.frame_fill in ("zero", "nearest"), "model.frame_fill", self.frame_fill, "zero, nearest")
        for m in self.channel_mult:
            width = self.channels * m
            _check(width % self.norm_groups == 0, "model.norm_groups", self.norm_groups,
                   f"a divisor of every level width (width {width} at mult {m})")
            _check(width % self.head_dim == 0, "model.head_dim", self.head_dim,
                   f"a divisor of every level width (width {width} at mult {m})")

    @property
    def out_channels(self) -> int:
        """Channels of the network output."""
        return self.in_channels * (2 if self.learned_variance else 1)

    @property
    def input_channels(self) -> int:
        """Channels the stem sees: the noisy video, known frames and the mask when frame-conditioned, condition maps."""
        return (2 * self.in_channels + 1 if self.frame_conditioning else self.in_channels) + self.map_channels

    @property
    def downsample_factor(self) -> int:
        """H and W must be divisible by this: the patch size times 2 per downsampling level."""
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)


@dataclass
class DiffusionConfig:
    """The noise schedule, the parameterization and the objective."""

    schedule: str = "cosine"  # "linear" (DDPM) or "cosine" (improved DDPM)
    num_steps: int = 1000  # training timesteps N
    shift: float = 1.0  # divide every SNR by shift**2: > 1 spends more of training and sampling at high noise
    frame_noise: float = 0.0  # share of the noise variance common to a clip's frames (PYoCo's mixed prior); 0 = none
    prediction: str = "v"  # what the network predicts: "eps", "v" or "x0" (v is well conditioned at high noise)
    loss: str = "simple"  # "simple" (MSE) or "hybrid" (MSE + L_vlb, needs model.learned_variance)

    def __post_init__(self):
        _check(self.schedule in ("linear", "cosine"), "diffusion.schedule", self.schedule, "linear, cosine")
        _check(math.isfinite(self.shift) and self.shift > 0, "diffusion.shift", self.shift, "a finite number > 0")
        _check(0 <= self.frame_noise < 1, "diffusion.frame_noise", self.frame_noise, "in [0, 1)")
        _check(self.num_steps >= 2, "diffusion.num_steps", self.num_steps, ">= 2")
        _check(self.schedule != "linear" or self.num_steps > 20, "diffusion.num_steps", self.num_steps,
               "> 20 for the linear schedule (its last beta is 20 / num_steps)")
        _check(self.prediction in ("eps", "v", "x0"), "diffusion.prediction", self.prediction, "eps, v, x0")
        _check(self.loss in ("simple", "hybrid"), "diffusion.loss", self.loss, "simple, hybrid")


@dataclass
class DataConfig:
    """Where training clips come from (the kinds: see kinema/data/datasets.py)."""

    kind: str = "moving-digits"  # "moving-digits", "natural" (built in), "folder", "ucf101", "kinetics400", "cache"
    root: str = ""  # folder / ucf101 / kinetics400: the videos' root directory; cache: the cache directory
    split_file: str = ""  # ucf101: trainlist0k.txt or testlist0k.txt (classInd.txt beside it); or under root
    annotations: str = ""  # kinetics400: the official CSV (label, youtube_id, time_start, time_end, split)
    split: str = ""  # kinetics400: keep only rows of this split ("train", "val", "test"; "" = all)
    size: int = 32  # frame height and width in pixels (video files: shorter side scaled, square cropped)
    num_frames: int = 16  # frames per clip
    frame_stride: int = 1  # video files: take every n-th source frame
    target_fps: Optional[float] = None  # video files: resample time to this frame rate instead of striding
    start: str = "random"  # video files: "random" clip start on every read, or "uniform" (fixed, evenly spread)
    clips_per_video: int = 1  # video files: items per video
    crop: str = "center"  # video files: "center" or "random" square crop
    flip: bool = False  # video files and cache: random left-right flip
    max_digits: int = 2  # moving-digits: up to this many digits per clip
    length: int = 10000  # moving-digits, natural: clips per (virtual) epoch
    inverted: float = 0.0  # moving-digits: share of clips drawn inverted (light square, dark digit), "..., inverted"
    zigzag: float = 0.0  # moving-digits: share of clips whose digits zigzag left or right, "digit 5 zigzagging right"
    lead_frames: int = 1  # moving-digits: steps the caption's direction holds from frame 0 before any bounce
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0  # data seed (moving-digits clips are a pure function of it and the index)
    audio: bool = False  # also yield each clip's audio track (mono, "audio": (A,))
    audio_rate: int = 16000  # audio sample rate in Hz

    def __post_init__(self):
        kinds = ("moving-digits", "natural", "folder", "ucf101", "kinetics400", "cache")
        _check(self.kind in kinds, "data.kind", self.kind, ", ".join(kinds))
        _check(self.kind in ("moving-digits", "natural") or bool(self.root), "data.root", self.root,
               f"a directory for data.kind {self.kind!r}")
        _check(self.kind != "ucf101" or bool(self.split_file), "data.split_file", self.split_file,
               "a trainlist0k.txt / testlist0k.txt path for data.kind 'ucf101'")
        _check(self.kind != "kinetics400" or bool(self.annotations), "data.annotations", self.annotations,
               "the annotations CSV for data.kind 'kinetics400'")
        _check(self.size >= 8, "data.size", self.size, ">= 8")
        _check(self.num_frames >= 1, "data.num_frames", self.num_frames, ">= 1")
        _check(self.frame_stride >= 1, "data.frame_stride", self.frame_stride, ">= 1")
        _check(self.target_fps is None or self.target_fps > 0, "data.target_fps", self.target_fps, "> 0 or null")
        _check(self.start in ("random", "uniform"), "data.start", self.start, "random, uniform")
        _check(self.clips_per_video >= 1, "data.clips_per_video", self.clips_per_video, ">= 1")
        _check(self.crop in ("center", "random"), "data.crop", self.crop, "center, random")
        _check(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        _check(self.audio_rate >= 1000, "data.audio_rate", self.audio_rate, ">= 1000")


@dataclass
class MaskMixture:
    """How often training sees each frame task (rates are normalised); used when model.frame_conditioning."""

    generate: float = 0.25  # no frame given
    predict: float = 0.3  # the first k frames given, k uniform in [1, max_context]
    interpolate: float = 0.2  # first and last frame given
    animate: float = 0.15  # first frame given
    random: float = 0.1  # each frame given with probability random_p
    max_context: int = 8  # largest k for predict (clipped to num_frames - 1)
    random_p: float = 0.3  # per-frame probability for the random task

    def __post_init__(self):
        rates = self.rates()
        if any(r < 0 for r in rates) or sum(rates) <= 0:
            raise ValueError(f"masks: rates must be >= 0 and not all 0, got {dict(zip(TASKS, rates))}")
        if self.max_context < 1:
            raise ValueError(f"masks.max_context must be >= 1, got {self.max_context}")
        if not 0 <= self.random_p <= 1:
            raise ValueError(f"masks.random_p must be in [0, 1], got {self.random_p}")

    def rates(self) -> list[float]:
        """The rate of each task in TASKS order."""
        return [getattr(self, task) for task in TASKS]


TEXT_ENCODERS = ("none", "gru", "minilm")
TRAJECTORY_ENCODINGS = ("none", "heatmap", "vector", "both")
TRACKED_KINDS = ("moving-digits",)  # data kinds whose clips carry each object's true position per frame


@dataclass
class CondConfig:
    """Which conditions the model takes and how often training drops each (classifier-free guidance)."""

    text: str = "none"  # "none", "gru" (vocabulary from the captions, trained jointly) or "minilm" (frozen)
    image: bool = False  # a global embedding of a reference frame (conv encoder with a KL term)
    audio: bool = False  # frame-aligned audio features (log-mel -> conv1d + GRU), needs data.audio
    trajectory: str = "none"  # each object's position per frame: "heatmap" (a map beside the input frames, needs
    # model.map_channels 1), "vector" (frame-aligned vectors, as the audio), "both" or "none"
    max_tokens: int = 16  # text tokens kept; longer prompts are truncated with a warning
    drop_text: float = 0.1  # probability a clip's caption is dropped in training
    drop_image: float = 0.1  # probability a clip's reference image is dropped in training
    drop_audio: float = 0.1  # probability a clip's audio is dropped in training
    drop_trajectory: float = 0.3  # probability a clip's trajectory is dropped in training
    drop_all: float = 0.0  # probability every condition of a clip is dropped together, on top of the drops above:
    # more clips train the unconditional branch (with independent drops of 0.1 / 0.6 / 0.8 only 5 % of clips have none)
    drop_text_with_frames: Optional[float] = None  # drop_text for clips with given frames (prediction, ...);
    # higher makes the model read the digit and the motion from the frames, not the caption (None = drop_text)
    drop_image_with_frames: Optional[float] = None  # drop_image for clips with given frames: low keeps the first
    # frame as a reference every frame sees (sampling passes the first given frame when no image is given)
    kl_weight: float = 1e-4  # weight of the image latent's KL to N(0, I); at 1e-4 the bundled model's collapsed
    image_latent: int = 16  # width of the image encoder's latent
    identity_weight: float = 0.0  # > 0: a contrastive term (encoders.identity_loss) that makes the image latent
    # of a clip's first frame pick out another frame of the same clip in the batch: what stays the same as things move;
    # the network then sees the latent's mean in training, not a draw (whose noise hides the identity)
    caption_weight: float = 0.0  # > 0: a CLIP-style term (encoders.caption_loss) that makes the image latent of a
    # clip's first frame pick out the clip's caption in the batch: what the caption says (which digit) the first frame
    # must say too; needs cond.text and cond.image; the network then sees the latent's mean, as with identity_weight
    n_mels: int = 32  # mel bands of the audio features
    audio_steps_per_frame: int = 4  # audio feature columns per video frame (before the encoder pools them)
    trajectory_objects: int = 2  # objects a "vector" trajectory has a slot for (a heatmap takes any number)
    trajectory_sigma: float = 0.05  # width of a heatmap's blob, as a share of the frame side
    trajectory_flow: str = ""  # clips without true tracks (videos): a flow model (kinema train-flow, or
    # "flow-moving-digits") whose forward flow each clip's main motion is followed through, in training

    def __post_init__(self):
        _check(self.text in TEXT_ENCODERS, "cond.text", self.text, ", ".join(TEXT_ENCODERS))
        _check(self.max_tokens >= 1, "cond.max_tokens", self.max_tokens, ">= 1")
        _check(self.trajectory in TRAJECTORY_ENCODINGS, "cond.trajectory", self.trajectory,
               ", ".join(TRAJECTORY_ENCODINGS))
        _check(self.trajectory_objects >= 1, "cond.trajectory_objects", self.trajectory_objects, ">= 1")
        _check(0 < self.trajectory_sigma <= 1, "cond.trajectory_sigma", self.trajectory_sigma, "in (0, 1]")
        for name in ("drop_text", "drop_image", "drop_audio", "drop_trajectory", "drop_all"):
            _check(0 <= getattr(self, name) <= 1, f"cond.{name}", getattr(self, name), "in [0, 1]")
        for name in ("drop_text_with_frames", "drop_image_with_frames"):
            rate = getattr(self, name)
            _check(rate is None or 0 <= rate <= 1, f"cond.{name}", rate, f"in [0, 1] or null (= {name[:-12]})")
        _check(self.kl_weight >= 0, "cond.kl_weight", self.kl_weight, ">= 0")
        _check(self.image_latent >= 1, "cond.image_latent", self.image_latent, ">= 1")
        _check(self.identity_weight >= 0, "cond.identity_weight", self.identity_weight, ">= 0")
        _check(self.identity_weight == 0 or self.image, "cond.identity_weight", self.identity_weight,
               "0 without cond.image (it trains the image encoder)")
        _check(self.caption_weight >= 0, "cond.caption_weight", self.caption_weight, ">= 0")
        _check(self.caption_weight == 0 or (self.image and self.text != "none"), "cond.caption_weight",
               self.caption_weight, "0 without both cond.image and cond.text (it pairs first frames with captions)")
        _check(self.n_mels >= 4, "cond.n_mels", self.n_mels, ">= 4")
        _check(self.audio_steps_per_frame >= 1, "cond.audio_steps_per_frame", self.audio_steps_per_frame, ">= 1")

    def drop_rate(self, name: str, given_frames: bool) -> float:
        """How often training drops condition `name` (text, image, ...) of a clip with or without given frames."""
        with_frames = getattr(self, f"drop_{name}_with_frames", None)
        return getattr(self, f"drop_{name}") if not given_frames or with_frames is None else with_frames

    @property
    def image_mean(self) -> bool:
        """Whether training hands the network the image latent's mean rather than a draw: with a term that teaches
        the latent what the clip shows (identity_weight, caption_weight), a draw's noise would hide it."""
        return self.identity_weight > 0 or self.caption_weight > 0

    @property
    def enabled(self) -> bool:
        """Whether any condition is on."""
        return self.text != "none" or self.image or self.audio or self.trajectory != "none"

    @property
    def map_channels(self) -> int:
        """Channels of condition maps the network must take beside its input frames."""
        return int(self.trajectory in ("heatmap", "both"))


# cond keys that change how training draws and weighs, not the network: a resumed run or a fine-tune may change them
COND_TRAINING_KEYS = tuple(f"cond.{k}" for k in ("drop_text", "drop_image", "drop_audio", "drop_trajectory",
                                                 "drop_text_with_frames", "drop_image_with_frames", "kl_weight",
                                                 "identity_weight", "caption_weight", "trajectory_flow"))


@dataclass
class FlowConfig:
    """The optical-flow network (models/flow.py): a pyramid of conv estimators."""

    in_channels: int = 1  # frame channels (1 grey, 3 RGB)
    width: int = 32  # channels of each level's estimator
    levels: int = 3  # pyramid levels; the coarsest sees frames 2^(levels-1) times smaller

    def __post_init__(self):
        for name in ("in_channels", "width", "levels"):
            _check(getattr(self, name) >= 1, f"flow.{name}", getattr(self, name), ">= 1")


@dataclass
class FlowTrainConfig:
    """Self-supervised training of the flow network on frame pairs (`kinema train-flow`)."""

    steps: int = 1500  # optimizer steps
    batch_size: int = 32  # frame pairs per step
    lr: float = 1e-3  # peak Adam learning rate (cosine decay to 0)
    smooth_weight: float = 0.05  # edge-aware smoothness
    consistency_weight: float = 0.01  # forward-backward consistency
    precision: str = "auto"  # "auto" (bf16 autocast where the CPU has AMX / AVX-512-BF16), "bf16" or "no"
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            _check(getattr(self, name) >= 1, f"flow_train.{name}", getattr(self, name), ">= 1")
        _check(self.lr > 0, "flow_train.lr", self.lr, "> 0")
        for name in ("smooth_weight", "consistency_weight"):
            _check(getattr(self, name) >= 0, f"flow_train.{name}", getattr(self, name), ">= 0")
        _check(self.precision in ("auto", "bf16", "no"), "flow_train.precision", self.precision, "auto, bf16, no")


@dataclass
class TemporalConfig:
    """Flow and cycle-consistency losses on the predicted clean video (training/temporal_losses.py); off at 0."""

    flow_weight: float = 0.0  # lambda_f
    cycle_weight: float = 0.0  # lambda_c
    flow_model: str = "flow-moving-digits"  # a flow model directory, or the name of a bundled one
    weighting: str = "alpha_bar"  # per-clip weight by noise level: "alpha_bar" (signal fraction) or "none"

    def __post_init__(self):
        for name in ("flow_weight", "cycle_weight"):
            _check(getattr(self, name) >= 0, f"temporal.{name}", getattr(self, name), ">= 0")
        _check(self.weighting in ("alpha_bar", "none"), "temporal.weighting", self.weighting, "alpha_bar, none")

    @property
    def enabled(self) -> bool:
        """True when either loss has a non-zero weight."""
        return self.flow_weight > 0 or self.cycle_weight > 0


@dataclass
class TrainConfig:
    """The optimisation and its cadences."""

    steps: int = 2000  # optimizer steps in total
    batch_size: int = 8  # clips per optimizer step (per process, before accumulation)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    lr: float = 2e-4  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # linear LR warm-up
    lr_decay: str = "none"  # after the warm-up: "none" (the peak LR to the end) or "cosine" (to 0 at train.steps)
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    ema_decay: float = 0.999  # EMA decay after its warm-up
    mixed_precision: str = "auto"  # "auto" (bf16 where the hardware has it), "bf16" or "no"
    compile: bool = False  # torch.compile the UNet (inductor): the first steps compile, later ones run faster
    gradient_checkpointing: bool = False  # recompute each UNet block in backward: less memory, ~1/3 more compute
    recompute_activations: bool = False  # recompute norm-SiLU-FiLM and temporal attention in backward: less
    # activation memory for more time (benchmarks/results/train_step-recompute.md: ~40 % / ~8 % before the fused norm)
    seed: int = 0  # seed of weights, noise and timesteps
    log_every: int = 10  # steps between metrics.jsonl lines
    sample_every: int = 500  # steps between sample grids (0 = off)
    checkpoint_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 3  # how many checkpoints to keep
    sample_steps: int = 25  # DDIM steps for the periodic sample grid
    num_samples: int = 4  # clips in the periodic sample grid
    max_bad_steps: int = 10  # stop after this many steps in a row with a NaN / Inf loss or gradient (each skipped)

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "log_every", "keep_checkpoints", "sample_steps",
                     "num_samples", "checkpoint_every", "max_bad_steps"):
            _check(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), ">= 1")
        _check(self.lr > 0, "train.lr", self.lr, "> 0")
        _check(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "in [0, 1)")
        _check(self.mixed_precision in ("auto", "bf16", "no"), "train.mixed_precision", self.mixed_precision,
               "auto, bf16, no")
        _check(self.lr_decay in ("none", "cosine"), "train.lr_decay", self.lr_decay, "none, cosine")


LORA_TARGETS = ("attention", "conv", "temporal", "film")


@dataclass
class AutoencoderConfig:
    """The video autoencoder (models/autoencoder.py): pixels <-> a latent grid diffusion can run on."""

    in_channels: int = 1  # video channels (1 grayscale, 3 RGB)
    latent_channels: int = 4  # channels of the latent
    spatial_factor: int = 4  # H and W shrink this much (4 or 8)
    temporal_factor: int = 1  # frames shrink this much (1, 2 or 4); the first frame is encoded alone (causal)
    channels: int = 32  # width of the first level; each downsampling doubles it, up to 4x
    num_res_blocks: int = 1  # residual blocks per level
    norm_groups: int = 8  # groups of the per-frame GroupNorm
    variational: bool = True  # a Gaussian latent (mean, log variance) with a KL term; False = a plain latent
    shortcut: bool = False  # also a linear path each way: each frame's spatial_factor^2 pixel squares folded into
    # channels -> a 1x1 convolution -> the latent mean, and back; the convolutional networks learn what it misses

    def __post_init__(self):
        _check(self.in_channels >= 1, "autoencoder.in_channels", self.in_channels, ">= 1")
        _check(not self.shortcut or self.temporal_factor == 1, "autoencoder.shortcut", self.shortcut,
               f"false at temporal_factor {self.temporal_factor} (the linear path maps frames one to one)")
        _check(self.latent_channels >= 1, "autoencoder.latent_channels", self.latent_channels, ">= 1")
        _check(self.spatial_factor in (4, 8), "autoencoder.spatial_factor", self.spatial_factor, "4 or 8")
        _check(self.temporal_factor in (1, 2, 4), "autoencoder.temporal_factor", self.temporal_factor, "1, 2 or 4")
        _check(self.channels >= 1, "autoencoder.channels", self.channels, ">= 1")
        _check(self.num_res_blocks >= 1, "autoencoder.num_res_blocks", self.num_res_blocks, ">= 1")
        for width in self.widths:
            _check(width % self.norm_groups == 0, "autoencoder.norm_groups", self.norm_groups,
                   f"a divisor of every level width {list(self.widths)}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels per level, full size first: one level per halving of H and W, and the deepest."""
        levels = self.spatial_factor.bit_length()  # 4 -> 3 levels, 8 -> 4
        return tuple(self.channels * min(2 ** i, 4) for i in range(levels))

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of `frames` frames: 1 + (frames - 1) / temporal_factor."""
        f = self.temporal_factor
        if frames < 1 or (frames - 1) % f:
            below = 1 + max(frames - 1, 0) // f * f
            raise ValueError(f"a clip for temporal factor {f} has 1 + a multiple of {f} frames (the first is encoded "
                             f"alone), got {frames}; {below} or {below + f} fit")
        return 1 + (frames - 1) // self.temporal_factor


@dataclass
class AutoencoderLossConfig:
    """What `kinema train-ae` minimises: reconstruction, the latent's KL and, given LPIPS weights, a perceptual term."""

    reconstruction: str = "l1"  # "l1" or "l2" per pixel
    kl_weight: float = 1e-6  # of the Gaussian latent's KL to N(0, I) (mean over clips of the sum over elements)
    lpips_weight: float = 0.0  # > 0 adds LPIPS (the network at lpips_path) of every frame
    lpips_path: str = ""  # an LPIPS (AlexNet) state dict, the one `kinema eval --lpips` loads
    stats_clips: int = 64  # training clips the latent's shift and scale are measured on at each save
    disc_weight: float = 0.0  # > 0: a per-frame patch discriminator (hinge loss) against blurry reconstructions
    disc_start: int = 0  # steps of reconstruction alone before the discriminator joins
    latent_noise: float = 0.0  # > 0: the decoder also learns from latents with Gaussian noise of std uniform in
    # [0, latent_noise] latent stds per clip, so a diffusion model's imperfect latents decode cleanly
    decoder_only: bool = False  # train the decoder alone, the encoder and the latent's shift and scale kept as
    # finetune.init_from has them: a latent model trained on that autoencoder still fits the result

    def __post_init__(self):
        _check(self.reconstruction in ("l1", "l2"), "ae_loss.reconstruction", self.reconstruction, "l1, l2")
        _check(self.kl_weight >= 0, "ae_loss.kl_weight", self.kl_weight, ">= 0")
        _check(self.lpips_weight >= 0, "ae_loss.lpips_weight", self.lpips_weight, ">= 0")
        _check(self.lpips_weight == 0 or bool(self.lpips_path), "ae_loss.lpips_path", self.lpips_path,
               "an LPIPS weights file when ae_loss.lpips_weight > 0")
        _check(self.stats_clips >= 1, "ae_loss.stats_clips", self.stats_clips, ">= 1")
        _check(self.disc_weight >= 0, "ae_loss.disc_weight", self.disc_weight, ">= 0")
        _check(self.disc_start >= 0, "ae_loss.disc_start", self.disc_start, ">= 0")
        _check(self.latent_noise >= 0, "ae_loss.latent_noise", self.latent_noise, ">= 0")


@dataclass
class FinetuneConfig:
    """Start from a trained model: all its weights, or low-rank adapters on a frozen base (LoRA)."""

    init_from: Optional[str] = None  # model directory or bundled name; its model / diffusion / cond sections rule
    lora_rank: int = 0  # 0: train every weight; r >= 1: train rank-r adapters only, the base frozen
    lora_alpha: Optional[float] = None  # the adapters' update is scaled by alpha / rank (None = rank)
    lora_targets: tuple[str, ...] = ("attention", "conv", "film")  # layers with adapters: attention, conv
    # (per-frame 3x3), temporal (convolutions across frames), film (step / condition modulation)

    def __post_init__(self):
        _check(is_int(self.lora_rank) and self.lora_rank >= 0, "finetune.lora_rank", self.lora_rank,
               "an integer >= 0 (0 = train every weight)")
        _check(self.lora_alpha is None or self.lora_alpha > 0, "finetune.lora_alpha", self.lora_alpha,
               "> 0 or null (= lora_rank)")
        bad = sorted(set(self.lora_targets) - set(LORA_TARGETS))
        _check(bool(self.lora_targets) and not bad, "finetune.lora_targets", list(self.lora_targets),
               f"a non-empty list of {', '.join(LORA_TARGETS)}")
        _check(self.lora_rank == 0 or self.init_from is not None, "finetune.lora_rank", self.lora_rank,
               "0 unless finetune.init_from names the base model the adapters are trained on")


@dataclass
class Config:
    """A whole run: model, diffusion, data and training."""

    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    masks: MaskMixture = field(default_factory=MaskMixture)
    cond: CondConfig = field(default_factory=CondConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)  # kinema train-ae
    ae_loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)  # kinema train-ae

    def __post_init__(self):
        if self.cond.enabled and self.model.cond_dim < 1:
            raise ValueError("conditions are on (cond.text / image / audio / trajectory) but model.cond_dim is 0; "
                             "set model.cond_dim, e.g. 128")
        if self.model.map_channels == 0:  # the conditions decide the stem's map channels unless set
            self.model.map_channels = self.cond.map_channels
        if self.model.map_channels != self.cond.map_channels:
            raise ValueError(f"cond.trajectory {self.cond.trajectory!r} lays {self.cond.map_channels} map channel(s) "
                             f"beside the frames, but model.map_channels is {self.model.map_channels}: set it to "
                             f"{self.cond.map_channels}")
        if self.cond.trajectory != "none" and self.data.kind not in TRACKED_KINDS and not self.cond.trajectory_flow:
            raise ValueError(f"cond.trajectory needs clips with tracks: data.kind {self.data.kind!r} has none "
                             f"(kinds with tracks: {', '.join(TRACKED_KINDS)}); set cond.trajectory_flow to a flow "
                             "model to follow each clip's main motion instead")
        if self.cond.audio and not self.data.audio:
            raise ValueError("cond.audio needs data.audio: true (the clips' audio tracks)")
        if self.diffusion.loss == "hybrid" and not self.model.learned_variance:
            raise ValueError("diffusion.loss 'hybrid' needs model.learned_variance: true")
        latent = bool(self.model.autoencoder)  # channels and sizes are the autoencoder's: checked when it is loaded
        if self.data.kind != "moving-digits" and self.model.in_channels != 3 and not latent:
            raise ValueError(f"data.kind {self.data.kind!r} yields RGB clips: set model.in_channels to 3, "
                             f"got {self.model.in_channels}")
        f = self.model.downsample_factor
        if self.data.size % f and not latent:
            raise ValueError(f"data.size {self.data.size} is not divisible by {f} "
                             f"(model.patch_size {self.model.patch_size} x 2^(levels-1) for model.channel_mult "
                             f"{self.model.channel_mult})")


def resolve_precision(setting: str, device_type: str) -> str:
    """Turn "auto" into "bf16" where the hardware computes it natively (AMX / AVX-512-BF16, bf16 GPUs), else "no"."""
    if setting != "auto":
        _check(setting in ("bf16", "no"), "mixed_precision", setting, "auto, bf16, no")
        return setting
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return "bf16" if any(getattr(cpu, name, lambda: False)() for name in probes) else "no"


# ---- reading and writing ----


def yaml_error(err: Exception) -> str:
    """A YAML parse error as one line: the problem and where (line, column)."""
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if problem is None:
        return " ".join(str(err).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def is_int(value: Any) -> bool:
    """A real int: not a bool, not a float, not a string of digits."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key} = {value!r} is invalid; expected {allowed}")


def from_dict(cls, data: Optional[dict], prefix: str = ""):
    """Build dataclass `cls` from a plain dict, recursing into nested configs; unknown keys are errors."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}: {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ValueError(f"unknown config key {prefix + str(key)!r}{hint}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key)
    return cls(**kwargs)


def _coerce(value: Any, hint, key: str):
    """Check a scalar or tuple against its type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, typing.get_args(hint)[0], key) for v in value)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, [a for a in typing.get_args(hint) if a is not type(None)][0], key)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ValueError(f"{key} must be {hint.__name__}, got {type(value).__name__}: {value!r}")
    return value


def to_dict(config) -> dict:
    """A dataclass config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_config(path: Optional[str | Path] = None, overrides: Optional[dict] = None) -> Config:
    """Read a YAML run config (or the defaults when `path` is None), apply `overrides`, validate.

    An autoencoder run (an `autoencoder` section, no `model.in_channels`) feeds clips of the autoencoder's
    channels: model.in_channels follows autoencoder.in_channels, so the data checks see the right count.
    """
    raw = read_config(path, overrides)
    model, ae = raw.get("model") or {}, raw.get("autoencoder")
    if isinstance(ae, dict) and isinstance(model, dict) and "in_channels" not in model:
        raw["model"] = {**model, "in_channels": ae.get("in_channels", AutoencoderConfig.in_channels)}
    return from_dict(Config, raw)


def config_differences(saved: dict, config: dict, sections: tuple[str, ...], ignore: tuple[str, ...] = ()) -> list[str]:
    """`section.key: saved -> config` for each value of `sections`, but the dotted keys in `ignore`, where two
    configs (as plain dicts) disagree."""
    out = []
    for section in sections:
        a, b = saved.get(section) or {}, config.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and f"{section}.{key}" not in ignore:
                out.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def parse_override(text: str) -> tuple[str, object]:
    """`section.key=value` with the value parsed as YAML data (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"--set expects section.key=value, got {text!r}")
    try:
        parsed = yaml.load(value, Loader=_ConfigLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {text!r}: the value is not valid YAML: {yaml_error(err)}") from err
    if isinstance(parsed, bool) and value.strip().lower() not in ("true", "false"):
        return key, value  # YAML 1.1 reads no / off / yes / on as booleans; keep the word (e.g. mixed_precision=no)
    if isinstance(parsed, str):
        try:
            return key, float(parsed)  # YAML 1.1 wants a dot in floats: 1e-3 would stay a string
        except ValueError:
            pass
    return key, parsed


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader that also reads 1e-6 (no dot: a string to YAML 1.1) as a float, as people write it."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_config(path: Optional[str | Path] = None, overrides: Optional[dict] = None) -> dict:
    """A YAML run config as plain sections (data only, no tags), with dotted `overrides` applied; not validated."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            text = path.read_text()
            # data only: tags such as !!python/object are refused; JSON (a run's config.json) read as JSON
            data = (json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_ConfigLoader)) or {}
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        except yaml.YAMLError as err:
            raise ValueError(f"{path} is not valid YAML data: {yaml_error(err)}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must be a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if data.get(section) is None:  # an empty YAML section ("model:") reads as None
            data[section] = {}
        data[section][key] = value
    return data
