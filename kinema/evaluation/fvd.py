"""FVD: the Fréchet distance between I3D features of real and generated clips (Unterthiner et al. 2018).

The network is I3D (Carreira & Zisserman 2017): Inception-v1 inflated to 3-D, trained on the 400
classes of Kinetics. kinema ships the architecture, never the weights, and downloads nothing: give
the weights as a file (`--i3d PATH`). Parameter names follow the widely shared PyTorch port of I3D
(`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.running_mean`, ..., `logits.conv3d.bias`), so its
Kinetics-400 state dict loads as is.

The protocol is the reference one:
- clips: the first 16 frames (fewer only if the clips are shorter; the report says so);
- preprocessing: gray to RGB by repetition, bilinear resize of every frame to 224x224, values in
  [-1, 1] (kinema's videos already are);
- features: the 400 Kinetics logits, averaged over time, before the softmax. That is the tensor the
  reference TensorFlow code reads from the TF-Hub module (`RGB/inception_i3d/Mean`) and what the
  common PyTorch re-implementations return; the 1024-d pooled features are available too
  (`kind="pool"`) but give figures that are not comparable with published FVDs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..models.model_dir import load_checked, read_weights_sha

FVD_FRAMES = 16  # frames per clip in the reference protocol
FVD_SIZE = 224  # frame side the network was trained at
FEATURE_SIZES = {"logits": 400, "pool": 1024}

# ---- layers ----


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) as TensorFlow's "SAME" does: output = ceil(input / stride), extra on the far side."""
    pads = []
    for size, k, s in zip(x.shape[-3:], kernel, stride):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    (t0, t1), (h0, h1), (w0, w1) = pads
    return F.pad(x, (w0, w1, h0, h1, t0, t1))


class Unit3D(nn.Module):
    """Conv3d with "SAME" padding, then batch norm and ReLU (the logits layer: bias, neither of the two)."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = tuple(kernel), tuple(stride), head
        self.conv3d = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(c_out, eps=1e-3, momentum=0.01)  # the TF model's epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class SamePool(nn.Module):
    """3-D max pooling with "SAME" padding; zero padding is exact here, as every input follows a ReLU."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """The Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | pool -> 1x1, concatenated on channels."""

    def __init__(self, c_in: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(c_in, w0)
        self.b1a, self.b1b = Unit3D(c_in, w1a), Unit3D(w1a, w1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(c_in, w2a), Unit3D(w2a, w2b, (3, 3, 3))
        self.b3a, self.b3b = SamePool((3, 3, 3), (1, 1, 1)), Unit3D(c_in, w3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# ---- the network ----


class I3D(nn.Module):
    """Inception-v1 I3D: (B, 3, T, 224, 224) in [-1, 1] -> pooled features (B, 1024), class logits (B, classes)."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        trunk = [  # (name, layer) in order; widths of the Inception modules from Szegedy et al. (2015), Table 1
            ("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))),
            ("MaxPool3d_2a_3x3", SamePool((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3D(64, 64)),
            ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
            ("MaxPool3d_3a_3x3", SamePool((1, 3, 3), (1, 2, 2))),
            ("Mixed_3b", Mixed(192, (64, 96, 128, 16, 32, 32))),
            ("Mixed_3c", Mixed(256, (128, 128, 192, 32, 96, 64))),
            ("MaxPool3d_4a_3x3", SamePool((3, 3, 3), (2, 2, 2))),
            ("Mixed_4b", Mixed(480, (192, 96, 208, 16, 48, 64))),
            ("Mixed_4c", Mixed(512, (160, 112, 224, 24, 64, 64))),
            ("Mixed_4d", Mixed(512, (128, 128, 256, 24, 64, 64))),
            ("Mixed_4e", Mixed(512, (112, 144, 288, 32, 64, 64))),
            ("Mixed_4f", Mixed(528, (256, 160, 320, 32, 128, 128))),
            ("MaxPool3d_5a_2x2", SamePool((2, 2, 2), (2, 2, 2))),
            ("Mixed_5b", Mixed(832, (256, 160, 320, 32, 128, 128))),
            ("Mixed_5c", Mixed(832, (384, 192, 384, 48, 128, 128))),
        ]
        for name, layer in trunk:
            self.add_module(name, layer)  # top-level names, as the shared state dicts have them
        self.trunk = [name for name, _ in trunk]
        self.dropout = nn.Dropout(0.5)  # training only; no parameters
        self.logits = Unit3D(1024, num_classes, head=True)
        self.num_classes = num_classes

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features (B, 1024), logits (B, classes)), both averaged over the remaining time steps."""
        x = video
        for name in self.trunk:
            x = getattr(self, name)(x)  # (B, 1024, T/8, H/32, W/32) at the end
        t, h, w = x.shape[-3:]
        x = F.avg_pool3d(x, (min(2, t), h, w), stride=1)  # the reference 2x7x7 window at 224 px, 16 frames
        logits = self.logits(self.dropout(x))  # (B, classes, T', 1, 1)
        return x.mean(dim=(2, 3, 4)), logits.mean(dim=(2, 3, 4))


# ---- weights ----


def load_i3d(path: str | Path, trust_pickle: bool = False) -> tuple[I3D, str]:
    """I3D with the weights at `path` in eval mode, and the file's sha256; the class count is read from the file."""
    state, sha = read_weights_sha(path, "I3D", trust_pickle)
    if "logits.conv3d.weight" not in state:
        raise ValueError(f"{path} has no 'logits.conv3d.weight'; is it an Inception-v1 I3D state dict? "
                         f"first keys: {sorted(state)[:5]}")
    net = I3D(num_classes=state["logits.conv3d.weight"].shape[0])
    return load_checked(net, state, path, "I3D", optional=lambda k: k.endswith("num_batches_tracked")), sha


# ---- features ----


def preprocess(videos: torch.Tensor, frames: int = FVD_FRAMES, size: int = FVD_SIZE) -> torch.Tensor:
    """(B, C, T, H, W) in [-1, 1], C = 1 or 3 -> (B, 3, min(T, frames), size, size): first frames, RGB, resized."""
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos (B, 1 or 3, T, H, W), got shape {tuple(videos.shape)}")
    x = videos[:, :, :frames].float()
    x = x.expand(-1, 3, -1, -1, -1) if x.shape[1] == 1 else x
    b = x.shape[0]
    flat = rearrange(x, "b c t h w -> (b t) c h w")
    flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return rearrange(flat, "(b t) c h w -> b c t h w", b=b).clamp(-1, 1)


@torch.no_grad()
def i3d_features(net: I3D, videos: torch.Tensor, kind: str = "logits", batch: int = 8,
                 progress: bool = False) -> np.ndarray:
    """float64 (N, 400) logits (or (N, 1024) pooled features) of clips (N, C, T, H, W) in [-1, 1]."""
    from tqdm.auto import tqdm

    if kind not in FEATURE_SIZES:
        raise ValueError(f"kind must be one of {sorted(FEATURE_SIZES)}, got {kind!r}")
    out = []
    for i in tqdm(range(0, len(videos), batch), desc="I3D features", unit="batch", disable=not progress):
        pool, logits = net(preprocess(videos[i : i + batch]))
        out.append(logits if kind == "logits" else pool)
    return torch.cat(out).double().numpy()
