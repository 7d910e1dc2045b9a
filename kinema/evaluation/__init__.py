"""Evaluation: frame metrics (PSNR, SSIM) and, later, distribution and temporal metrics."""

from .frame_metrics import frame_metrics, psnr_per_frame, ssim_per_frame

__all__ = ["frame_metrics", "psnr_per_frame", "ssim_per_frame"]
