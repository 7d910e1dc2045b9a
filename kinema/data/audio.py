"""Audio: load a sound file (PyAV) or write a wav, and log-mel features aligned to video frames.

A clip's audio is mono float32 (A,) in [-1, 1] at `rate` Hz covering exactly its frames, so frame
t spans samples [t * rate / fps, (t + 1) * rate / fps). `log_mel` keeps that alignment: its
columns come in groups of `steps_per_frame`, group t covering frame t.
"""

from __future__ import annotations

import math
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac")

# ---- files ----


def load_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """A whole sound file (or a video's first audio stream) as mono float32 (A,) at `rate`; errors if it has none.

    For user input (a prompt's sound track). Data sets read a clip's span with `video_io.read_audio`.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(audio=0):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]  # flush
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot read audio from {path}: {err}") from err
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> Path:
    """Write mono float audio in [-1, 1] (A,) as 16-bit PCM wav."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (A,), got shape {audio.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def fit_length(audio: np.ndarray | torch.Tensor, length: int):
    """Cut or zero-pad the last axis to `length` samples."""
    n = audio.shape[-1]
    if n >= length:
        return audio[..., :length]
    if isinstance(audio, torch.Tensor):
        return torch.nn.functional.pad(audio, (0, length - n))
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - n)])


# ---- features ----


def hz_to_mel(f):
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of hz_to_mel."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(n_fft: int, rate: int, n_mels: int, f_min: float = 60.0) -> torch.Tensor:
    """Triangular HTK filters (n_mels, n_fft // 2 + 1) between f_min and rate / 2; band m peaks at mel_centers()[m]."""
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(rate / 2), n_mels + 2))  # (n_mels + 2,)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise, fall = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
    return torch.from_numpy(np.maximum(0, np.minimum(rise, fall))).float()


def mel_centers(rate: int, n_mels: int, f_min: float = 60.0) -> np.ndarray:
    """Centre frequency in Hz of each mel band."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(rate / 2), n_mels + 2))[1:-1]


def log_mel(audio: torch.Tensor, *, rate: int, fps: float, num_frames: int, n_mels: int = 32,
            steps_per_frame: int = 4) -> torch.Tensor:
    """Log-mel features (..., n_mels, num_frames * steps_per_frame) of audio (..., A); column group t covers frame t."""
    hop = rate / (fps * steps_per_frame)
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"rate / (fps * steps_per_frame) = {hop:.3f} samples must be whole; choose another rate")
    hop = int(round(hop))
    n_fft = 2 ** math.ceil(math.log2(2 * hop))
    columns = num_frames * steps_per_frame
    x = fit_length(audio.float(), columns * hop)
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    # column j is centred on sample (j + 1/2) hop, the middle of its slice of the frame
    x = torch.nn.functional.pad(x, (n_fft // 2 - hop // 2, n_fft // 2 + hop // 2))
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft, device=x.device), center=False,
                      return_complex=True)[..., :columns]  # (N, F, columns)
    power = spec.abs().pow(2)
    mel = mel_filterbank(n_fft, rate, n_mels).to(x.device) @ power  # (N, n_mels, columns)
    return torch.log(mel + 1e-6).reshape(*lead, n_mels, columns)


def dominant_frequency(audio: np.ndarray, *, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """The strongest frequency (Hz) of each video frame's slice of mono audio: (num_frames,)."""
    per = int(round(rate / fps))
    audio = fit_length(np.asarray(audio, dtype=np.float64), per * num_frames)
    out = []
    for t in range(num_frames):
        chunk = audio[t * per : (t + 1) * per] * np.hanning(per)
        spectrum = np.abs(np.fft.rfft(chunk, n=4 * per))
        out.append(np.argmax(spectrum[1:]) + 1)
    return np.asarray(out, dtype=np.float64) * rate / (4 * per)
