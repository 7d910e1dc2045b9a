"""Self-supervised training of the flow network on consecutive frames of any video data (no flow labels).

The loss is the seed's L_flow made unsupervised (UnFlow-style): the photometric error of the warped
frame over pixels visible in both frames, edge-aware first-order smoothness, and forward-backward
consistency, each in both directions.
"""

from __future__ import annotations

import functools
import json
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import DataConfig, FlowConfig, FlowTrainConfig, resolve_precision, to_dict
from ..data import build_dataset, dataset_options
from ..models.flow import FlowNet, masked_mean, occlusion_mask, warp
from ..models.model_dir import save_flow_net
from .trainer import lr_factor

# ---- losses ----


def charbonnier(x: Tensor, eps: float = 1e-3, power: float = 0.45) -> Tensor:
    """Robust penalty (x^2 + eps^2)^power, elementwise."""
    return (x.pow(2) + eps ** 2).pow(power)


def smoothness(flow: Tensor, image: Tensor, edge: float = 10.0) -> Tensor:
    """Edge-aware first-order smoothness of (B, 2, H, W) flow, relaxed where (B, C, H, W) image has edges; (B,)."""
    dfx, dfy = flow[..., :, 1:] - flow[..., :, :-1], flow[..., 1:, :] - flow[..., :-1, :]
    dix = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    diy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    sx = (dfx.abs() * torch.exp(-edge * dix)).flatten(1).mean(1)
    sy = (dfy.abs() * torch.exp(-edge * diy)).flatten(1).mean(1)
    return sx + sy


def flow_loss_terms(net: FlowNet, f1: Tensor, f2: Tensor, cfg: FlowTrainConfig) -> dict:
    """The self-supervised loss of frame pairs (B, C, H, W): photometric + smoothness + consistency, both ways."""
    flows = net(torch.cat([f1, f2]), torch.cat([f2, f1]))  # (2B, 2, H, W): f1 -> f2, then f2 -> f1
    fw, bw = flows.chunk(2)
    first, second = torch.cat([f1, f2]), torch.cat([f2, f1])
    with torch.no_grad():
        visible = occlusion_mask(flows, torch.cat([bw, fw]))  # (2B, 1, H, W)
    photo = masked_mean(charbonnier(warp(second, flows) - first), visible)
    smooth = smoothness(flows, first)
    consistency = masked_mean((flows + warp(torch.cat([bw, fw]), flows)).abs(), visible)
    loss = photo + cfg.smooth_weight * smooth + cfg.consistency_weight * consistency
    return {"loss": loss.mean(), "photo": photo.mean(), "smooth": smooth.mean(),
            "consistency": consistency.mean(), "visible": visible.mean()}

# ---- data ----


def frame_pairs(video: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One random pair of consecutive frames per clip of (B, C, T, H, W): two (B, C, H, W)."""
    b, _, t = video.shape[:3]
    if t < 2:
        raise ValueError(f"flow training needs clips of >= 2 frames, got {t}")
    idx = torch.randint(0, t - 1, (b,), generator=generator)
    rows = torch.arange(b)
    frames = rearrange(video, "b c t h w -> b t c h w")
    return frames[rows, idx], frames[rows, idx + 1]


def _batches(loader: DataLoader):
    while True:
        yield from loader

# ---- the loop ----


def train_flow(data: DataConfig, out: str | Path, flow: FlowConfig | None = None,
               train: FlowTrainConfig | None = None, *, progress: bool = True) -> dict:
    """Train a FlowNet on consecutive frames of `data`, save it as a model directory in `out`; return a summary."""
    flow, train = flow or FlowConfig(), train or FlowTrainConfig()
    dataset = build_dataset(data.kind, **dataset_options(data, "train"))
    sample = dataset[0]["video"]  # (C, T, H, W)
    if sample.shape[0] != flow.in_channels:
        raise ValueError(f"data clips have {sample.shape[0]} channels but flow.in_channels is {flow.in_channels}")
    torch.manual_seed(train.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = FlowNet(flow).to(device, memory_format=torch.channels_last)  # bf16 convs are fast only channels-last
    bf16 = resolve_precision(train.precision, device.type) == "bf16"
    opt = torch.optim.Adam(net.parameters(), lr=train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(lr_factor, warmup=0, steps=train.steps,
                                                                     decay="cosine"))
    g = torch.Generator().manual_seed(train.seed)
    if len(dataset) < train.batch_size:  # drop_last would leave no batch at all, and the loop would wait for ever
        raise ValueError(f"the flow data has {len(dataset)} clips, fewer than flow_train.batch_size = "
                         f"{train.batch_size}; lower it, e.g. --set flow_train.batch_size={max(1, len(dataset))}")
    loader = DataLoader(dataset, batch_size=train.batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(train.seed))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start, logs = time.time(), []
    bar = tqdm(range(train.steps), desc="train-flow", disable=not progress)
    batches = _batches(loader)
    for step in bar:
        f1, f2 = (f.to(device) for f in frame_pairs(next(batches)["video"], g))
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            terms = flow_loss_terms(net, f1, f2, train)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == train.steps - 1:
            row = {"step": step, **{k: round(float(v.detach()), 5) for k, v in terms.items()}}
            logs.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    seconds = time.time() - start
    summary = {"steps": train.steps, "seconds": round(seconds, 1), "final": logs[-1], "bf16": bf16,
               "data": to_dict(data), "train": to_dict(train)}
    save_flow_net(out, net.eval().to("cpu", memory_format=torch.contiguous_format), {"training": summary})
    (out / "metrics.json").write_text(json.dumps(logs, indent=1) + "\n")
    return summary
