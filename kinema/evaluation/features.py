"""A Fréchet distance on kinema's own moving-digits feature network ("FD-digits"; not FVD).

FVD uses an I3D network trained on Kinetics; its weights cannot ship here. For the built-in data
kinema trains a small 3D-conv classifier (digit class and initial motion direction) on the train
split and ships its weights in the package; the Fréchet distance between the Gaussian fits of its
pooled features on real and generated clips scores a sampler or a model offline. The figure is
comparable only between runs that use the same network (its weights' sha256 is reported). KID
(the unbiased kernel distance) on the same features is labelled "KID-digits" likewise.

    python -m kinema.evaluation.features --steps 800   # retrain and write the shipped weights
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import DIRECTIONS, MovingDigits, MovingDigitsConfig
from ..models.model_dir import load_checked
from ..models.model_dir import read_weights_sha

WEIGHTS = Path(__file__).parent / "weights" / "digit-features.safetensors"

# ---- the network ----


class DigitMotionNet(nn.Module):
    """(B, 1, T, H, W) clip in [-1, 1] -> 64-d pooled features, digit logits (10), direction logits (8)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(c_in, c_out, stride):
            return nn.Sequential(nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out),
                                 nn.SiLU())

        self.body = nn.Sequential(block(1, w, (1, 2, 2)), block(w, 2 * w, (1, 2, 2)), block(2 * w, 4 * w, (1, 2, 2)),
                                  block(4 * w, 4 * w, (2, 1, 1)))
        self.digit = nn.Linear(4 * w, 10)
        self.direction = nn.Linear(4 * w, len(DIRECTIONS))

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, 64) of clips (B, 1, T, H, W)."""
        return self.body(video).mean(dim=(2, 3, 4))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features (B, 64), digit logits (B, 10), direction logits (B, 8))."""
        f = self.features(video)
        return f, self.digit(f), self.direction(f)


def load_feature_net(path: str | Path = WEIGHTS) -> tuple[DigitMotionNet, str]:
    """The shipped (or given) feature network in eval mode, and its weights' sha256."""
    state, sha = read_weights_sha(path, "feature network")
    return load_checked(DigitMotionNet(), state, path, "feature network"), sha


@torch.no_grad()
def clip_features(net: DigitMotionNet, videos: torch.Tensor, batch: int = 64) -> np.ndarray:
    """float64 (N, 64) features of float clips (N, 1, T, H, W) in [-1, 1]."""
    out = [net.features(videos[i : i + batch].float()) for i in range(0, len(videos), batch)]
    return torch.cat(out).double().numpy()


# ---- distances between feature sets: Fréchet, kernel (KID) ----


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)) between two Gaussians (Dowson & Landau 1982)."""
    from scipy import linalg

    covmean = linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():  # near-singular product: nudge both diagonals, as the FID code does
        eps = 1e-6 * np.eye(len(cov1))
        covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples (m, D) and (n, D) with the cubic kernel k(a, b) = (a.b / D + 1)^3."""
    d = x.shape[1]
    k_xx, k_yy, k_xy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))  # i != j only: this makes it unbiased
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> dict:
    """KID (Binkowski et al. 2018): mean and std of the unbiased MMD^2 over random subsets of features (N, D).

    Each subset draws min(subset_size, len(x), len(y)) rows of each set without replacement;
    when that is every row of both sets, one subset is the whole answer (subsets = 1, std = 0).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"need two feature sets (N >= 2, D) of one D, got shapes {x.shape} and {y.shape}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(x), len(y))
    if m == len(x) == len(y):
        subsets = 1  # every subset would be both whole sets
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
              for _ in range(subsets)]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "subsets": subsets, "subset_size": m}


# ---- training (writes the shipped weights) ----


def _batch(ds: MovingDigits, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in indices]
    video = torch.stack([it["video"] for it in items])
    labels = torch.stack([it["labels"][0] for it in items])  # (B, 2): digit, direction
    return video, labels[:, 0], labels[:, 1]


def train_feature_net(steps: int = 800, batch: int = 32, seed: int = 0, out: str | Path = WEIGHTS) -> dict:
    """Train the network on the train split (16- and 8-frame clips), save it, and report test-split accuracy."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    net = DigitMotionNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    train = MovingDigits(MovingDigitsConfig(num_frames=16, max_digits=1, split="train", length=10**6, seed=seed))
    rng = np.random.default_rng(seed)
    for step in tqdm(range(steps), desc="feature net", unit="step"):
        video, digit, direction = _batch(train, rng.integers(0, len(train), batch).tolist())
        if step % 2:
            video = video[:, :, :8]  # also short clips: the diffusion models' windows differ
        _, dl, rl = net(video)
        loss = F.cross_entropy(dl, digit) + F.cross_entropy(rl, direction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    test = MovingDigits(MovingDigitsConfig(num_frames=16, max_digits=1, split="test", length=512, seed=seed + 1))
    video, digit, direction = _batch(test, list(range(len(test))))
    with torch.no_grad():
        _, dl, rl = net(video)
        _, dl8, rl8 = net(video[:, :, :8])
    report = {"steps": steps, "batch": batch, "test_clips": len(test),
              "digit_accuracy_16": (dl.argmax(1) == digit).float().mean().item(),
              "direction_accuracy_16": (rl.argmax(1) == direction).float().mean().item(),
              "digit_accuracy_8": (dl8.argmax(1) == digit).float().mean().item(),
              "direction_accuracy_8": (rl8.argmax(1) == direction).float().mean().item()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="train kinema's moving-digits feature network")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    print(json.dumps(train_feature_net(args.steps, out=args.out), indent=2))
