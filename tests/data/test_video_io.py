"""Contracts of kinema.data.video_io: round trips, encoder settings, errors."""

import itertools
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from kinema.data import make_grid, read_image, read_video, to_tensor, to_uint8, write_image, write_video
from kinema.data.video_io import Video


def moving_gradient(t=12, h=32, w=48):
    """A smooth colour video: uint8 (T, H, W, 3) gradients sliding over time."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    r = 128 + 100 * np.sin((xx + 2 * tt) / 9)
    g = 128 + 100 * np.cos((yy - tt) / 7)
    b = 64 + 2 * (xx + yy)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def ffprobe(path):
    """ffprobe's view of the first video stream (counting the decoded frames)."""
    cmd = [
        "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
        "-show_entries", "stream=nb_read_frames,width,height,codec_name,pix_fmt", "-of", "json", str(path),
    ]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["streams"][0]


# CI installs Debian's ffmpeg (.ci/run) and must run these; elsewhere they need ffprobe on PATH
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None and not os.environ.get("CI"),
                                   reason="ffprobe not installed (apt-get install ffmpeg)")


# ---- mp4 ----


def test_mp4_round_trip_is_close(tmp_path):
    video = moving_gradient()
    write_video(tmp_path / "a.mp4", video, fps=8)
    back = read_video(tmp_path / "a.mp4")
    assert back.shape == video.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - video).mean() < 8  # H.264 is lossy, crf 18 is close


@needs_ffprobe
@pytest.mark.parametrize("t, h, w", [(12, 32, 48), (7, 33, 47)])
def test_mp4_is_browser_friendly_h264_with_every_frame(tmp_path, t, h, w):
    path = tmp_path / "sub" / "v.mp4"  # parent folder is created
    write_video(path, moving_gradient(t, h, w))
    info = ffprobe(path)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert int(info["nb_read_frames"]) == t
    assert (info["height"], info["width"]) == (h + h % 2, w + w % 2)  # padded up to even
    head = path.read_bytes()[:64]
    assert head.index(b"moov") < 64  # +faststart: the index comes before the media data


def test_mp4_odd_size_pads_by_edge_replication(tmp_path):
    video = moving_gradient(6, 33, 47)
    write_video(tmp_path / "odd.mp4", video)
    back = read_video(tmp_path / "odd.mp4").astype(int)
    assert back.shape == (6, 34, 48, 3)
    assert np.abs(back[:, :33, :47] - video).mean() < 8
    assert np.abs(back[:, 33, :47] - video[:, 32]).mean() < 8  # last row repeated


def test_grayscale_input_becomes_rgb(tmp_path):
    grey = moving_gradient()[..., :1]  # (T, H, W, 1)
    write_video(tmp_path / "g.mp4", grey)
    back = read_video(tmp_path / "g.mp4").astype(int)
    assert back.shape == grey.shape[:3] + (3,)
    assert np.abs(back - grey).mean() < 8


# ---- gif, images, frame folders ----


def test_gif_round_trip_is_exact_for_grey(tmp_path):
    grey = moving_gradient()[..., :1]
    write_video(tmp_path / "g.gif", grey, fps=10)
    back = read_video(tmp_path / "g.gif")
    assert back.shape == (12, 32, 48, 3)
    np.testing.assert_array_equal(back, np.repeat(grey, 3, axis=-1))


def test_gif_colour_keeps_frames_and_loops(tmp_path):
    from PIL import Image

    video = moving_gradient()
    write_video(tmp_path / "c.gif", video, fps=10)
    back = read_video(tmp_path / "c.gif")
    assert back.shape == video.shape
    assert np.abs(back.astype(int) - video).mean() < 8  # palette quantisation only
    with Image.open(tmp_path / "c.gif") as image:
        assert image.info["loop"] == 0 and image.info["duration"] == 100


def test_image_round_trip_is_exact(tmp_path):
    frame = moving_gradient()[0]
    write_image(tmp_path / "f.png", frame)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png"), frame)


def test_frame_folder_is_read_sorted_by_name(tmp_path):
    video = moving_gradient(t=5)
    for i in reversed(range(5)):  # write out of order: the reader must sort
        write_image(tmp_path / "frames" / f"{i:04d}.png", video[i])
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    np.testing.assert_array_equal(read_video(tmp_path / "frames"), video)


# ---- errors ----


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")


@pytest.mark.parametrize("name", ["clip.xyz", "clip.webp.txt"])
def test_unknown_suffix_names_the_path(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match=name):
        read_video(tmp_path / name)
    with pytest.raises(ValueError, match=name):
        write_video(tmp_path / name, moving_gradient(t=2))


def test_empty_folder_and_broken_file_fail(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        read_video(tmp_path / "empty")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="broken.mp4"):
        read_video(tmp_path / "broken.mp4")


@pytest.mark.parametrize(
    "frames",
    [np.zeros((4, 8, 8, 3), np.float32), np.zeros((8, 8, 3), np.uint8), np.zeros((4, 8, 8, 2), np.uint8)],
)
def test_bad_frames_are_rejected(tmp_path, frames):
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "x.mp4", frames)


def test_bad_fps_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.gif", moving_gradient(t=2), fps=0)


# ---- tensors and grids ----


def test_tensor_round_trip_is_exact():
    video = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    x = to_tensor(video)
    assert x.shape == (3, 3, 4, 5) and x.dtype == torch.float32  # (C, T, H, W)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[:, 1, 2, 3], torch.from_numpy(video[1, 2, 3]).float() / 127.5 - 1)
    np.testing.assert_array_equal(to_uint8(x), video)


def test_to_uint8_clamps_and_keeps_a_batch():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0]).reshape(1, 1, 1, 1, 5).expand(2, 1, 1, 1, 5)
    out = to_uint8(x)
    assert out.shape == (2, 1, 1, 5, 1) and out.dtype == np.uint8  # (B, T, H, W, C)
    assert out[0, 0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


@pytest.mark.parametrize("n, ncol, rows, cols", [(1, None, 1, 1), (5, None, 2, 3), (4, None, 2, 2), (3, 1, 3, 1)])
def test_make_grid_shape_and_placement(n, ncol, rows, cols):
    videos = np.full((n, 2, 6, 7, 3), 200, dtype=np.uint8)
    grid = make_grid(videos, ncol=ncol, pad=2)
    assert grid.shape == (2, rows * 6 + (rows + 1) * 2, cols * 7 + (cols + 1) * 2, 3)
    assert (grid[:, :2] == 0).all() and (grid[:, :, :2] == 0).all()  # black border
    np.testing.assert_array_equal(grid[:, 2:8, 2:9], videos[0])  # first cell top-left
    assert (grid == 200).sum() == videos.size  # every video once, nothing else


def test_a_video_iterates_over_its_clips_and_converts_to_numpy():
    """`for clip in video` ends after the last clip, indexing past it raises, np.asarray gives the frames."""
    frames = np.random.default_rng(0).integers(0, 255, (3, 2, 4, 4, 1), dtype=np.uint8)
    video = Video(frames, fps=8)
    clips = list(itertools.islice(video, 10))  # islice: an iteration that never ends fails here instead of hanging
    assert len(clips) == 3 and all(len(c) == 1 for c in clips)
    assert np.array_equal(clips[2].numpy()[0], frames[2]) and np.array_equal(video[-1].numpy()[0], frames[2])
    with pytest.raises(IndexError, match="clip 3 of a Video of 3 clips"):
        video[3]
    with pytest.raises(IndexError):
        video[-4]
    assert np.asarray(video).shape == (3, 2, 4, 4, 1) and np.asarray(video).dtype == np.uint8
