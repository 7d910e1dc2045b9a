"""Per-frame fidelity metrics: PSNR and SSIM, per frame and averaged, on videos in [-1, 1].

SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
the dynamic range L of the data (2 for [-1, 1]), averaged over the valid (unpadded) positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

# ---- helpers ----


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(f"expected two videos (B, C, T, H, W) of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """A normalised 2-D Gaussian window (size, size), float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


# ---- metrics ----


def psnr_per_frame(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0,
                   floor: float | None = None) -> torch.Tensor:
    """PSNR in dB of each frame, (B, T); MSE below `floor` counts as `floor` (None: identical frames give inf)."""
    _check_pair(pred, target)
    mse = ((pred.double() - target.double()) ** 2).mean(dim=(1, 3, 4))  # (B, T)
    if floor is not None:
        mse = mse.clamp_min(floor)
    return 10 * torch.log10(data_range**2 / mse)


def ssim_per_frame(pred: torch.Tensor, target: torch.Tensor, data_range: float = 2.0, window: int = 11,
                   sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of each frame over its channels and valid window positions, (B, T)."""
    _check_pair(pred, target)
    b, c = pred.shape[:2]
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"frames of {tuple(pred.shape[-2:])} are smaller than the {window}x{window} SSIM window")
    x = rearrange(pred, "b c t h w -> (b t c) 1 h w")
    y = rearrange(target, "b c t h w -> (b t c) 1 h w")
    w = gaussian_window(window, sigma).to(x.device)[None, None]  # (1, 1, k, k)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per = []
    # images at a time: the convolutions' unfolded windows (k^2 doubles a pixel) stay near 256 MB for any clip
    chunk = max(1, 2**25 // (window * window * x.shape[-2] * x.shape[-1]))
    for lo in range(0, x.shape[0], chunk):
        xs, ys = x[lo:lo + chunk].double(), y[lo:lo + chunk].double()
        mu_x, mu_y = F.conv2d(xs, w), F.conv2d(ys, w)
        var_x = F.conv2d(xs * xs, w) - mu_x**2
        var_y = F.conv2d(ys * ys, w) - mu_y**2
        cov = F.conv2d(xs * ys, w) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        per.append(ssim_map.mean(dim=(1, 2, 3)))  # (chunk,)
    return rearrange(torch.cat(per), "(b t c) -> b t c", b=b, c=c).mean(-1)


# an error of half a uint8 level everywhere: frames equal after 8-bit rounding score 54.2 dB, not inf
UINT8_MSE_FLOOR = (2.0 / 255 / 2) ** 2


def frame_metrics(pred: torch.Tensor, target: torch.Tensor, frames: torch.Tensor | None = None) -> dict:
    """PSNR and SSIM per frame (averaged over clips) and overall, on the frames selected by `frames` (T,) bool.

    PSNR per frame is capped at 54.2 dB (an error of half a uint8 level) so that a frame that
    happens to be exact does not make the average infinite.
    """
    psnr, ssim = psnr_per_frame(pred, target, floor=UINT8_MSE_FLOOR), ssim_per_frame(pred, target)
    if frames is not None:
        psnr, ssim = psnr[:, frames], ssim[:, frames]
    return {"psnr": psnr.mean().item(), "ssim": ssim.mean().item(),
            "psnr_per_frame": psnr.mean(0).tolist(), "ssim_per_frame": ssim.mean(0).tolist()}


def naive_baselines(clips: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two answers a model must beat for clips (N, C, T, H, W) given frames `known` (T,), same shape each.

    "repeat last known frame": every unknown frame copies the nearest known frame before it (after it,
    when none comes before). "linear blending": between two known frames a linear cross-fade; after the
    last one each pixel extrapolated linearly from the last two known frames (clamped to [-1, 1]); a
    lone known frame is repeated. Known frames are copied in.
    """
    t = clips.shape[2]
    if known.shape != (t,) or not known.any():
        raise ValueError(f"known must be a (T,) = ({t},) bool mask with at least one known frame, got "
                         f"shape {tuple(known.shape)} with {int(known.sum())} known")
    index = torch.nonzero(known).flatten().tolist()
    repeat, linear = clips.clone(), clips.clone()
    for i in range(t):
        if known[i]:
            continue
        before, after = [j for j in index if j < i], [j for j in index if j > i]
        src = before[-1] if before else after[0]
        repeat[:, :, i] = clips[:, :, src]
        if before and after:
            a, b = before[-1], after[0]
            w = (i - a) / (b - a)
            linear[:, :, i] = (1 - w) * clips[:, :, a] + w * clips[:, :, b]
        elif len(before) >= 2:
            a, b = before[-2], before[-1]
            linear[:, :, i] = (clips[:, :, b] + (i - b) / (b - a) * (clips[:, :, b] - clips[:, :, a])).clamp(-1, 1)
        else:
            linear[:, :, i] = clips[:, :, src]
    return {"repeat last known frame": repeat, "linear blending": linear}
