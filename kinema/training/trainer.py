"""Trainer: builds the parts in named helpers, takes one-screen optimizer steps, and runs the cadences.

Runs unchanged on one CPU, one GPU or many processes under `accelerate launch`: Accelerate
wraps the model (DDP, autocast) and each process draws its own batches.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from einops import rearrange
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import COND_TRAINING_KEYS, Config, config_differences, resolve_precision, to_dict
from ..data import build_dataset, dataset_options, draw_masks, make_grid, to_uint8, write_video
from ..data.audio import audio_features
from ..diffusion import generate, make_schedule, sampling_denoiser, training_loss
from ..models import SpaceTimeUNet, count_parameters
from ..models.autoencoder import latent_frame_count
from ..models.encoders import CONDITIONS, Conditioner, Tokenizer, caption_loss, identity_loss
from ..models.lora import add_adapter, freeze_base
from ..models.flow import motion_start, track_points
from ..models.model_dir import (latent_autoencoder, load_flow_net, load_video_model, read_model_config,
                                save_adapter_dir, save_model_dir, video_model_config, weights_sha256)
from ..models.unet import check_activation_memory
from ..runtime import loader_context
from ..types import FrameMask
from .checkpoint import (flatten_state, list_checkpoints, load_checkpoint, nonfinite_tensors, remove_stale,
                         rng_state, save_checkpoint, set_rng_state)
from .data_order import SeededExamples, StepBatchSampler, example_generators, seed_everything
from .ema import ema_decay, ema_update
from .run_log import plot_loss, truncate_metrics
from .temporal_losses import temporal_losses

# ---- helpers ----


class TrainingDiverged(RuntimeError):
    """Too many steps in a row with a NaN / Inf loss or gradient, or non-finite weights at a checkpoint."""


def collect_captions(dataset, limit: int = 5000) -> list[str]:
    """Captions of up to `limit` items, read cheaply through `dataset.caption(i)` where the data set has it."""
    n = min(len(dataset), limit)
    read = getattr(dataset, "caption", None) or (lambda i: dataset[i]["caption"])
    return [read(i) for i in range(n)]


# ---- the trainer ----


def lr_factor(step: int, *, warmup: int, steps: int, decay: str = "none") -> float:
    """The LR multiplier after `step` optimizer steps: linear warm-up over `warmup`, then 1 or a cosine to 0 at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "none":
        return 1.0
    done = min(1.0, (step - warmup) / max(steps - warmup, 1))
    return 0.5 * (1 + math.cos(math.pi * done))


class Trainer:
    """Train a SpaceTimeUNet on a data set; write checkpoints, a model directory, metrics and samples to `out`."""

    run_sections = ("model", "diffusion", "cond")  # config sections a resumed run must keep
    # loss terms written to metrics.jsonl
    logged_terms = ("loss", "mse", "vb", "kl", "identity", "caption", "flow", "cycle")

    def __init__(self, config: Config, out: str | Path, *, resume: bool = False):
        self.config, self.out = config, Path(out)
        tc = config.train
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        # several processes (torchrun / accelerate launch) and no GPU: DDP on the CPU over gloo
        cpu_ddp = device_type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.accelerator = Accelerator(mixed_precision=resolve_precision(tc.mixed_precision, device_type),
                                       cpu=cpu_ddp)
        if resume:
            self.check_same_run()
        seed_everything(tc.seed)  # the same initial weights on every process
        dcfg = config.diffusion
        self.schedule = make_schedule(dcfg.schedule, dcfg.num_steps, dcfg.shift, dcfg.frame_noise)
        self.step_count, self.bad_in_row, self.skipped = 0, 0, 0
        self.track_net = None  # the flow model clips without true tracks are followed with (cond.trajectory_flow)
        self.load_autoencoder()
        self.check_memory()
        self.build_dataset()
        self.build_model()
        self.build_optimizer()
        seed_everything(tc.seed + self.accelerator.process_index)  # then one stream per process (dropout, latents)
        if resume:
            self.restore()
        else:
            self.start_fresh()
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if tc.compile:  # after prepare, so the compiled graph includes DDP's hooks and autocast
            self.model = torch.compile(self.model)
        if self.conditioner is not None:
            self.conditioner = self.accelerator.prepare(self.conditioner)
        self.build_data()

    # ---- setup helpers ----

    def load_autoencoder(self) -> None:
        """A latent model's frozen autoencoder (model.autoencoder), and the grid and window the UNet runs at."""
        cfg = self.config
        self.autoencoder, self.grid = None, cfg.data.size  # grid: the H and W the UNet runs at
        self.frames = cfg.data.num_frames  # the UNet's frames: latent frames of a latent model (docs/latent.md)
        if cfg.model.autoencoder:
            if cfg.temporal.enabled:
                raise ValueError("temporal.flow_model: the flow and cycle losses read pixels; a latent model "
                                 "(model.autoencoder) cannot take them")
            self.autoencoder = latent_autoencoder(cfg.model, cfg.data.size, cfg.data.num_frames)
            self.autoencoder = self.autoencoder.to(self.accelerator.device)
            self.grid = cfg.data.size // self.autoencoder.config.spatial_factor
            self.frames = latent_frame_count(self.autoencoder.config, cfg.data.num_frames, "data.num_frames")

    def check_memory(self) -> None:
        """Refuse, before building anything, a batch whose training activations cannot fit in memory."""
        cfg, tc = self.config, self.config.train
        check_activation_memory(cfg.model, tc.batch_size, self.frames, self.grid, self.grid,
                                grad=not tc.gradient_checkpointing, device=str(self.accelerator.device),
                                what=f"train.batch_size={tc.batch_size} x data.num_frames={cfg.data.num_frames}")

    def build_dataset(self) -> None:
        """The training clips (split "train"); a latent model reads a cache's latents when its autoencoder made them."""
        dc = self.config.data
        options = dataset_options(dc, split="train")
        self.dataset = build_dataset(dc.kind, **options)
        tag = getattr(self.dataset, "latent_tag", None)  # a cache with latents (kinema data cache --autoencoder)
        if self.autoencoder is not None and tag is not None:
            if tag.get("sha256") == weights_sha256(self.autoencoder):
                self.dataset = build_dataset(dc.kind, **options, latents=True)  # encoded once, read every epoch
            else:
                warnings.warn(f"the cache {dc.root} holds latents of another autoencoder ({tag.get('autoencoder')}); "
                              f"encoding every clip with {self.config.model.autoencoder} instead", stacklevel=2)
        # the frame rate the audio is aligned to (moving digits: nominal; videos: the resampled rate if set)
        self.fps = getattr(getattr(self.dataset, "config", None), "fps", None) or dc.target_fps

    def build_model(self) -> None:
        """The network, the condition encoders (if any), a base model's weights and adapters, and their EMA copies."""
        cfg, ft = self.config, self.config.finetune
        self.model = SpaceTimeUNet(cfg.model)
        self.model.gradient_checkpointing = cfg.train.gradient_checkpointing
        self.model.recompute_activations = cfg.train.recompute_activations
        self.conditioner = self.ema_conditioner = self.tokenizer = None
        base = self.load_base() if ft.init_from is not None else None
        self.new_words: list[str] = []
        if cfg.cond.enabled:
            captions = collect_captions(self.dataset) if cfg.cond.text == "gru" else []
            if cfg.cond.text == "gru":
                self.tokenizer = Tokenizer.build(captions) if base is None else base.conditioner.text.tokenizer
            pixels = cfg.model.in_channels if self.autoencoder is None else self.autoencoder.config.in_channels
            f = 1 if self.autoencoder is None else self.autoencoder.config.temporal_factor
            self.conditioner = Conditioner(cfg.cond, cfg.model.cond_dim, in_channels=pixels,
                                           tokenizer=self.tokenizer, frame_size=self.grid, temporal_factor=f)
            if base is not None:
                self.conditioner.load_state_dict(base.conditioner.state_dict())
                if self.tokenizer is not None:  # the new data's words, appended: old ids keep their rows
                    self.new_words = self.tokenizer.new_words(captions)
                    if self.new_words:
                        self.conditioner.text.add_words(self.new_words)
                        self.tokenizer = self.conditioner.text.tokenizer
        if ft.lora_rank:
            add_adapter(self.model, "adapter", rank=ft.lora_rank, alpha=ft.lora_alpha, targets=ft.lora_targets)
            freeze_base(self.model)
            if self.conditioner is not None:
                self.conditioner.requires_grad_(False)
                if self.new_words:  # only the new words' rows learn (the gradient of the others is zeroed)
                    self.conditioner.text.embed.weight.requires_grad_(True)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        if self.conditioner is not None:
            self.ema_conditioner = copy.deepcopy(self.conditioner).requires_grad_(False).eval()
        if ft.lora_rank and self.new_words:
            old = len(self.tokenizer) - len(self.new_words)
            self.conditioner.text.embed.weight.register_hook(lambda g: torch.cat([torch.zeros_like(g[:old]), g[old:]]))
        self.flow_net = None
        if cfg.temporal.enabled:  # a frozen flow network for the temporal losses
            self.flow_net = load_flow_net(cfg.temporal.flow_model).to(self.accelerator.device,
                                                                     memory_format=torch.channels_last)
            if self.flow_net.config.in_channels != cfg.model.in_channels:
                raise ValueError(f"temporal.flow_model {cfg.temporal.flow_model!r} takes "
                                 f"{self.flow_net.config.in_channels}-channel frames, the clips have "
                                 f"{cfg.model.in_channels}")

    def load_base(self):
        """The model `finetune.init_from` names, checked against this run's config; its weights go into the UNet."""
        cfg, ft = self.config, self.config.finetune
        base = load_video_model(ft.init_from)
        saved = read_model_config(base.path)
        now = json.loads(json.dumps(to_dict(cfg)))
        diffs = config_differences(saved, now, ("model", "diffusion", "cond"), ignore=COND_TRAINING_KEYS)
        diffs += [f"data.{k}: {saved['data'].get(k)!r} -> {getattr(cfg.data, k)!r}" for k in ("size", "num_frames")
                  if saved["data"].get(k) != getattr(cfg.data, k)]
        if diffs:
            raise ValueError(f"finetune.init_from {ft.init_from}: this run's config differs from the base model's "
                             f"({'; '.join(diffs[:6])}{'; ...' if len(diffs) > 6 else ''}); a fine-tune keeps the "
                             "base's network, noise process, conditioner, frame size and window")
        self.base_sha256 = weights_sha256(base.model, base.conditioner)
        self.model.load_state_dict(base.model.state_dict())
        return base

    @property
    def unwrapped_model(self) -> SpaceTimeUNet:
        """The UNet itself: without DDP, the mixed-precision wrapper or torch.compile."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trained parameter: the UNet's and the encoders'."""
        params = [p for p in self.model.parameters() if p.requires_grad]  # a LoRA run: the adapters only
        if self.conditioner is not None:
            params += [p for p in self.conditioner.parameters() if p.requires_grad]
        return params

    def build_optimizer(self) -> None:
        """AdamW (fused: one kernel over all parameters) with a linear warm-up to the peak LR, then train.lr_decay."""
        tc = self.config.train
        # fused runs on CPU and CUDA tensors: 4x faster than the per-op update (27 vs 103 ms for 34 M parameters)
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, warmup=tc.warmup_steps, steps=tc.steps, decay=tc.lr_decay))

    def build_data(self) -> None:
        """A DataLoader whose batches depend only on the step, so a resumed run sees the same data."""
        dc, tc = self.config.data, self.config.train
        sampler = StepBatchSampler(len(self.dataset), tc.batch_size, seed=tc.seed,
                                   process=self.accelerator.process_index,
                                   num_processes=self.accelerator.num_processes, start_step=self.step_count,
                                   micro=tc.grad_accum)
        # its own generator: creating the iterator must not draw from the global RNG (exact resume)
        self.loader = DataLoader(SeededExamples(self.dataset), batch_sampler=sampler, num_workers=dc.num_workers,
                                 persistent_workers=dc.num_workers > 0,
                                 multiprocessing_context=loader_context(dc.num_workers),
                                 generator=torch.Generator().manual_seed(tc.seed))

    def start_fresh(self) -> None:
        """Refuse a run directory that holds another run's checkpoints; drop metrics of one that never saved."""
        if self.accelerator.is_main_process:
            remove_stale(self.out)  # temp directories of a run killed while writing its first checkpoint
        found = list_checkpoints(self.out)
        if found:
            raise ValueError(f"{self.out} already holds checkpoints (newest {found[-1].name}); pass --resume to "
                             "continue that run, or remove the directory or choose another --out to start over")
        self._truncate_metrics(0)  # rows of a run killed before its first checkpoint

    def check_same_run(self) -> None:
        """Refuse to resume a run whose config.json names another network, noise process or conditioner."""
        path = self.out / "config.json"
        if not path.is_file():
            return
        saved, sections = json.loads(path.read_text()), self.run_sections
        defaults = json.loads(json.dumps(to_dict(Config())))  # a key newer than the run's config.json: its default
        saved = {name: {**defaults[name], **(saved.get(name) or {})} for name in sections}
        diffs = config_differences(saved, json.loads(json.dumps(to_dict(self.config))), sections,
                                   ignore=COND_TRAINING_KEYS)  # how to train may change; the network not
        if diffs:
            raise ValueError(f"--resume: {self.out} was trained with other settings ({'; '.join(diffs[:6])}"
                             f"{'; ...' if len(diffs) > 6 else ''}); resume without --config to continue with the "
                             f"run's own {path}, or give the same values")

    def restore(self) -> None:
        """Load the newest readable checkpoint of `out` (weights, EMA, optimizer, LR, scaler, RNG, step)."""
        if self.accelerator.is_main_process:
            remove_stale(self.out)  # temp directories of a run killed while writing
        self.accelerator.wait_for_everyone()
        if not list_checkpoints(self.out):
            raise FileNotFoundError(f"--resume: no checkpoint under {self.out / 'checkpoints'}")
        step, state = load_checkpoint(self.out)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        if self.conditioner is not None:
            self.conditioner.load_state_dict(state["conditioner"])
            self.ema_conditioner.load_state_dict(state["ema_conditioner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.load_extra_state(state)
        if self.accelerator.scaler is not None and state.get("scaler") is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]  # one per process of the run that saved it
        set_rng_state(rngs[min(self.accelerator.process_index, len(rngs) - 1)])
        self.step_count = step
        self.bad_in_row, self.skipped = state.get("bad_steps", (0, 0))
        saved, now = state.get("data", {}).get("global_batch"), self.global_batch()
        if saved is not None and saved != now:
            warnings.warn(f"the checkpoint was trained with a global batch of {saved}, this run has {now} "
                          "(batch_size x processes x grad_accum): it continues, with other batches than an "
                          "uninterrupted run would see", stacklevel=2)
        self._truncate_metrics(step)

    def extra_state(self) -> dict:
        """What a subclass adds to each checkpoint (e.g. a discriminator and its optimizer); none here."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` added."""

    # ---- one optimizer step ----

    def loss(self, batch: dict) -> dict:
        """The diffusion loss terms of one micro-batch; with frame conditioning, over the unknown frames only."""
        dcfg, extra = self.config.diffusion, {}
        x0 = batch["video"].to(self.accelerator.device)  # (B, C, T, H, W)
        if "latent" in batch:  # latent diffusion on a cache's latents: encoded once, by this autoencoder
            x0 = batch["latent"].to(self.accelerator.device)  # (B, Z, T', H / f, W / f)
        elif self.autoencoder is not None:  # latent diffusion: the clip's latent (latent frames: latent_frame_span)
            with torch.no_grad():
                x0 = self.autoencoder.encode(x0).float()  # (B, Z, T', H / f, W / f)
        gens = example_generators(batch)  # a clip's draws do not depend on how the global batch is split
        given = torch.zeros(x0.shape[0], dtype=torch.bool)  # (B,) clips with given frames
        if self.config.model.frame_conditioning:  # a latent model's tasks are drawn on whole latent frames
            mask = torch.cat([draw_masks(1, x0.shape[2], self.config.masks, generator=g)[0] for g in gens])
            mask = mask.to(x0.device)  # (B, T), a task per clip
            extra["frames"] = FrameMask(mask=mask, frames=x0 * rearrange(mask, "b t -> b 1 t 1 1"))
            extra["weight"] = rearrange(1 - mask, "b t -> b 1 t 1 1")
            given = mask.bool().any(dim=1).cpu()
        kl = None
        if self.conditioner is not None:
            cc = self.config.cond
            rates = {n: torch.where(given, cc.drop_rate(n, True), cc.drop_rate(n, False)) for n in CONDITIONS}
            keep = {n: torch.stack([torch.rand((), generator=g) for g in gens]) >= rates[n]
                    for n in rates}  # CFG: drop each condition per clip (B,)
            if cc.drop_all > 0:  # drawn only when asked: runs without it draw as before
                some = torch.stack([torch.rand((), generator=g) for g in gens]) >= cc.drop_all  # (B,)
                keep = {n: k & some for n, k in keep.items()}
            # with an identity or caption term the latent's mean reaches the network: a draw's noise hides what it names
            extra["cond"], kl = self.encode(self.conditioner, batch, keep=keep, sample_latent=not cc.image_mean)
        terms = training_loss(self.model, x0, schedule=self.schedule, prediction=dcfg.prediction,
                              loss_type=dcfg.loss, learned_variance=self.config.model.learned_variance,
                              generator=gens, **extra)
        if kl is not None and self.config.cond.image:
            terms["kl"] = kl.mean()
            terms["loss"] = terms["loss"] + self.config.cond.kl_weight * terms["kl"]
        if self.conditioner is not None and self.config.cond.caption_weight > 0:  # draws nothing
            conditioner = self.accelerator.unwrap_model(self.conditioner)  # first frames (B, C, H, W) go to its device
            terms["caption"] = caption_loss(conditioner, batch["video"][:, :, 0], list(batch["caption"]))
            terms["loss"] = terms["loss"] + self.config.cond.caption_weight * terms["caption"]
        if self.conditioner is not None and self.config.cond.identity_weight > 0:  # drawn last: the rest as without
            video = batch["video"].to(self.accelerator.device)  # (B, C, T, H, W)
            if video.shape[2] < 2:
                raise ValueError(f"cond.identity_weight needs clips of 2 frames or more, got {video.shape[2]}")
            other = torch.stack([torch.randint(1, video.shape[2], (), generator=g) for g in gens])  # (B,)
            encoder = self.accelerator.unwrap_model(self.conditioner).image
            terms["identity"] = identity_loss(encoder, video[:, :, 0], video[torch.arange(len(other)), :, other])
            terms["loss"] = terms["loss"] + self.config.cond.identity_weight * terms["identity"]
        if self.flow_net is not None:  # flow and cycle losses on x0_hat, weighted by the noise level
            tl = self.config.temporal
            weight = self.schedule.alpha_bar(terms["t"]).float() if tl.weighting == "alpha_bar" else None
            terms.update(temporal_losses(terms["pred"].x0, x0, self.flow_net, weight))
            terms["loss"] = terms["loss"] + tl.flow_weight * terms["flow"] + tl.cycle_weight * terms["cycle"]
        return terms

    def encode(self, conditioner, batch: dict, **options):
        """The batch's conditions (caption, first frame, audio, tracks) through `conditioner`: (Cond, KL (B,))."""
        cc, video = self.config.cond, batch["video"]
        inputs = {}
        if cc.text != "none":
            inputs["text"] = list(batch["caption"])
        if cc.image:
            inputs["image"] = video[:, :, 0]  # the reference image: the clip's first frame
        if cc.audio:
            inputs["audio"] = audio_features(batch["audio"], rate=self.config.data.audio_rate,  # (B, A): the clip's
                                             num_frames=video.shape[2], n_mels=cc.n_mels,
                                             steps_per_frame=cc.audio_steps_per_frame)
        if cc.trajectory != "none":
            inputs["trajectory"] = batch["trajectory"] if "trajectory" in batch else self.flow_tracks(video)
        return conditioner(video.shape[0], **inputs, **options)

    def flow_tracks(self, video: torch.Tensor) -> torch.Tensor:
        """Clips (B, C, T, H, W) without true tracks: their main motion followed through cond.trajectory_flow's
        forward flow, as normalised (x, y) (B, T, 1, 2) (benchmarks/flow_tracking.md says how well it tracks)."""
        if self.track_net is None:
            self.track_net = load_flow_net(self.config.cond.trajectory_flow).to(video.device).requires_grad_(False)
        if self.track_net.config.in_channels != video.shape[1]:
            raise ValueError(f"cond.trajectory_flow {self.config.cond.trajectory_flow!r} takes "
                             f"{self.track_net.config.in_channels}-channel frames, the clips have {video.shape[1]}")
        path = track_points(self.track_net, video.float(), motion_start(self.track_net, video.float()))  # pixels
        size = torch.tensor([video.shape[-1], video.shape[-2]], device=path.device, dtype=torch.float32)
        return ((path + 0.5) / size)[:, :, None]  # pixel centres -> [0, 1]

    def step(self, batches: list[dict]) -> dict:
        """forward -> loss -> backward (accumulated) -> clip -> (skip if NaN / Inf) -> optimizer -> LR -> EMA."""
        tc, logs = self.config.train, {}
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.model):
                terms = self.loss(batch)
                self.accelerator.backward(terms["loss"] / len(batches))
            for k in self.logged_terms:
                if k in terms:
                    logs[k] = logs.get(k, 0.0) + terms[k].item() / len(batches)
        logs = self.mean_over_processes(logs)
        logs["grad_norm"] = float(self.accelerator.clip_grad_norm_(self.parameters(), tc.grad_clip or math.inf))
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        if not self.finite(logs):
            return self.skip(logs)
        self.bad_in_row = 0
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        decay = ema_decay(self.step_count, tc.ema_decay)
        ema_update(self.ema, self.unwrapped_model, decay)
        if self.conditioner is not None:
            ema_update(self.ema_conditioner, self.accelerator.unwrap_model(self.conditioner), decay)
        self.step_count += 1
        return logs

    def mean_over_processes(self, logs: dict) -> dict:
        """The logged scalars averaged over processes; NaN / Inf on any process makes the mean non-finite."""
        if self.accelerator.num_processes == 1:
            return logs
        values = torch.tensor(list(logs.values()), dtype=torch.float64, device=self.accelerator.device)
        return dict(zip(logs, self.accelerator.reduce(values, "mean").tolist()))

    @staticmethod
    def finite(logs: dict) -> bool:
        """Whether the (process-mean) loss and the (all-reduced) gradient norm are finite: every process agrees."""
        return math.isfinite(logs["loss"]) and math.isfinite(logs["grad_norm"])

    def skip(self, logs: dict) -> dict:
        """Drop a step with a NaN / Inf loss or gradient (its batch is used up); stop after max_bad_steps in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        self.bad_in_row, self.skipped = self.bad_in_row + 1, self.skipped + 1
        limit = self.config.train.max_bad_steps
        if self.accelerator.is_main_process:
            tqdm.write(f"kinema: step {self.step_count}: loss {logs['loss']}, grad norm {logs['grad_norm']}; skipped "
                       f"({self.bad_in_row} in a row of at most {limit}, {self.skipped} in all)")
        if self.bad_in_row >= limit:
            last = list_checkpoints(self.out)
            raise TrainingDiverged(
                f"stopped at step {self.step_count}: {self.bad_in_row} steps in a row had a NaN / Inf loss or "
                f"gradient (train.max_bad_steps = {limit}); the last checkpoint, "
                f"{last[-1] if last else 'none'}, is intact; try a lower train.lr or a longer train.warmup_steps")
        return {**logs, "skipped": 1}

    def global_batch(self) -> int:
        """Clips per optimizer step over all processes and micro-batches."""
        tc = self.config.train
        return tc.batch_size * self.accelerator.num_processes * tc.grad_accum

    # ---- the loop and its cadences ----

    def fit(self) -> None:
        """Train to `train.steps`, logging, sampling and checkpointing on the configured cadences."""
        tc, main = self.config.train, self.accelerator.is_main_process
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(to_dict(self.config), indent=2) + "\n")
            total = sum(p.numel() for p in self.unwrapped_model.parameters())
            adapted = (f" ({count_parameters(self.model) / 1e6:.3f}M in adapters, the base frozen)"
                       if self.config.finetune.lora_rank else "")
            print(f"kinema: {total / 1e6:.2f}M parameters{adapted}, mixed precision {self.accelerator.mixed_precision}, device {self.accelerator.device}")
        bar = tqdm(total=tc.steps, initial=self.step_count, disable=not main, desc="train", unit="step")
        try:  # a failure (e.g. TrainingDiverged) must not leave the bar's line open
            window, t0, micro = [], time.time(), []
            for batch in self.loader:
                if self.step_count >= tc.steps:
                    break
                micro.append(batch)
                if len(micro) < tc.grad_accum:
                    continue
                logs, micro = self.step(micro), []
                window.append(logs)
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
                s = self.step_count
                if s % tc.log_every == 0 or s == tc.steps:
                    self.log(s, window, time.time() - t0)
                    window, t0 = [], time.time()
                if tc.sample_every and (s % tc.sample_every == 0 or s == tc.steps):
                    self.sample_grid(s)
                if s % tc.checkpoint_every == 0 or s == tc.steps:
                    self.save()
        finally:
            bar.close()
        if main:
            self.plot_loss()

    def log(self, step: int, window: list[dict], seconds: float) -> None:
        """Append the mean of the last logs to metrics.jsonl."""
        if not self.accelerator.is_main_process or not window:
            return
        good = [w for w in window if not w.get("skipped")]  # a skipped step's loss is NaN / Inf
        row = {"step": step, **{k: sum(w[k] for w in good) / len(good) for k in (good[0] if good else {})}}
        if len(good) < len(window):
            row["skipped"] = len(window) - len(good)
        row["sec_per_step"] = seconds / len(window)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def save(self) -> None:
        """An atomic training checkpoint plus the EMA model directory `out/model`."""
        rngs = gather_object([rng_state()]) if self.accelerator.num_processes > 1 else [rng_state()]
        if not self.accelerator.is_main_process:
            return
        scaler = self.accelerator.scaler  # fp16 only; bf16 and fp32 need none
        state = {"model": self.unwrapped_model.state_dict(), "ema": self.ema.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "lr_scheduler": self.lr_scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else None, "rng": rngs,
                 "data": {"step": self.step_count, "seed": self.config.train.seed, "global_batch": self.global_batch()},
                 "bad_steps": (self.bad_in_row, self.skipped), "config": to_dict(self.config),
                 **self.extra_state()}
        bad = nonfinite_tensors(flatten_state(state)[0])
        if bad:
            last = list_checkpoints(self.out)
            raise TrainingDiverged(f"step {self.step_count}: the training state holds NaN / Inf ({bad[:3]}); not "
                                   f"writing a checkpoint; the last one, {last[-1] if last else 'none'}, is intact")
        extra = {}
        if self.conditioner is not None:
            state["conditioner"] = self.accelerator.unwrap_model(self.conditioner).state_dict()
            state["ema_conditioner"] = self.ema_conditioner.state_dict()
            extra["conditioner"] = self.ema_conditioner
        save_checkpoint(self.out, self.step_count, state, keep=self.config.train.keep_checkpoints)
        self.write_model_dir(extra)

    def write_model_dir(self, extra: dict) -> None:
        """The EMA weights as a model directory `out/model` (a LoRA run: the adapter directory `out/adapter`)."""
        ft = self.config.finetune
        if ft.lora_rank:  # only what the run trained: the adapter and the new words' rows
            rows = self.ema_conditioner.text.embed.weight[-len(self.new_words):] if self.new_words else None
            save_adapter_dir(self.out / "adapter", self.ema, "adapter", base=str(ft.init_from),
                             base_sha256=self.base_sha256, rank=ft.lora_rank, alpha=float(ft.lora_alpha or ft.lora_rank),
                             targets=tuple(ft.lora_targets), new_words=self.new_words, embeddings=rows)
        else:
            config = video_model_config(self.config, self.fps)
            if self.autoencoder is not None:  # the directory carries its own copy: it samples without the original
                config["autoencoder"], extra["autoencoder"] = self.autoencoder.describe(), self.autoencoder
            save_model_dir(self.out / "model", self.ema, config, extra=extra,
                           vocab=self.tokenizer.words if self.tokenizer else None)

    @torch.no_grad()
    def sample_grid(self, step: int) -> Optional[Path]:
        """Sample a few clips from the EMA model with DDIM and write them as one gif grid."""
        if not self.accelerator.is_main_process:
            return None
        tc = self.config.train
        shape = (tc.num_samples, self.config.model.in_channels, self.frames, self.grid, self.grid)
        device = self.accelerator.device
        self.ema.to(device)
        cond = captions = None
        if self.ema_conditioner is not None:  # the conditions of the first training clips, unguided
            batch = torch.utils.data.default_collate([self.dataset[i] for i in range(tc.num_samples)])
            (cond, _), captions = self.encode(self.ema_conditioner.to(device), batch), batch["caption"]
        denoise = sampling_denoiser(self.ema, self.schedule, prediction=self.config.diffusion.prediction,
                                    learned_variance=self.config.model.learned_variance, chain=[{"cond": cond}],
                                    latent=self.autoencoder is not None)
        with self.accelerator.autocast():
            x0 = generate(denoise, shape, schedule=self.schedule,
                          sampler="ddim", num_steps=tc.sample_steps,
                          generator=torch.Generator(device).manual_seed(tc.seed), device=device)
            if self.autoencoder is not None:
                x0 = self.autoencoder.decode(x0.float(), chunk=self.frames)  # (B, C, T, H, W)
        path = self.out / "samples" / f"step_{step:08d}.gif"
        write_video(path, make_grid(to_uint8(x0.float().cpu())), fps=8)
        if captions:
            path.with_suffix(".txt").write_text("".join(f"{i}: {c}\n" for i, c in enumerate(captions)))
        return path

    def plot_loss(self) -> Optional[Path]:
        """Plot metrics.jsonl's loss against step to loss.png."""
        return plot_loss(self.out / "metrics.jsonl", self.out / "loss.png", f"training loss ({self.out.name})")

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric rows written after `step` (by a run that died before its next checkpoint)."""
        if self.accelerator.is_main_process:
            truncate_metrics(self.out / "metrics.jsonl", step)
