"""Video and image files: the only module that touches them.

On disk and at the user boundary a video is ``uint8 (T, H, W, C)`` with C = 3 (RGB);
inside kinema it is float ``(C, T, H, W)`` in ``[-1, 1]``. ``to_tensor`` / ``to_uint8``
convert between the two. ``probe_video`` reads a file's headers, ``read_clip`` decodes only
the frames a clip needs (seeking to the nearest key frame first) and ``read_audio`` the
matching span of the sound track.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageSequence, UnidentifiedImageError

from ..files import atomic_write

# ---- suffixes ----

AV_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")  # read with PyAV
GIF_SUFFIXES = (".gif",)  # read and written with Pillow
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")  # sound files read_audio takes besides videos
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # single frames / frame folders
WRITE_SUFFIXES = (".mp4", ".gif")  # what write_video can produce
VIDEO_SUFFIXES = AV_SUFFIXES + GIF_SUFFIXES  # single files a data set picks up as videos
MP4_CRF = 18  # x264 constant rate factor: low enough that small digits stay legible
FRAME_FOLDER_FPS = 25.0  # frame rate assumed for a folder of frames, which carries no timing
GIF_DEFAULT_FPS = 10.0  # frame rate of a gif whose frames carry no duration
# Largest image or frame kinema decodes, in pixels: below Pillow's decompression-bomb limit (89.5 M),
# above any camera's photo (a 48 MP phone shot is 8000 x 6000); 3 bytes each while decoding.
MAX_PIXELS = 64_000_000
# What a broken, truncated or mislabelled file raises while being probed or decoded.
DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError, IndexError)


# ---- helpers ----


def _check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    """Validate a uint8 (T, H, W, C) array with C in {1, 3}; return it as RGB."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(
            f"{what} must be a uint8 numpy array (T, H, W, C), got "
            f"{type(frames).__name__} dtype={getattr(frames, 'dtype', None)} "
            f"shape={getattr(frames, 'shape', None)}"
        )
    t, h, w, c = frames.shape
    if c not in (1, 3) or min(t, h, w) < 1:
        raise ValueError(f"{what} must have T, H, W >= 1 and C in (1, 3), got shape {frames.shape}")
    if c == 1:
        frames = np.repeat(frames, 3, axis=-1)  # (T, H, W, 3)
    return frames


def _pil_rgb(image: Image.Image) -> np.ndarray:
    """One Pillow image as uint8 (H, W, 3)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _stack(frames: list[np.ndarray], path: Path) -> np.ndarray:
    """Stack (H, W, 3) frames into (T, H, W, 3), failing if there are none or sizes differ."""
    if not frames:
        raise ValueError(f"no frames found in {path}")
    sizes = {f.shape for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"frames in {path} differ in size: {sorted(sizes)}")
    return np.stack(frames)  # (T, H, W, 3)


def _read_av(path: Path, last: Optional[int], shorter_side: Optional[int]) -> np.ndarray:
    """Decode the first video stream of a container file with PyAV, keeping only the last `last` frames."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            ctx = stream.codec_context
            _check_pixels(ctx.width, ctx.height, path)
            size = _scaled_size(ctx.width, ctx.height, shorter_side) if ctx.width and ctx.height else None
            frames: deque = deque(maxlen=last)  # scaled while decoding: one full-size frame at a time
            for frame in container.decode(stream):
                size = size or _scaled_size(frame.width, frame.height, shorter_side)
                frames.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA"))
    except av.FFmpegError as err:
        raise ValueError(f"could not decode {path}: {err}") from err
    return _stack(list(frames), path)


def _check_pixels(width: int, height: int, path: Path) -> None:
    """Refuse an image or frame above MAX_PIXELS before decoding it (a tiny file can hold a huge picture)."""
    if width * height > MAX_PIXELS:
        raise ValueError(f"{path} is {width}x{height} = {width * height / 1e6:.0f} megapixels; kinema reads at most "
                         f"{MAX_PIXELS / 1e6:.0f} (kinema.data.video_io.MAX_PIXELS); scale it down first")


def _read_gif(path: Path, last: Optional[int] = None, shorter_side: Optional[int] = None) -> np.ndarray:
    """Decode the frames of a gif with Pillow (disposal already composited), keeping the last `last`, scaled."""
    with Image.open(path) as image:
        _check_pixels(image.width, image.height, path)
        frames = deque((resize_shorter(_pil_rgb(f), shorter_side) for f in ImageSequence.Iterator(image)), maxlen=last)
    return _stack(list(frames), path)


def _frame_files(path: Path) -> list[Path]:
    """The image files of a frame folder, sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_folder(path: Path, last: Optional[int], shorter_side: Optional[int]) -> np.ndarray:
    """Read the image files of a folder, sorted by name, as frames (the last `last` of them)."""
    files = _frame_files(path)
    return _stack([read_image(p, shorter_side=shorter_side) for p in files[-last if last else 0:]], path)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """Encode (T, H, W, 3) frames as H.264 / yuv420p with the moov atom up front."""
    # yuv420p subsamples chroma by 2, so x264 needs even sizes: replicate the last row / column.
    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001), options={"crf": str(MP4_CRF)}
        )
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush: x264 holds back frames for lookahead


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write a looping gif; grey frames go in as mode L so their values survive exactly."""
    grey = bool((frames == frames[..., :1]).all())
    images = [Image.fromarray(f[..., 0] if grey else f, mode="L" if grey else "RGB") for f in frames]
    # Note: Pillow merges identical consecutive frames into one longer frame.
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=1000.0 / fps, optimize=False
    )


# ---- public API ----


def read_video(path: str | Path, *, last: Optional[int] = None, shorter_side: Optional[int] = None) -> np.ndarray:
    """Read a video file, gif or folder of frames; returns uint8 (T, H, W, 3) RGB.

    `last` keeps only the last frames (a container file seeks to them when its header counts its
    frames) and `shorter_side` scales each frame while decoding, so memory holds `last` small frames,
    not the whole video at full size.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video file or folder: {path}")
    if last is not None and last < 1:
        raise ValueError(f"last must be >= 1 frame, got {last}")
    if path.is_dir():
        return _read_folder(path, last, shorter_side)
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file (a pipe or device?); give a video file")
    suffix = path.suffix.lower()
    if suffix in AV_SUFFIXES:
        if last is not None:
            try:
                count = probe_video(path).num_frames
                if count > last:  # seek to the tail; a header whose count lies falls back to a full decode
                    return read_clip(path, range(count - last, count), shorter_side)
            except ValueError:
                pass
        return _read_av(path, last, shorter_side)
    if suffix in GIF_SUFFIXES:
        return _read_gif(path, last, shorter_side)
    raise ValueError(
        f"unknown video suffix {suffix!r} for {path}; allowed: "
        f"{AV_SUFFIXES + GIF_SUFFIXES} or a folder of {IMAGE_SUFFIXES} frames"
    )


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8) -> None:
    """Write uint8 (T, H, W, C), C in {1, 3}, to .mp4 (H.264, odd sizes edge-padded) or .gif, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise ValueError(f"cannot write video {path}: suffix {suffix!r} not in {WRITE_SUFFIXES} (any case)")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    frames = _check_frames(frames)
    _make_parent(path)
    writer = _write_mp4 if suffix == ".mp4" else _write_gif
    atomic_write(path, lambda tmp: writer(tmp, frames, fps), durable=False)


def read_image(path: str | Path, *, shorter_side: Optional[int] = None) -> np.ndarray:
    """Read one image file; returns uint8 (H, W, 3) RGB, its shorter side scaled to `shorter_side` if given.

    Images above MAX_PIXELS are refused before decoding; large ones are scaled down as they decode
    (JPEG) or right after, so only one full-size copy ever exists.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    try:
        with Image.open(path) as image:
            _check_pixels(image.width, image.height, path)
            if shorter_side is not None:
                image.draft("RGB", _scaled_size(image.width, image.height, shorter_side))  # JPEG: decode small
                size = _scaled_size(image.width, image.height, shorter_side)
                if size != image.size:
                    return _pil_rgb(image.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
            return _pil_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        # PIL raises SyntaxError for some broken files
        raise ValueError(f"cannot read {path} as an image: {err}") from err


def write_image(path: str | Path, frame: np.ndarray) -> None:
    """Write one uint8 (H, W, C) frame, C in {1, 3}, as an image (png by default), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write image {path}: suffix {suffix!r} not in {IMAGE_SUFFIXES} (any case)")
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ValueError(
            f"frame must be a uint8 numpy array (H, W, C), got {type(frame).__name__} "
            f"shape={getattr(frame, 'shape', None)}"
        )
    rgb = _check_frames(frame[None], "frame")[0]  # (H, W, 3)
    _make_parent(path)
    fmt = Image.registered_extensions()[suffix]
    atomic_write(path, lambda tmp: Image.fromarray(rgb, mode="RGB").save(tmp, format=fmt), durable=False)


def _make_parent(path: Path) -> None:
    """Create the folder of an output file, naming it when that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot create the folder of {path}: {err.strerror or err}") from err


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float32 (C, T, H, W) in [-1, 1]; a leading batch axis is kept."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim not in (4, 5):
        raise ValueError(
            f"to_tensor expects a uint8 array ([B,] T, H, W, C), got "
            f"dtype={getattr(frames, 'dtype', None)} shape={getattr(frames, 'shape', None)}"
        )
    video = torch.from_numpy(np.require(frames, requirements=["C", "W"])).float() / 127.5 - 1.0  # copy only if read-only
    return rearrange(video, "... t h w c -> ... c t h w").contiguous()  # ([B,] C, T, H, W)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, C), clamped and rounded; batch kept."""
    if not isinstance(video, torch.Tensor) or not video.is_floating_point() or video.ndim not in (4, 5):
        raise ValueError(
            f"to_uint8 expects a float tensor ([B,] C, T, H, W), got "
            f"dtype={getattr(video, 'dtype', None)} shape={tuple(getattr(video, 'shape', ()))}"
        )
    levels = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(levels, "... c t h w -> ... t h w c").numpy()  # ([B,] T, H, W, C)


def make_grid(videos: np.ndarray, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 (N, T, H, W, C) into one uint8 (T, H', W', C) with `pad`-px black borders."""
    if not isinstance(videos, np.ndarray) or videos.dtype != np.uint8 or videos.ndim != 5:
        raise ValueError(
            f"make_grid expects a uint8 array (N, T, H, W, C), got "
            f"dtype={getattr(videos, 'dtype', None)} shape={getattr(videos, 'shape', None)}"
        )
    n = videos.shape[0]
    if n < 1:
        raise ValueError(f"make_grid needs at least one video, got shape {videos.shape}")
    ncol = math.ceil(math.sqrt(n)) if ncol is None else ncol
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    nrow = math.ceil(n / ncol)
    blank = np.zeros((nrow * ncol - n, *videos.shape[1:]), dtype=np.uint8)  # empty cells
    cells = np.concatenate([videos, blank])  # (nrow * ncol, T, H, W, C)
    cells = np.pad(cells, ((0, 0), (0, 0), (pad, 0), (pad, 0), (0, 0)))  # border above / left
    grid = rearrange(cells, "(nr nc) t h w c -> t (nr h) (nc w) c", nr=nrow, nc=ncol)
    return np.pad(grid, ((0, 0), (0, pad), (0, pad), (0, 0)))  # closing border below / right


# ---- the result of a generation ----


class Video:
    """A batch of generated clips, uint8 (B, T, H, W, C), that saves to mp4 / gif and converts to numpy / torch."""

    def __init__(self, frames: np.ndarray, fps: float = 8.0):
        if frames.ndim != 5 or frames.dtype != np.uint8:
            raise ValueError(f"Video needs uint8 (B, T, H, W, C) frames, got {frames.dtype} {frames.shape}")
        self.frames, self.fps = frames, fps

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> "Video":
        """The i-th clip as a one-clip Video (negative i counts from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"clip {i} of a Video of {n} clips")
        i %= n
        return Video(self.frames[i : i + 1], self.fps)

    def __iter__(self):
        """One one-clip Video per clip."""
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """np.asarray(video): the uint8 (B, T, H, W, C) frames (a copy when numpy asks for one)."""
        frames = self.frames if dtype is None else self.frames.astype(dtype)
        return frames.copy() if copy and frames is self.frames else frames

    def numpy(self) -> np.ndarray:
        """uint8 (B, T, H, W, C)."""
        return self.frames

    def torch(self) -> torch.Tensor:
        """float (B, C, T, H, W) in [-1, 1]."""
        return to_tensor(self.frames)

    def save(self, path: str | Path, fps: Optional[int] = None) -> Path:
        """Write an .mp4 or .gif: the clip itself when B = 1, else all clips tiled in a grid."""
        frames = self.frames[0] if len(self) == 1 else make_grid(self.frames)
        write_video(path, frames, fps=fps or self.fps)
        return Path(path)


# ---- clips: probing, seeking decode, audio ----


@dataclass(frozen=True)
class VideoInfo:
    """What a video's headers say, read without decoding its frames."""

    num_frames: int  # frames of the first video stream
    fps: float  # frames per second (the stream's average rate)
    width: int  # frame width in pixels
    height: int  # frame height in pixels
    has_audio: bool  # whether an audio stream is present

    @property
    def duration(self) -> float:
        """Seconds of video."""
        return self.num_frames / self.fps


def _scaled_size(width: int, height: int, shorter_side: Optional[int]) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to `shorter_side` (unchanged when None)."""
    if shorter_side is None:
        return width, height
    scale = shorter_side / min(width, height)
    return max(shorter_side, round(width * scale)), max(shorter_side, round(height * scale))


def resize_shorter(frame: np.ndarray, shorter_side: Optional[int]) -> np.ndarray:
    """One uint8 (H, W, C) frame, C in {1, 3}, with its shorter side scaled (Pillow bilinear, antialiased)."""
    h, w = frame.shape[:2]
    size = _scaled_size(w, h, shorter_side)
    if size == (w, h):
        return frame
    return np.asarray(Image.fromarray(frame.squeeze(-1) if frame.shape[-1] == 1 else frame).resize(
        size, Image.Resampling.BILINEAR)).reshape(size[1], size[0], frame.shape[-1])


def _probe_av(path: Path) -> VideoInfo:
    """Frame count, rate and size from a container's headers (packets are counted when it has no count)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {path}")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise ValueError(f"no frame rate in {path}")
        num_frames = stream.frames
        if num_frames <= 0:  # mkv / webm headers carry no frame count: demux (no decoding) and count
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        ctx = stream.codec_context
        return VideoInfo(int(num_frames), float(rate), ctx.width, ctx.height, bool(container.streams.audio))


def _probe_gif(path: Path) -> VideoInfo:
    """Frame count, mean frame rate and size of a gif."""
    with Image.open(path) as image:
        durations = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(image)]
        width, height = image.size
    mean_ms = sum(durations) / len(durations)
    return VideoInfo(len(durations), 1000.0 / mean_ms if mean_ms > 0 else GIF_DEFAULT_FPS, width, height, False)


class _SeekOvershoot(ValueError):
    """Seeking landed after the wanted frame (bad index in the file): decode from the start instead."""


def _read_av_clip(path: Path, indices: Sequence[int], shorter_side: Optional[int], seek: bool) -> np.ndarray:
    """Decode the frames at `indices` from the key frame before the first one; uint8 (T, H, W, 3)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate)
        time_base, t0 = float(stream.time_base), stream.start_time or 0
        if seek and indices[0] > 0:  # lands on the key frame at or before the first wanted frame
            container.seek(t0 + int(indices[0] / fps / time_base), stream=stream, backward=True)
        frames, j, size = [], 0, None
        for frame in container.decode(stream):
            if frame.pts is None:
                raise ValueError(f"a frame without a timestamp in {path}")
            index = round((frame.pts - t0) * time_base * fps)  # source frame number
            if index < indices[j]:
                continue
            if not frames and index > indices[0]:
                raise _SeekOvershoot(f"seeking in {path} passed frame {indices[0]} (landed on {index})")
            if size is None:
                size = _scaled_size(frame.width, frame.height, shorter_side)
            rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
            while j < len(indices) and indices[j] <= index:  # a frame may serve several wanted indices
                frames.append(rgb)
                j += 1
            if j == len(indices):
                break
    if j < len(indices):
        raise ValueError(f"{path} ended early: decoded {j} of the {len(indices)} clip frames "
                         f"(wanted source frames up to {indices[-1]})")
    return np.stack(frames)  # (T, H, W, 3)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, fps, size and audio presence of a video file, gif or frame folder, from headers only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video file or folder: {path}")
    try:
        if path.is_dir():
            files = _frame_files(path)
            if not files:
                raise ValueError(f"no frames found in {path}")
            with Image.open(files[0]) as image:
                return VideoInfo(len(files), FRAME_FOLDER_FPS, image.width, image.height, False)
        suffix = path.suffix.lower()
        if suffix in AV_SUFFIXES:
            return _probe_av(path)
        if suffix in GIF_SUFFIXES:
            return _probe_gif(path)
    except av.FFmpegError as err:
        raise ValueError(f"could not open {path}: {err}") from err
    raise ValueError(f"unknown video suffix {suffix!r} for {path}; allowed: {VIDEO_SUFFIXES} or a frame folder")


def read_clip(path: str | Path, indices: Sequence[int], shorter_side: Optional[int] = None) -> np.ndarray:
    """Decode only source frames `indices` (non-decreasing), shorter side scaled; uint8 (len(indices), H, W, 3).

    Container files seek to the key frame before the first index, so a short clip from a long
    file decodes about one key-frame interval plus the clip, not the whole file.
    """
    path = Path(path)
    indices = [int(i) for i in indices]
    if not indices or indices[0] < 0 or any(b < a for a, b in zip(indices, indices[1:])):
        raise ValueError(f"indices must be a non-empty non-decreasing list of frame numbers >= 0, got {indices}")
    if path.is_dir():
        files = _frame_files(path)
        if indices[-1] >= len(files):
            raise ValueError(f"{path} has {len(files)} frames, clip wants frame {indices[-1]}")
        frames = [read_image(files[i], shorter_side=shorter_side) for i in indices]
        return _stack(frames, path)
    suffix = path.suffix.lower()
    if suffix in GIF_SUFFIXES:
        every = _read_gif(path, shorter_side=shorter_side)  # gifs are small: decode all, keep the wanted frames
        if indices[-1] >= len(every):
            raise ValueError(f"{path} has {len(every)} frames, clip wants frame {indices[-1]}")
        return np.stack([every[i] for i in indices])
    if suffix not in AV_SUFFIXES:
        raise ValueError(f"unknown video suffix {suffix!r} for {path}; allowed: {VIDEO_SUFFIXES}")
    try:
        try:
            return _read_av_clip(path, indices, shorter_side, seek=True)
        except _SeekOvershoot:
            return _read_av_clip(path, indices, shorter_side, seek=False)
    except av.FFmpegError as err:
        raise ValueError(f"could not decode {path}: {err}") from err


def read_audio(path: str | Path, start: float = 0.0, duration: Optional[float] = None, sample_rate: int = 16000, *,
               required: bool = False) -> np.ndarray:
    """Mono float32 audio of the first audio stream from `start` s, at `sample_rate`: the one audio decoder.

    With `duration`, exactly round(duration * sample_rate) samples, zeros where nothing was recorded (before
    the sound starts, after it ends, or a file without sound); without it, all the sound from `start` on.
    `required` makes a missing file or a file without sound an error instead of silence (user input).
    """
    if start < 0 or (duration is not None and duration <= 0) or sample_rate <= 0:
        raise ValueError(f"need start >= 0, duration > 0, sample_rate > 0; got {start}, {duration}, {sample_rate}")
    path = Path(path)
    silent = np.zeros(0 if duration is None else round(duration * sample_rate), dtype=np.float32)
    if required and not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir() or path.suffix.lower() not in AV_SUFFIXES + AUDIO_SUFFIXES:
        if required:
            raise ValueError(f"cannot read audio from {path}: suffix {path.suffix!r} not in "
                             f"{AV_SUFFIXES + AUDIO_SUFFIXES}")
        return silent
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                if required:
                    raise ValueError(f"{path} has no audio stream")
                return silent
            stream = container.streams.audio[0]
            time_base, t0 = float(stream.time_base), stream.start_time or 0
            # mono float at the target rate (libav's filter, no aliasing); exact times by interpolation below
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            if start > 0:
                container.seek(t0 + int(start / time_base), stream=stream, backward=True)
            chunks, first = [], None
            for frame in container.decode(stream):
                if frame.pts is None:
                    raise ValueError(f"an audio frame without a timestamp in {path}")
                begins = (frame.pts - t0) * time_base  # seconds
                first = begins if first is None else first
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
                if duration is not None and begins > start + duration:
                    break
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as err:
        raise ValueError(f"cannot read audio from {path}: {err}") from err
    if not chunks:
        return silent
    samples = np.concatenate(chunks)  # (N,) at sample_rate, the first one at `first` seconds
    have = first + np.arange(len(samples)) / sample_rate
    num = len(silent) if duration is not None else max(0, round((have[-1] - start) * sample_rate) + 1)
    want = start + np.arange(num) / sample_rate
    return np.interp(want, have, samples, left=0.0, right=0.0).astype(np.float32)
