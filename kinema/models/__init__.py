"""Networks only: no beta or sigma anywhere."""

from .cache import FeatureCache, StepCache
from .unet import SpaceTimeUNet, count_parameters

__all__ = ["FeatureCache", "SpaceTimeUNet", "StepCache", "count_parameters"]
