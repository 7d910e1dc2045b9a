"""Audio: wav round trip, frame-aligned log-mel features, and the moving-digits sound track."""

import numpy as np
import pytest
import torch

from kinema.data import MovingDigits, MovingDigitsConfig
from kinema.data import read_audio
from kinema.data.audio import dominant_frequency, log_mel, mel_centers, write_wav
from kinema.data.datasets import PITCH_RANGE, bounce_frames, digit_pitch

RATE, FPS = 16000, 8


def _tone(freqs, rate=RATE, fps=FPS):
    """A tone holding freqs[t] during frame t."""
    per = rate // fps
    f = np.repeat(np.asarray(freqs, dtype=np.float64), per)
    return (0.5 * np.sin(2 * np.pi * np.cumsum(f) / rate)).astype(np.float32)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 3000.0])
def test_log_mel_of_a_tone_peaks_in_the_band_nearest_its_frequency(freq):
    mel = log_mel(torch.from_numpy(_tone([freq] * 4)), rate=RATE, fps=FPS, num_frames=4, n_mels=32,
                  steps_per_frame=4)
    assert mel.shape == (32, 16)
    expected = int(np.argmin(np.abs(mel_centers(RATE, 32) - freq)))
    assert set(mel.argmax(dim=0).tolist()) <= {expected - 1, expected, expected + 1}
    assert int(mel.mean(dim=1).argmax()) == expected


def test_log_mel_columns_follow_the_frames():
    """A tone that jumps at frame 2 shows the jump in column group 2, not before."""
    mel = log_mel(torch.from_numpy(_tone([300, 300, 2000, 2000])), rate=RATE, fps=FPS, num_frames=4, n_mels=32,
                  steps_per_frame=4)
    peaks = mel.argmax(dim=0).reshape(4, 4)  # (frame, column in frame)
    centers = mel_centers(RATE, 32)
    low, high = int(np.argmin(np.abs(centers - 300))), int(np.argmin(np.abs(centers - 2000)))
    assert (peaks[0] == low).all() and (peaks[1, :3] == low).all()
    assert (peaks[2, 1:] == high).all() and (peaks[3] == high).all()


def test_log_mel_batches_and_pads():
    audio = torch.zeros(3, 100)  # far too short: zero-padded
    mel = log_mel(audio, rate=RATE, fps=FPS, num_frames=2, n_mels=8, steps_per_frame=2)
    assert mel.shape == (3, 8, 4) and torch.isfinite(mel).all()
    with pytest.raises(ValueError, match="whole"):
        log_mel(audio, rate=RATE, fps=7, num_frames=2)


def test_wav_round_trip_through_pyav(tmp_path):
    tone = _tone([440] * 8)
    path = write_wav(tmp_path / "t.wav", tone, RATE)
    back = read_audio(path, sample_rate=RATE, required=True)
    assert abs(len(back) - len(tone)) <= 1 and np.abs(back[: len(tone)] - tone[: len(back)]).max() < 1e-3
    half = read_audio(path, sample_rate=RATE // 2, required=True)  # resampled
    assert abs(len(half) - len(tone) // 2) <= 64
    assert np.allclose(dominant_frequency(half, rate=RATE // 2, fps=FPS, num_frames=8), 440, atol=10)


def test_read_audio_errors_only_when_required(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_audio(tmp_path / "missing.wav", required=True)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=f"cannot read audio from {bad}"):
        read_audio(bad, required=True)
    assert read_audio(tmp_path / "clip.gif", 0.0, 0.5, RATE).shape == (RATE // 2,)  # no sound: silence


def test_moving_digits_sound_follows_height_and_clicks_at_bounces():
    ds = MovingDigits(MovingDigitsConfig(num_frames=16, max_digits=1, audio=True, length=20, seed=3))
    checked_bounce = False
    for i in range(20):
        item, track = ds[i], ds.tracks(i)[0]
        audio = item["audio"].numpy()
        assert audio.shape == (16 * RATE // FPS,) and np.abs(audio).max() <= 1
        pitch = digit_pitch(track.positions.astype(float), ds.config.size - ds.config.digit_size)
        assert PITCH_RANGE[0] - 1e-6 <= pitch.min() and pitch.max() <= PITCH_RANGE[1] + 1e-6
        found = dominant_frequency(audio, rate=RATE, fps=FPS, num_frames=16)
        assert np.all(np.abs(np.log(found / pitch)) < 0.12), (found, pitch)  # within ~2 semitones
        per = RATE // FPS
        for t in bounce_frames(track.positions):  # a click: far more energy in the frame's first 5 ms
            head = np.abs(audio[t * per : t * per + 80]).max()
            checked_bounce |= head > 0.3
    assert checked_bounce


def test_bounce_frames():
    pos = np.array([[0, 0], [2, 1], [4, 2], [2, 3], [0, 4], [2, 3]])
    assert bounce_frames(pos).tolist() == [2, 4]


def test_audio_is_off_by_default_and_deterministic():
    assert "audio" not in MovingDigits(MovingDigitsConfig(length=2))[0]
    a = MovingDigits(MovingDigitsConfig(length=2, audio=True))[1]["audio"]
    b = MovingDigits(MovingDigitsConfig(length=2, audio=True))[1]["audio"]
    assert torch.equal(a, b)
