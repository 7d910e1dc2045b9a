"""The measurements of `kinema eval`: the draw loop around a sampling function and every score.

The protocol and the real clips are `protocol.py`'s. Sampling itself is a callable handed in (the command line wraps the pipeline in one), so this
module never imports the pipeline.

Scores, each labelled in the report:
- FD-digits / KID-digits: Fréchet and kernel distances on kinema's moving-digits network (not FVD);
- FVD: Fréchet distance on I3D logits, only with I3D weights given, else "unavailable";
- frame metrics (tasks with a target): PSNR / SSIM on the generated frames, mean over the draws,
  and, with several draws per clip, best of the draws and the score of their average;
- alignment (moving digits): digit and direction accuracy, height-pitch correlation with audio,
  and the entropy of the generated digit classes (diversity);
- temporal: flicker index and warping error from `kinema.evaluation.temporal`, when present.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .alignment import (
    DigitClassifier,
    centroid_track,
    direction_of,
    height_pitch_correlation,
    identity_scores,
    path_error,
)
from .features import (
    WEIGHTS,
    clip_features,
    frechet_distance,
    gaussian_stats,
    kernel_distance,
    load_feature_net,
)
from .frame_metrics import UINT8_MSE_FLOOR, naive_baselines, psnr_per_frame, ssim_per_frame
from ..models.lpips import load_lpips, lpips_per_frame
from .protocol import EvalProtocol, rows_of
from .temporal import flicker_index, warping_error

# a sampling function: (batch of real items {"video" (B, C, T, H, W), "caption", "audio"?}, steps, seed)
# -> generated clips (B, C, T, H, W) in [-1, 1], given frames included
SampleFn = Callable[[dict, int, int], torch.Tensor]

# ---- the draw loop ----


def draw_clips(sample: SampleFn, real: dict, protocol: EvalProtocol, steps: int,
               progress: bool = True) -> torch.Tensor:
    """(draws, N, C, T, H, W) clips from `sample`, batch by batch, with the protocol's seeds; checks each batch."""
    n, bs = protocol.num_clips, protocol.batch_size
    draws = []
    with tqdm(total=n * protocol.draws, desc=f"sample {protocol.sampler} {steps} steps", unit="clip",
              disable=not progress) as bar:
        for d in range(protocol.draws):
            parts = []
            for b, i in enumerate(range(0, n, bs)):
                batch = rows_of(real, i, min(i + bs, n))
                out = sample(batch, steps, protocol.seed + 1000 * d + b)
                want = tuple(batch["video"].shape)
                if tuple(out.shape) != want:
                    raise ValueError(f"the sampling function returned shape {tuple(out.shape)}, expected {want}")
                parts.append(out.float().cpu())
                bar.update(len(out))
            draws.append(torch.cat(parts))
    return torch.stack(draws)


# ---- scores ----


@dataclass
class Scorers:
    digits: Optional[tuple] = None  # (DigitMotionNet, sha256) on moving digits
    classifier: Optional[DigitClassifier] = None  # digit classes on moving digits
    i3d: Optional[tuple] = None  # (I3D, sha256, path)
    fvd_reason: str = "no --i3d weights given; FVD needs the Kinetics-400 I3D weights, which kinema cannot ship"
    flow: Optional[torch.nn.Module] = None  # an optical-flow network for the warping error
    lpips: Optional[tuple] = None  # (LPIPS, sha256, path) when the user gives its weights

    def networks(self) -> dict:
        """Which feature networks scored this run, with their weights' sha256."""
        out = {"fd_digits": {"available": False, "reason": "the digit network applies to moving-digits data only"}}
        if self.digits is not None:
            out["fd_digits"] = {"available": True, "name": "DigitMotionNet (kinema, moving digits; not I3D, not FVD)",
                                "weights": str(WEIGHTS), "sha256": self.digits[1], "features": "pooled, 64-d"}
        out["fvd"] = {"available": False, "reason": self.fvd_reason}
        out["lpips"] = {"available": False, "reason": "no --lpips weights given (an LPIPS AlexNet state dict)"}
        if self.lpips is not None:
            out["lpips"] = {"available": True, "name": "LPIPS, AlexNet (Zhang et al. 2018)", "weights": self.lpips[2],
                            "sha256": self.lpips[1], "preprocessing": "grey to RGB, frames under 64 px bilinearly "
                                                                      "upsampled to 64x64, values in [-1, 1]"}
        if self.i3d is not None:
            from .fvd import FVD_FRAMES, FVD_SIZE

            out["fvd"] = {"available": True, "name": f"I3D Inception-v1, {self.i3d[0].num_classes} classes",
                          "weights": self.i3d[2], "sha256": self.i3d[1],
                          "features": f"{self.i3d[0].num_classes} logits averaged over time (before softmax)",
                          "preprocessing": f"first {FVD_FRAMES} frames, gray to RGB, bilinear resize to "
                                           f"{FVD_SIZE}x{FVD_SIZE}, values in [-1, 1]"}
        return out


def build_scorers(kind: str, i3d_path: Optional[str] = None, trust_pickle: bool = False,
                  flow: Optional[torch.nn.Module] = None, digit_size: int = 14,
                  lpips_path: Optional[str] = None) -> Scorers:
    """The scoring networks for a data kind: the digit networks on moving digits, I3D / LPIPS when their weights are given."""
    scorers = Scorers(flow=flow)
    if lpips_path is not None:
        net, sha = load_lpips(lpips_path, trust_pickle=trust_pickle)
        scorers.lpips = (net, sha, str(lpips_path))
    if i3d_path is not None:  # first: a bad path fails before the slower set-up
        from .fvd import load_i3d

        net, sha = load_i3d(i3d_path, trust_pickle=trust_pickle)
        scorers.i3d = (net, sha, str(i3d_path))
    if kind == "moving-digits":
        scorers.digits = load_feature_net()
        scorers.classifier = DigitClassifier(digit_size=digit_size)
    return scorers


def feature_sets(clips: torch.Tensor, scorers: Scorers, progress: bool = False) -> dict:
    """Features of clips (N, C, T, H, W) from each available network: {"digits": (N, 64), "i3d": (N, 400)}."""
    out = {}
    if scorers.digits is not None:
        out["digits"] = clip_features(scorers.digits[0], clips)
    if scorers.i3d is not None:
        from .fvd import i3d_features

        out["i3d"] = i3d_features(scorers.i3d[0], clips, progress=progress)
    return out


def distribution_scores(real: dict, fake: dict, seed: int = 0) -> dict:
    """FD-digits and KID-digits (digit features) and FVD (I3D features) between two `feature_sets`."""
    out = {}
    if "digits" in real:
        out["fd_digits"] = frechet_distance(*gaussian_stats(real["digits"]), *gaussian_stats(fake["digits"]))
        out["kid_digits"] = kernel_distance(real["digits"], fake["digits"], seed=seed)
    if "i3d" in real:
        out["fvd"] = frechet_distance(*gaussian_stats(real["i3d"]), *gaussian_stats(fake["i3d"]))
    return out


def calibration(real: torch.Tensor, other: torch.Tensor, scorers: Scorers, seed: int = 0) -> dict:
    """FD-digits and KID-digits of real clips (N, C, T, H, W) against another real draw, it shuffled in time, and noise.

    A trustworthy score orders them real < shuffled < noise: the first is the floor a perfect
    model reaches at this clip count.
    """
    if scorers.digits is None:
        return {}
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(other.shape[2], generator=g) for _ in range(len(other))])  # (N, T)
    shuffled = torch.stack([clip[:, idx] for clip, idx in zip(other, order)])  # frames of each clip permuted
    noise = torch.rand(other.shape, generator=g) * 2 - 1
    digits_only = Scorers(digits=scorers.digits)
    ref = feature_sets(real, digits_only)
    return {name: distribution_scores(ref, feature_sets(clips, digits_only), seed=seed)
            for name, clips in (("real_vs_real", other), ("real_vs_shuffled", shuffled), ("real_vs_noise", noise))}


def frame_scores(fake: torch.Tensor, real: torch.Tensor, known: torch.Tensor, lpips=None) -> dict:
    """PSNR / SSIM (and LPIPS, given its network) of draws (S, N, C, T, H, W) against real (N, C, T, H, W) on the
    frames not `known` (T,).

    "mean_over_draws": every draw counts; "best_of_draws" (S > 1): per clip, the draw with the best
    score of that metric (highest PSNR / SSIM, lowest LPIPS); "average_of_draws" (S > 1): the scores of
    the pixel-wise mean of the draws, a Monte-Carlo estimate of the posterior mean E[x | given frames],
    which is the prediction with the least expected squared error. Per-frame curves cover all T frames
    (given ones are exact copies).
    """
    metrics = {"psnr": torch.stack([psnr_per_frame(f, real, floor=UINT8_MSE_FLOOR) for f in fake]),  # (S, N, T)
               "ssim": torch.stack([ssim_per_frame(f, real) for f in fake])}
    if lpips is not None:
        metrics["lpips"] = torch.stack([lpips_per_frame(lpips, f, real) for f in fake])
    gen = ~known
    mean = {}
    for name, values in metrics.items():
        mean[name] = values[..., gen].mean().item()
    for name, values in metrics.items():
        mean[f"{name}_per_frame"] = values.mean(dim=(0, 1)).tolist()
    out = {"draws": len(fake), "frames_counted": torch.nonzero(gen).flatten().tolist(), "mean_over_draws": mean}
    if len(fake) > 1:
        clips = torch.arange(fake.shape[1])
        best = {}
        for name, values in metrics.items():
            score = values[..., gen].mean(-1)  # (S, N)
            pick = (score.argmin(0) if name == "lpips" else score.argmax(0))  # (N,) the best draw of each clip
            chosen = values[pick, clips]  # (N, T)
            best[name], best[f"{name}_per_frame"] = chosen[:, gen].mean().item(), chosen.mean(0).tolist()
        out["best_of_draws"] = best
        average = frame_scores(fake.mean(0, keepdim=True), real, known, lpips)["mean_over_draws"]
        out["average_of_draws"] = average
    return out


def digit_diversity(digits: list[int]) -> dict:
    """Entropy of the digit classes shown (bits, and over log2 10), the class histogram and the share with no digit."""
    shown = np.array([d for d in digits if d >= 0], dtype=np.int64)
    counts = np.bincount(shown, minlength=10)
    p = counts[counts > 0] / max(counts.sum(), 1)
    bits = float(-(p * np.log2(p)).sum()) + 0.0 if len(shown) else 0.0  # + 0.0: one class gives 0, not -0
    return {"entropy_bits": bits, "entropy_normalised": bits / np.log2(10), "histogram": counts.tolist(),
            "no_digit_fraction": 1 - len(shown) / max(len(digits), 1)}


def alignment_scores(fake: torch.Tensor, real: dict, protocol: EvalProtocol, classifier: DigitClassifier) -> dict:
    """Moving digits: do clips (N, C, T, H, W) show the digit, motion and pitch their conditions asked for?"""
    digits = [classifier.predict(v) for v in fake]
    per_frame = [classifier.frame_digits(v) for v in fake]
    out = {}
    if protocol.task == "generate":
        out["diversity"] = digit_diversity(digits)
    if protocol.task != "generate" or {"text", "image"} & set(protocol.conditions):
        out["digit_accuracy"] = float(np.mean([d == t for d, t in zip(digits, real["digit"].tolist())]))
        out.update(identity_scores(per_frame, real["digit"].tolist()))  # the prompt's or given frames' digit
    else:  # unconditioned: does each clip keep the digit it shows most?
        out.update(identity_scores(per_frame, digits))
    if "text" in protocol.conditions:  # the caption names the initial motion
        out["direction_accuracy"] = float(np.mean([direction_of(centroid_track(v)) == t
                                                   for v, t in zip(fake, real["direction"].tolist())]))
    elif protocol.task != "generate":  # the motion of the generated span, from the last given frame on
        start = max(int(torch.nonzero(~protocol.known())[0]) - 1, 0)
        same = [direction_of(centroid_track(v[:, start:])) == direction_of(centroid_track(r[:, start:]))
                for v, r in zip(fake, real["video"])]
        out["direction_agreement_with_real"] = float(np.mean(same))
    if "trajectory" in protocol.conditions:  # does the digit's centre follow the clip's true track?
        out.update(trajectory_scores(fake, real["trajectory"]))
    if "audio" in protocol.conditions:
        c = np.array([height_pitch_correlation(centroid_track(v), p.numpy()) for v, p in zip(fake, real["pitch"])])
        out["height_pitch_correlation"] = float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")
        out["height_pitch_clips_scored"] = int(np.isfinite(c).sum())
    return out


def trajectory_scores(videos: torch.Tensor, paths: torch.Tensor) -> dict:
    """Mean and median distance (pixels) of clips' (N, C, T, H, W) tracked centre to their paths (N, T, 1, 2)."""
    size = videos.shape[-1]
    errors = np.array([path_error(centroid_track(v), p[:, 0].numpy(), size) for v, p in zip(videos, paths)])
    found = errors[np.isfinite(errors)]
    return {"trajectory_error_px": float(found.mean()) if len(found) else float("nan"),
            "trajectory_error_px_median": float(np.median(found)) if len(found) else float("nan"),
            "trajectory_clips_scored": int(len(found))}


def temporal_scores(videos: torch.Tensor, flow: Optional[torch.nn.Module] = None) -> dict:
    """Flicker index (and warping error, given a flow network) of clips (N, C, T, H, W)."""
    out = {"available": True, "flicker_index": float(flicker_index(videos).mean())}
    if flow is not None:
        out["warping_error"] = float(warping_error(videos, flow).mean())
    return out


def _clip_scores(fake: torch.Tensor, real: dict, real_features: dict, protocol: EvalProtocol,
                 scorers: Scorers) -> dict:
    """Every score of draws (S, N, C, T, H, W) at one step count; distribution scores use the first draw."""
    first = fake[0]
    fake_features = feature_sets(first[:, :, protocol.counted()], scorers, progress=True)
    out = distribution_scores(real_features, fake_features, seed=protocol.seed)
    if scorers.i3d is None:
        out["fvd"] = "unavailable"
    if protocol.task != "generate":
        out["frame_metrics"] = frame_scores(fake, real["video"], protocol.known(),
                                            lpips=scorers.lpips[0] if scorers.lpips is not None else None)
    if scorers.classifier is not None:
        out["alignment"] = alignment_scores(first, real, protocol, scorers.classifier)
        out["frame_digits"] = [scorers.classifier.frame_digits(v).tolist() for v in first]  # per clip: what failed
    out["temporal"] = temporal_scores(first, scorers.flow)
    return out


# ---- the whole evaluation ----


def evaluate(sample: SampleFn, protocol: EvalProtocol, scorers: Scorers, real: dict,
             other: Optional[dict] = None, progress: bool = True) -> tuple[dict, dict]:
    """Draw, score and time each step count; return the report and the clips {steps: (draws, N, C, T, H, W)}."""
    report = {"protocol": protocol.record(), "feature_networks": scorers.networks(), "real": {}, "results": []}
    counted = protocol.counted()
    if other is not None:
        report["calibration"] = calibration(real["video"][:, :, counted], other["video"][:, :, counted], scorers,
                                            seed=protocol.seed)
    if scorers.classifier is not None and protocol.task == "generate":
        report["real"]["diversity"] = digit_diversity([scorers.classifier.predict(v) for v in real["video"]])
    report["real"]["temporal"] = temporal_scores(real["video"], scorers.flow)
    if "trajectory" in protocol.conditions:  # the floor: the tracker's own error on the real clips
        report["real"]["trajectory"] = trajectory_scores(real["video"], real["trajectory"])
    if protocol.task != "generate":  # what copying or blending the given frames scores on the same targets
        report["real"]["baselines"] = {
            name: {k: v for k, v in frame_scores(guess[None], real["video"], protocol.known())["mean_over_draws"].items()
                   if not k.endswith("_per_frame")}
            for name, guess in naive_baselines(real["video"], protocol.known()).items()}
    t0 = time.perf_counter()
    real_features = feature_sets(real["video"][:, :, counted], scorers, progress=progress)
    report["real"]["seconds_features"] = round(time.perf_counter() - t0, 2)
    clips = {}
    for steps in protocol.steps:
        t0 = time.perf_counter()
        fake = draw_clips(sample, real, protocol, steps, progress=progress)  # (S, N, C, T, H, W)
        t1 = time.perf_counter()
        row = {"steps": steps, **_clip_scores(fake, real, real_features, protocol, scorers)}
        t2 = time.perf_counter()
        row["seconds"] = {"sampling": round(t1 - t0, 2), "scoring": round(t2 - t1, 2)}
        report["results"].append(row)
        clips[steps] = fake
    return report, clips
