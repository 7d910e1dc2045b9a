"""Data: video files, clip sampling, the sample-dict contract and the data sets (knows nothing of models)."""

from kinema.data.cache import CachedClips, build_cache
from kinema.data.datasets import (
    DATASET_KINDS,
    DIRECTIONS,
    DigitTrack,
    MovingDigits,
    MovingDigitsConfig,
    build_dataset,
    dataset_options,
    digit_split,
)
from kinema.data.masks import SAMPLING_TASKS, TASKS, draw_masks, task_mask
from kinema.data.transforms import ClipConfig
from kinema.data.video_datasets import (
    UCF101,
    Kinetics400,
    VideoClips,
    VideoFolder,
    class_caption,
    preview_grid,
    summarize,
)
from kinema.data.video_io import (
    VideoInfo,
    make_grid,
    probe_video,
    read_audio,
    read_clip,
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
    "CachedClips",
    "ClipConfig",
    "DigitTrack",
    "Kinetics400",
    "SAMPLING_TASKS",
    "TASKS",
    "UCF101",
    "VideoClips",
    "VideoFolder",
    "VideoInfo",
    "build_cache",
    "class_caption",
    "dataset_options",
    "draw_masks",
    "preview_grid",
    "summarize",
    "task_mask",
    "MovingDigits",
    "MovingDigitsConfig",
    "build_dataset",
    "digit_split",
    "make_grid",
    "probe_video",
    "read_audio",
    "read_clip",
    "read_image",
    "read_video",
    "to_tensor",
    "to_uint8",
    "write_image",
    "write_video",
]
