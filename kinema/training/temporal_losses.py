"""Temporal-consistency losses on the diffusion model's predicted clean video (the seed's L_flow and L_cycle).

The flow comes from a frozen FlowNet run on the *real* clip: F_t maps frame t to frame t+1
(warp(frame t+1, F_t) ~= frame t) and B_t the reverse. With x0_hat the prediction:
- flow loss:  | warp(x0_hat_{t+1}, F_t) - x0_hat_t |  — the predicted frames move the way the real ones do;
- cycle loss: | warp(warp(x0_hat_t, B_t), F_t) - x0_hat_t |  — carrying a predicted frame to t+1 and
  back returns it (G(G(x_t, v_t), -v_t) = x_t in the seed).
Both count only pixels visible in both real frames (forward-backward check) and are weighted per clip
by the noise level: by alpha_bar_t, the signal fraction of x_t. At high noise x0_hat is a blurred
average that no flow can match, and a large weight there would only pull it further towards blur;
alpha_bar_t fades the terms out smoothly as the clip drowns in noise (0.5 at SNR 1).
"""

from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import Tensor

from ..models.flow import FlowNet, masked_mean, occlusion_mask, warp


def temporal_losses(x0_hat: Tensor, x0: Tensor, flow_net: FlowNet, weight: Optional[Tensor] = None) -> dict:
    """Flow and cycle losses of a predicted clip x0_hat against the motion of the real clip x0, both (B, C, T, H, W).

    `weight` (B,) scales each clip (e.g. alpha_bar_t). Returns {"flow": (), "cycle": ()} means over clips.
    """
    if x0_hat.shape != x0.shape or x0.ndim != 5:
        raise ValueError(f"need predicted and real clips of one shape (B, C, T, H, W), got {tuple(x0_hat.shape)} "
                         f"and {tuple(x0.shape)}")
    b, t = x0.shape[0], x0.shape[2]
    if t < 2:
        raise ValueError(f"temporal losses need clips of >= 2 frames, got {t}")
    with torch.no_grad():
        fw, bw = flow_net.video_flows(x0.float())  # (B, T-1, 2, H, W) each
        fw, bw = (rearrange(f, "b t c h w -> (b t) c h w") for f in (fw, bw))
        visible = occlusion_mask(fw, bw)  # (B(T-1), 1, H, W): seen in frame t and t+1
    pairs = "b c t h w -> (b t) c h w"
    cur, nxt = rearrange(x0_hat[:, :, :-1], pairs).float(), rearrange(x0_hat[:, :, 1:], pairs).float()
    flow = masked_mean((warp(nxt, fw) - cur).abs(), visible)  # (B(T-1),)
    cycle = masked_mean((warp(warp(cur, bw), fw) - cur).abs(), visible)
    per_clip = {k: rearrange(v, "(b t) -> b t", b=b).mean(1) for k, v in (("flow", flow), ("cycle", cycle))}
    w = torch.ones(b, device=x0.device) if weight is None else weight.to(x0.device, torch.float32)
    return {k: (v * w).mean() for k, v in per_clip.items()}
