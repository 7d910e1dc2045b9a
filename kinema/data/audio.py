"""Audio: write a wav, and log-mel features aligned to video frames (files are read by `video_io.read_audio`).

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

from ..files import atomic_write

# ---- files ----


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> Path:
    """Write mono float audio in [-1, 1] (A,) as 16-bit PCM wav."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (A,), got shape {audio.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(pcm.tobytes())

    return atomic_write(path, write, durable=False)


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


def audio_features(audio: torch.Tensor, *, rate: int, num_frames: int, n_mels: int,
                   steps_per_frame: int) -> torch.Tensor:
    """Log-mel features (B, n_mels, num_frames * steps_per_frame) of sound (B, A) that spans the clip exactly.

    The one feature function and the one frame-rate rule: the sound lasts as long as the clip, so a frame
    stands for A / num_frames samples (fps = rate * num_frames / A), in training and in sampling alike.
    """
    fps = rate * num_frames / audio.shape[-1]
    return log_mel(audio, rate=rate, fps=fps, num_frames=num_frames, n_mels=n_mels, steps_per_frame=steps_per_frame)


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
