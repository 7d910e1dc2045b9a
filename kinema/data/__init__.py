"""Data: video files, the sample-dict contract and built-in data sets (knows nothing of models)."""

from kinema.data.datasets import (
    DATASET_KINDS,
    DIRECTIONS,
    DigitTrack,
    MovingDigits,
    MovingDigitsConfig,
    build_dataset,
    digit_split,
)
from kinema.data.masks import TASKS, draw_masks, task_mask
from kinema.data.video_io import (
    make_grid,
    read_image,
    read_video,
    to_tensor,
    to_uint8,
    write_image,
    write_video,
)

__all__ = [
    "DATASET_KINDS",
    "DIRECTIONS",
    "DigitTrack",
    "TASKS",
    "draw_masks",
    "task_mask",
    "MovingDigits",
    "MovingDigitsConfig",
    "build_dataset",
    "digit_split",
    "make_grid",
    "read_image",
    "read_video",
    "to_tensor",
    "to_uint8",
    "write_image",
    "write_video",
]
