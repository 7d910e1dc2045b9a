"""Video files for the data tests, written with PyAV / Pillow."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# suffix -> (PyAV codec, pixel format) for the containers the tests write
CODECS = {".mp4": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p"), ".mov": ("libx264", "yuv420p"),
          ".mkv": ("ffv1", "yuv420p"), ".webm": ("libvpx", "yuv420p")}


def gradient_frames(t=12, h=40, w=48, seed=0):
    """uint8 (T, H, W, 3): colour gradients sliding one pixel per frame, different per seed."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    phase = 1.7 * seed
    r = 128 + 100 * np.sin((xx + 2 * tt) / 6 + phase)
    g = 128 + 100 * np.cos((yy - tt) / 5 + phase)
    b = 40 + 4 * (xx + yy) + 10 * seed
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def write_av(path, frames, fps=12, tone_hz=None, sample_rate=16000, gop=None):
    """Write uint8 (T, H, W, 3) with the suffix's codec; with `tone_hz`, add a mono AAC sine track."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec, pix_fmt = CODECS[path.suffix]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
        sound = None
        if tone_hz is not None:
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            n = round(len(frames) / fps * sample_rate)
            wave = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(n) / sample_rate)).astype(np.float32)
            chunk = sound.codec_context.frame_size or 1024
            for k in range(0, n, chunk):
                piece = wave[k : k + chunk]
                frame = av.AudioFrame.from_ndarray(piece[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, k
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def write_frame_folder(folder, frames, suffix=".png"):
    """One image file per frame, named so that they sort in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i:04d}{suffix}", quality=95)
