"""`kinema train-ae`: the Trainer's machinery (resume, EMA, bf16, atomic checkpoints, metrics, DDP) for the video
autoencoder, with reconstruction, KL and (given LPIPS weights) perceptual terms, and grids of input beside output."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..data import make_grid, to_uint8, write_video
from ..config import config_differences
from ..models.autoencoder import (PatchDiscriminator, VideoAutoencoder, init_shortcut, latent_shape,
                                  measure_latent_stats)
from ..models.model_dir import load_autoencoder, save_model_dir
from .trainer import Trainer


class AutoencoderTrainer(Trainer):
    """Train `config.autoencoder` on `config.data`; the model directory holds the EMA weights and latent statistics."""

    run_sections = ("autoencoder",)
    logged_terms = ("loss", "rec", "kl", "lpips", "gan")

    def check_memory(self) -> None:
        """Clips must fit the autoencoder: 1 + a multiple of the temporal factor frames, sizes the spatial factor."""
        ac, dc = self.config.autoencoder, self.config.data
        try:
            latent_shape(ac, ac.in_channels, dc.num_frames, dc.size, dc.size)
        except ValueError as err:
            raise ValueError(f"data.num_frames / data.size do not fit the autoencoder: {err}") from None

    def build_model(self) -> None:
        """The autoencoder, its EMA copy and (with ae_loss.lpips_weight) the frozen LPIPS network."""
        cfg = self.config
        if cfg.autoencoder.in_channels != cfg.model.in_channels:
            raise ValueError(f"autoencoder.in_channels {cfg.autoencoder.in_channels} differs from the clips' "
                             f"model.in_channels {cfg.model.in_channels}")
        self.model = VideoAutoencoder(cfg.autoencoder)
        if cfg.finetune.init_from is not None:
            self.load_base_autoencoder()
        elif cfg.ae_loss.decoder_only:
            raise ValueError("ae_loss.decoder_only keeps a trained encoder: name it with finetune.init_from")
        if cfg.ae_loss.decoder_only:  # the latent stays what the base's latent models were trained on
            self.model.encoder.requires_grad_(False)
            if self.model.shortcut_in is not None:
                self.model.shortcut_in.requires_grad_(False)
        elif cfg.autoencoder.shortcut:  # the linear path starts at the PCA of training clips' pixel squares
            clips = torch.stack([self.dataset[i]["video"] for i in range(min(64, len(self.dataset)))])
            init_shortcut(self.model, clips)
        self.conditioner = self.ema_conditioner = self.tokenizer = self.flow_net = None
        self.new_words = []
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.disc = self.disc_optimizer = None
        if cfg.ae_loss.disc_weight > 0:
            self.disc = PatchDiscriminator(cfg.autoencoder.in_channels).to(self.accelerator.device)
        self.lpips = None
        if cfg.ae_loss.lpips_weight > 0:
            from ..models.lpips import load_lpips

            self.lpips = load_lpips(cfg.ae_loss.lpips_path)[0].requires_grad_(False).to(self.accelerator.device)

    def load_base_autoencoder(self) -> None:
        """Start from the weights of the autoencoder `finetune.init_from` names; its network must be this run's."""
        ft = self.config.finetune
        if ft.lora_rank:
            raise ValueError(f"finetune.lora_rank {ft.lora_rank}: train-ae fine-tunes every weight; set it to 0")
        base = load_autoencoder(ft.init_from)
        diffs = config_differences({"autoencoder": asdict(base.config)},
                                   {"autoencoder": asdict(self.config.autoencoder)}, ("autoencoder",))
        if diffs:
            raise ValueError(f"finetune.init_from {ft.init_from}: this run's autoencoder differs from the base's "
                             f"({'; '.join(diffs)}); a fine-tune keeps the network")
        self.model.load_state_dict(base.state_dict())

    def loss(self, batch: dict) -> dict:
        """Reconstruction (L1 or L2) + kl_weight * KL (+ lpips_weight * LPIPS) of one micro-batch."""
        lc = self.config.ae_loss
        x = batch["video"].to(self.accelerator.device)  # (B, C, T, H, W)
        out = self.model(x, latent_noise=lc.latent_noise)  # noise from the global RNG, which checkpoints restore
        recon = out["recon"].float()
        rec = (recon - x).abs().mean() if lc.reconstruction == "l1" else (recon - x).square().mean()
        terms = {"rec": rec, "kl": out["kl"].float().mean()}
        terms["loss"] = rec + lc.kl_weight * terms["kl"]
        if self.lpips is not None:
            from ..models.lpips import lpips_frames

            terms["lpips"] = lpips_frames(self.lpips, recon, x).mean()
            terms["loss"] = terms["loss"] + lc.lpips_weight * terms["lpips"]
        if self.adversarial:
            terms["gan"] = -self.disc(recon).mean()  # the generator's hinge term: look real to the discriminator
            terms["loss"] = terms["loss"] + lc.disc_weight * terms["gan"]
            self.last_pair = (x.detach(), recon.detach())  # what the discriminator learns from after this step
        return terms

    @property
    def adversarial(self) -> bool:
        """Whether the discriminator is on at this step (ae_loss.disc_weight > 0, after ae_loss.disc_start)."""
        return self.disc is not None and self.step_count >= self.config.ae_loss.disc_start

    def build_optimizer(self) -> None:
        """The autoencoder's AdamW, and the discriminator's."""
        super().build_optimizer()
        if self.disc is not None:
            tc = self.config.train
            self.disc_optimizer = torch.optim.AdamW(self.disc.parameters(), lr=tc.lr, betas=(0.5, 0.9))
            self.disc, self.disc_optimizer = self.accelerator.prepare(self.disc, self.disc_optimizer)  # DDP too

    def step(self, batches: list[dict]) -> dict:
        """The autoencoder's step, then (when on) one hinge step of the discriminator on the last micro-batch."""
        on = self.adversarial
        logs = super().step(batches)
        if on and not logs.get("skipped"):
            real, fake = self.last_pair
            self.disc_optimizer.zero_grad(set_to_none=True)  # drop what the generator's term left on it
            disc = F.relu(1 - self.disc(real)).mean() + F.relu(1 + self.disc(fake)).mean()
            disc.backward()
            self.disc_optimizer.step()
            logs["disc"] = disc.item()
        return logs

    def extra_state(self) -> dict:
        """The discriminator and its optimizer, when there is one."""
        if self.disc is None:
            return {}
        return {"disc": self.accelerator.unwrap_model(self.disc).state_dict(),
                "disc_optimizer": self.disc_optimizer.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if self.disc is not None:
            if "disc" not in state:
                raise ValueError("--resume: the checkpoint has no discriminator; ae_loss.disc_weight was 0 there")
            self.accelerator.unwrap_model(self.disc).load_state_dict(state["disc"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])

    def write_model_dir(self, extra: dict) -> None:
        """`out/model`: the EMA autoencoder with its latent shift and scale measured on training clips."""
        n = min(self.config.ae_loss.stats_clips, len(self.dataset))
        device = self.accelerator.device
        clips = (torch.stack([self.dataset[i]["video"] for i in range(lo, min(lo + 8, n))]).to(device)
                 for lo in range(0, n, 8))
        self.ema.to(device)
        if not self.config.ae_loss.decoder_only:  # decoder_only keeps the base's shift and scale
            with self.accelerator.autocast():
                measure_latent_stats(self.ema, clips)
        dc = self.config.data
        save_model_dir(self.out / "model", self.ema, {"kind": "autoencoder",
                                                      "autoencoder": asdict(self.config.autoencoder),
                                                      "data": {"size": dc.size, "num_frames": dc.num_frames}})

    @torch.no_grad()
    def sample_grid(self, step: int) -> Optional[Path]:
        """The first training clips beside their EMA reconstructions, as one gif grid (input left, output right)."""
        if not self.accelerator.is_main_process:
            return None
        n = self.config.train.num_samples
        x = torch.stack([self.dataset[i]["video"] for i in range(n)]).to(self.accelerator.device)
        self.ema.to(x.device)
        with self.accelerator.autocast():
            recon = self.ema.decode(self.ema.encode(x)).float().clamp(-1, 1)
        pairs = torch.cat([x, recon], dim=-1)  # (N, C, T, H, 2W)
        path = self.out / "samples" / f"step_{step:08d}.gif"
        write_video(path, make_grid(to_uint8(pairs.cpu())), fps=8)
        return path

