"""Clip sampling (which frames, where the clip starts), crop / flip, seeking decode and the audio span."""

import numpy as np
import pytest
import torch
from video_fixtures import gradient_frames, write_av, write_frame_folder

from kinema.data import ClipConfig, VideoFolder, probe_video, read_audio, read_clip, read_video, write_video
from kinema.data.transforms import clip_indices, clip_span, clip_start, crop_square, frame_seconds, random_flip

# ---- which frames ----


def test_stride_and_target_fps_offsets():
    cfg = ClipConfig(num_frames=4, frame_stride=3)
    assert clip_indices(cfg, 5, fps=30) == [5, 8, 11, 14] and clip_span(cfg, 30) == 10
    assert frame_seconds(cfg, 30) == pytest.approx(0.1)
    half = ClipConfig(num_frames=4, target_fps=15)  # 30 fps source at 15 fps: every other frame
    assert clip_indices(half, 0, fps=30) == [0, 2, 4, 6] and frame_seconds(half, 30) == pytest.approx(1 / 15)
    slow = ClipConfig(num_frames=4, target_fps=20)  # 10 fps source at 20 fps: frames repeat
    assert clip_indices(slow, 0, fps=10) == [0, 0, 1, 2]  # round half to even


def test_uniform_starts_spread_evenly_and_random_starts_stay_inside():
    cfg = ClipConfig(num_frames=4, start="uniform", clips_per_video=3)
    assert [clip_start(cfg, 20, 25, k) for k in range(3)] == [0, 8, 16]  # last start 20 - 4
    assert clip_start(ClipConfig(num_frames=4, start="uniform"), 20, 25) == 8  # one clip: the middle
    rand = ClipConfig(num_frames=4, frame_stride=2)  # spans 7 frames
    starts = {clip_start(rand, 10, 25) for _ in range(200)}
    assert starts == {0, 1, 2, 3}
    assert clip_start(rand, 10, 25, deterministic=True) == 1
    with pytest.raises(ValueError, match="too short"):
        clip_start(rand, 6, 25)


@pytest.mark.parametrize("field, value", [("num_frames", 0), ("frame_stride", 0), ("target_fps", 0.0),
                                          ("start", "middle"), ("crop", "top"), ("clips_per_video", 0)])
def test_clip_config_names_the_bad_value(field, value):
    with pytest.raises(ValueError, match=field):
        ClipConfig(**{field: value})


def test_crop_and_flip():
    frames = gradient_frames(t=2, h=20, w=30)
    centre = crop_square(frames, 16, "center")
    assert centre.shape == (2, 16, 16, 3) and np.array_equal(centre, frames[:, 2:18, 7:23])
    windows = {crop_square(frames, 16, "random")[0, 0, 0].tobytes() for _ in range(100)}
    assert len(windows) > 5  # the window moves
    flips = [random_flip(frames) for _ in range(100)]
    mirrored = sum(np.array_equal(f, frames[:, :, ::-1]) for f in flips)
    assert 20 < mirrored < 80 and all(np.array_equal(f, frames) or np.array_equal(f, frames[:, :, ::-1])
                                      for f in flips)
    with pytest.raises(ValueError, match="cannot crop 32x32"):
        crop_square(frames, 32)


# ---- decoding ----


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".gif", "frames"])
def test_read_clip_equals_full_decode(tmp_path, suffix):
    video = gradient_frames(t=60, h=24, w=32)
    if suffix == "frames":
        path = tmp_path / "frames"
        write_frame_folder(path, video)
    elif suffix == ".gif":
        path = tmp_path / "a.gif"
        write_video(path, video, fps=12)
    else:
        path = tmp_path / f"a{suffix}"
        write_av(path, video, gop=10)  # a key frame every 10 frames: seeking skips most of the file
    info = probe_video(path)
    assert info.num_frames == 60 and (info.width, info.height) == (32, 24)
    full = read_video(path)
    indices = [37, 39, 41, 41, 43]
    assert np.array_equal(read_clip(path, indices), full[indices])  # seeking decodes the same pixels
    small = read_clip(path, indices, shorter_side=12)
    assert small.shape == (5, 12, 16, 3)
    with pytest.raises(ValueError):
        read_clip(path, [58, 59, 60])  # past the end
    with pytest.raises(ValueError, match="non-decreasing"):
        read_clip(path, [5, 3])


def test_audio_covers_exactly_the_clip(tmp_path):
    write_av(tmp_path / "tone.mp4", gradient_frames(t=48), fps=12, tone_hz=500.0, sample_rate=16000)
    write_av(tmp_path / "silent.mp4", gradient_frames(t=48, seed=1), fps=12)
    cfg = ClipConfig(num_frames=6, frame_stride=2, size=16, start="uniform")  # 6 frames of 1/6 s: 1 s
    ds = VideoFolder(tmp_path, cfg, audio=True, audio_rate=8000)
    tone, silent = ds[1], ds[0]  # sorted: silent.mp4, tone.mp4
    assert tone["audio"].shape == (8000,) and tone["audio"].dtype == torch.float32
    assert torch.equal(silent["audio"], torch.zeros(8000))
    spectrum = np.abs(np.fft.rfft(tone["audio"].numpy()))  # 1 s at 8 kHz: bin k is k Hz
    assert abs(int(spectrum.argmax()) - 500) <= 2 and 0.3 < float(tone["audio"].abs().max()) < 0.7
    assert read_audio(tmp_path / "tone.mp4", 0.5, 0.25, 16000).shape == (4000,)
    assert np.array_equal(read_audio(tmp_path / "tone.mp4", 10.0, 0.5, 8000), np.zeros(4000, np.float32))
