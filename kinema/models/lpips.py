"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), AlexNet
variant, with weights the user gives: kinema ships none and downloads none.

Architecture: AlexNet's five conv stages (the ImageNet network), the outputs of their ReLUs unit-
normalised along channels, squared differences weighted per channel by a learned 1x1 conv ("lin"),
averaged over space and summed over the stages. Parameter names follow the reference package's
`LPIPS(net="alex").state_dict()` (net.slice1.0.weight, ..., lin0.model.1.weight, scaling_layer.shift),
so that state dict, saved as safetensors, loads unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from .model_dir import load_checked, read_weights_sha

WIDTHS = (64, 192, 384, 256, 256)  # channels of the five tapped ReLUs


def _slice(layers: dict) -> nn.Sequential:
    return nn.Sequential(OrderedDict((str(i), layer) for i, layer in layers.items()))


class LPIPS(nn.Module):
    """Perceptual distance between images (N, 3, H, W) in [-1, 1]: (N,), 0 for identical images."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = nn.Module()
        self.scaling_layer.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.scaling_layer.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = nn.Module()  # AlexNet's features, split after each tapped ReLU (original layer indices)
        self.net.slice1 = _slice({0: nn.Conv2d(3, 64, 11, stride=4, padding=2), 1: nn.ReLU()})
        self.net.slice2 = _slice({2: nn.MaxPool2d(3, 2), 3: nn.Conv2d(64, 192, 5, padding=2), 4: nn.ReLU()})
        self.net.slice3 = _slice({5: nn.MaxPool2d(3, 2), 6: nn.Conv2d(192, 384, 3, padding=1), 7: nn.ReLU()})
        self.net.slice4 = _slice({8: nn.Conv2d(384, 256, 3, padding=1), 9: nn.ReLU()})
        self.net.slice5 = _slice({10: nn.Conv2d(256, 256, 3, padding=1), 11: nn.ReLU()})
        for k, width in enumerate(WIDTHS):
            lin = nn.Module()
            lin.model = nn.Sequential(nn.Dropout(), nn.Conv2d(width, 1, 1, bias=False))
            setattr(self, f"lin{k}", lin)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped activations of images (N, 3, H, W) in [-1, 1]."""
        h = (x - self.scaling_layer.shift) / self.scaling_layer.scale
        out = []
        for k in range(1, 6):
            h = getattr(self.net, f"slice{k}")(h)
            out.append(h)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS compares two RGB batches (N, 3, H, W) of one shape, got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        if min(a.shape[-2:]) < 32:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least 32x32, got {tuple(a.shape[-2:])}; "
                             f"upsample them first")
        dist = a.new_zeros(a.shape[0])
        for k, (fa, fb) in enumerate(zip(self.stages(a), self.stages(b))):
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)  # unit length along channels
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            dist = dist + getattr(self, f"lin{k}").model((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return dist


def load_lpips(path: str | Path, trust_pickle: bool = False) -> tuple[LPIPS, str]:
    """LPIPS with the weights at `path` (a full LPIPS(net="alex") state dict) in eval mode, and the file's sha256."""
    state, sha = read_weights_sha(path, "LPIPS", trust_pickle)
    if not any(k.startswith("net.slice") for k in state) or not any(k.startswith("lin") for k in state):
        raise ValueError(f"{path} is not a whole LPIPS (AlexNet) state dict: it needs the backbone (net.slice*) "
                         f"and the linear layers (lin0..lin4) together; first keys: {sorted(state)[:4]}")
    # the scaling constants are stored by some versions only
    return load_checked(LPIPS(), state, path, "LPIPS (AlexNet)", optional=lambda k: k.startswith("scaling_layer.")), sha


@torch.no_grad()
def lpips_per_frame(net: LPIPS, pred: torch.Tensor, target: torch.Tensor, size: int = 64) -> torch.Tensor:
    """LPIPS of each frame of (N, C, T, H, W) clips in [-1, 1]: (N, T); grey is repeated to RGB, small frames upsampled."""
    return lpips_frames(net, pred, target, size)


def lpips_frames(net: LPIPS, pred: torch.Tensor, target: torch.Tensor, size: int = 64) -> torch.Tensor:
    """`lpips_per_frame` with gradients (a training loss term)."""
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(f"need two videos (N, C, T, H, W) of one shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    n, c, t = pred.shape[:3]
    frames = [rearrange(v.float(), "n c t h w -> (n t) c h w") for v in (pred, target)]
    frames = [f.expand(-1, 3, -1, -1) if c == 1 else f for f in frames]
    if min(pred.shape[-2:]) < size:
        frames = [nn.functional.interpolate(f, size=(size, size), mode="bilinear", align_corners=False)
                  for f in frames]
    return rearrange(net(*frames), "(n t) -> n t", n=n, t=t)
