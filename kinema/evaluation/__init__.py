"""Evaluation: frame metrics, Fréchet and kernel distances (FD-digits, KID-digits, FVD with given I3D weights),
alignment and the `kinema eval` report."""

from .evaluate import EvalProtocol, evaluate
from .features import frechet_distance, kernel_distance
from .frame_metrics import frame_metrics, naive_baselines, psnr_per_frame, ssim_per_frame
from .fvd import I3D, load_i3d
from .report import write_report

__all__ = ["EvalProtocol", "I3D", "evaluate", "frame_metrics", "frechet_distance", "kernel_distance", "load_i3d",
           "naive_baselines", "psnr_per_frame", "ssim_per_frame", "write_report"]
