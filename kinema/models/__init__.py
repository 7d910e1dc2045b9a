"""Networks only: no beta or sigma anywhere."""

from .unet import SpaceTimeUNet, count_parameters

__all__ = ["SpaceTimeUNet", "count_parameters"]
