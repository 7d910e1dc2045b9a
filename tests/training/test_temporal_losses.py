"""Temporal losses on the predicted clip: zero for the real clip's own motion, gradients, weighting, trainer wiring."""

import json

import torch

from kinema.config import load_config
from kinema.models.flow import FlowNet
from kinema.models.model_dir import load_flow_net
from kinema.training import Trainer
from kinema.training.temporal_losses import temporal_losses

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
    "data.size": 32, "data.num_frames": 4, "data.length": 64, "train.batch_size": 2, "train.log_every": 1,
    "train.checkpoint_every": 2, "train.sample_every": 0, "train.warmup_steps": 2,
}


def test_flow_loss_prefers_the_real_motion_and_has_gradients(moving_square):
    net = load_flow_net("flow-moving-digits")
    real = moving_square(t=6, size=32)
    good = real.clone().requires_grad_(True)
    noisy = real + 0.3 * torch.randn_like(real)
    frozen = real[:, :, :1].expand_as(real).contiguous()  # does not move at all
    lg = temporal_losses(good, real, net)
    assert lg["flow"] < temporal_losses(noisy, real, net)["flow"]
    assert lg["flow"] < temporal_losses(frozen, real, net)["flow"]
    (lg["flow"] + lg["cycle"]).backward()
    assert good.grad is not None and torch.isfinite(good.grad).all()


def test_weight_scales_each_clip():
    net = FlowNet().eval()
    real, pred = torch.randn(2, 1, 3, 16, 16), torch.randn(2, 1, 3, 16, 16)
    full = temporal_losses(pred, real, net)
    zero = temporal_losses(pred, real, net, torch.zeros(2))
    assert zero["flow"] == 0 and zero["cycle"] == 0 and full["flow"] > 0
    half = temporal_losses(pred, real, net, torch.full((2,), 0.5))
    torch.testing.assert_close(half["flow"], full["flow"] / 2)


def test_trainer_logs_temporal_terms(tmp_path):
    cfg = load_config(None, {**TINY, "train.steps": 2, "temporal.flow_weight": 0.5,
                             "temporal.cycle_weight": 0.1})
    Trainer(cfg, tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["flow"] > 0 and r["cycle"] >= 0 for r in rows)
