"""The `natural` data kind: pans over packaged photos and windows of packaged clips, offline."""

import numpy as np
import pytest
import torch

from kinema.config import DataConfig
from kinema.data import build_dataset
from kinema.data.datasets import dataset_options
from kinema.data.natural import (TEST_CLIPS, TEST_PHOTOS, TRAIN_CLIPS, TRAIN_PHOTOS, NaturalVideo,
                                 NaturalVideoConfig, _scaled_clip, pan_over)

pytest.importorskip("skimage")


def test_items_are_rgb_clips_in_range_and_a_pure_function_of_seed_split_and_index():
    ds = NaturalVideo(NaturalVideoConfig(size=16, num_frames=5, length=6, clip_share=0.5))
    a, b = ds[3], ds[3]
    assert a["video"].shape == (3, 5, 16, 16) and a["video"].dtype == torch.float32
    assert a["video"].min() >= -1 and a["video"].max() <= 1
    assert torch.equal(a["video"], b["video"])
    assert not torch.equal(ds[3]["video"], ds[4]["video"])
    other = NaturalVideo(NaturalVideoConfig(size=16, num_frames=5, length=6, clip_share=0.5, seed=1))
    assert not torch.equal(other[3]["video"], a["video"])
    with pytest.raises(IndexError, match="out of range"):
        ds[6]


def test_a_window_the_size_of_the_output_copies_the_photos_pixels():
    photo = torch.rand(3, 20, 30) * 2 - 1
    # centre (y, x) = (top + 4, left + 4) with side 8: output pixel i samples photo pixel top + i exactly
    centres = np.array([[3 + 4, 5 + 4], [3 + 4, 11 + 4]], dtype=np.float64)
    out = pan_over(photo, centres, np.array([8.0, 8.0]), 8)  # (3, 2, 8, 8)
    torch.testing.assert_close(out[:, 0], photo[:, 3:11, 5:13], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1], photo[:, 3:11, 11:19], atol=1e-5, rtol=0)


def test_a_window_twice_the_output_averages_pixel_pairs():
    photo = torch.rand(3, 8, 8)
    out = pan_over(photo, np.array([[4.0, 4.0]]), np.array([8.0]), 4)[:, 0]  # (3, 4, 4): 2x smaller
    # output pixel i sits at photo coordinate 2i + 0.5: the mean of pixels 2i and 2i + 1 on each axis
    expected = photo.unfold(1, 2, 2).unfold(2, 2, 2).mean(dim=(-1, -2))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_the_test_split_holds_material_training_never_sees():
    assert not set(TEST_PHOTOS) & set(TRAIN_PHOTOS) and not set(TEST_CLIPS) & set(TRAIN_CLIPS)
    ds = NaturalVideo(NaturalVideoConfig(size=16, num_frames=4, length=3, split="test", clip_share=1.0))
    assert ds.photos == TEST_PHOTOS and ds.clips == TEST_CLIPS
    frames = _scaled_clip("bikes.mp4", 16)  # (N, 16, W, 3): every test clip is a window of these frames
    video = ((ds[0]["video"] + 1) * 127.5).round().permute(1, 2, 3, 0).numpy().astype(np.uint8)  # (T, S, S, 3)
    n, h, w, _ = frames.shape
    found = any(np.array_equal(video, frames[s:s + 4, :, x:x + 16][:, :, ::f])
                for s in range(n - 3) for x in range(w - 15) for f in (1, -1))
    assert found


def test_the_kind_builds_from_a_data_config_without_a_root_and_refuses_unknown_options():
    config = DataConfig(kind="natural", size=16, num_frames=3, length=2)
    ds = build_dataset("natural", **dataset_options(config, split="test"))
    assert len(ds) == 2 and ds[1]["video"].shape == (3, 3, 16, 16) and ds.config.split == "test"
    with pytest.raises(ValueError, match="unknown options"):
        build_dataset("natural", size=16, root="x")
    with pytest.raises(ValueError, match="split"):
        NaturalVideoConfig(split="val")
