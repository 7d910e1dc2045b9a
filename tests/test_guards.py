"""Guards against lost files, exhausted memory and silent garbage: atomic outputs, bounded decoding, early refusals."""

import errno
import math

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.config import load_config
from kinema.data import read_image, read_video, video_io, write_image, write_video
from kinema.files import check_output_file
from kinema.models import SpaceTimeUNet
from kinema.models.model_dir import save_model_dir
from kinema.models.unet import activation_bytes
from kinema.pipeline import VideoPipeline
from kinema.models.model_dir import video_model_config

TINY = {"model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
        "data.size": 16, "data.num_frames": 4, "model.frame_conditioning": True}


def _frames(t=6, h=20, w=28, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (t, h, w, 3), dtype=np.uint8)


@pytest.fixture
def model_dir(tmp_path):
    config = load_config(None, TINY)
    torch.manual_seed(0)
    return save_model_dir(tmp_path / "model", SpaceTimeUNet(config.model), video_model_config(config))


# ---- outputs ----


@pytest.mark.parametrize("name", ["clip.gif", "clip.mp4"])
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, name):
    path = tmp_path / name
    write_video(path, _frames(seed=1))
    before = path.read_bytes()
    writer = "_write_gif" if name.endswith(".gif") else "_write_mp4"

    def disk_full(tmp, frames, fps):
        tmp.write_bytes(b"GIF89a half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_io, writer, disk_full)
    with pytest.raises(OSError, match=f"cannot write {path}"):
        write_video(path, _frames(seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_suffixes_in_any_case(tmp_path):
    for name in ("a.MP4", "b.Gif"):
        assert check_output_file(tmp_path / name, (".mp4", ".gif")) == tmp_path / name
        write_video(tmp_path / name, _frames())
        assert read_video(tmp_path / name).shape == (6, 20, 28, 3)
    write_image(tmp_path / "c.PNG", _frames()[0])
    assert read_image(tmp_path / "c.PNG").shape == (20, 28, 3)
    with pytest.raises(ValueError, match="is a directory"):
        check_output_file(tmp_path, (".mp4",))
    with pytest.raises(ValueError, match=r"must end in \.mp4 or \.gif \(any case\), got '.*x\.avi'"):
        check_output_file(tmp_path / "x.avi", (".mp4", ".gif"))


# ---- bounded decoding ----


@pytest.mark.parametrize("name", ["clip.mp4", "clip.gif", "frames"])
def test_read_video_keeps_only_the_last_frames_at_the_asked_size(tmp_path, name):
    path = tmp_path / name
    ramp = np.linspace(0, 1, 60)[None, :, None] * np.ones((40, 1, 3))  # smooth frames, each a different shade
    frames = np.stack([(ramp * 120 + 10 * i).astype(np.uint8) for i in range(12)])  # (12, 40, 60, 3)
    if name == "frames":
        path.mkdir()
        for i, f in enumerate(frames):
            write_image(path / f"{i:03d}.png", f)
    else:
        write_video(path, frames, fps=12)
    full = read_video(path)
    tail = read_video(path, last=3, shorter_side=20)
    assert tail.shape == (3, 20, 30, 3)
    small = np.stack([np.asarray(video_io.Image.fromarray(f).resize((30, 20), video_io.Image.Resampling.BILINEAR))
                      for f in full[-3:]])
    assert np.abs(tail.astype(int) - small.astype(int)).mean() < 3  # the last frames, not others (10 levels apart)
    assert read_video(path, last=100).shape[0] == 12  # fewer frames than asked: all of them


def test_images_above_the_pixel_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    write_image(path, _frames(h=30, w=40)[0])
    monkeypatch.setattr(video_io, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match=rf"{path} is 40x30 = 0 megapixels; kinema reads at most 0"):
        read_image(path)
    write_video(tmp_path / "wide.gif", _frames(h=30, w=40))
    with pytest.raises(ValueError, match="wide.gif is 40x30"):
        read_video(tmp_path / "wide.gif")
    monkeypatch.setattr(video_io, "MAX_PIXELS", 1200)
    assert read_image(path, shorter_side=15).shape == (15, 20, 3)


# ---- early refusals in the pipeline ----


def test_non_finite_guidance_and_bad_seeds_are_refused(model_dir):
    pipe = VideoPipeline.from_pretrained(model_dir, device="cpu")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="text guidance scale must be a finite number"):
            pipe.conditions(1, 4, scales={"text": bad})
    for seed in (-1, 2**64, 1.5):
        with pytest.raises(ValueError, match="seed must be an integer in"):
            pipe(1, steps=1, seed=seed)
    with pytest.raises(ValueError, match="context_frames must be a positive number of frames, got 0"):
        pipe(context=np.zeros((4, 16, 16, 3), np.uint8), context_frames=0, steps=1)


def test_broken_weights_are_refused(model_dir):
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    key = next(k for k, v in weights.items() if v.is_floating_point())
    save_file({**weights, key: torch.full_like(weights[key], math.nan)}, str(model_dir / "model.safetensors"))
    with pytest.raises(ValueError, match=f"NaN or infinite values in 1 tensors \\(e.g. '{key}'\\)"):
        VideoPipeline.from_pretrained(model_dir)
    save_file({k: v.to(torch.int8) for k, v in weights.items()}, str(model_dir / "model.safetensors"))
    with pytest.raises(ValueError, match="torch.int8 tensors where floats belong"):
        VideoPipeline.from_pretrained(model_dir)


def test_what_cannot_fit_is_refused_before_the_network_runs(model_dir, monkeypatch):
    import kinema.models.unet as unet
    import kinema.pipeline as pipeline

    pipe = VideoPipeline.from_pretrained(model_dir, device="cpu")
    calls = []
    pipe.model.register_forward_pre_hook(lambda *a: calls.append(1))
    need = activation_bytes(pipe.model.config, 8, 4, 16, 16)
    monkeypatch.setattr(unet, "available_memory", lambda device="cpu": need - 1)
    with pytest.raises(ValueError, match=r"num_videos=8 x 4 frames at 16x16 needs about .* GiB of activations"):
        pipe(8, steps=2)
    assert not calls
    pipe(4, steps=1)  # half the batch fits
    assert calls
    monkeypatch.setattr(pipeline, "available_memory", lambda device="cpu": 10_000)
    with pytest.raises(ValueError, match="num_frames=1000 x num_videos=1 at 16x16 needs about .* for the result"):
        pipe(1, num_frames=1000, steps=1)


def test_the_activation_estimate_grows_with_every_axis():
    config = load_config(None, TINY).model
    base = activation_bytes(config, 2, 4, 16, 16)
    assert activation_bytes(config, 4, 4, 16, 16) == 2 * base
    assert activation_bytes(config, 2, 8, 16, 16) > base and activation_bytes(config, 2, 4, 32, 32) > base
    assert activation_bytes(config, 2, 4, 16, 16, grad=True) > 5 * base


# ---- streaming ----


def test_sample_streams_num_in_batches(model_dir, tmp_path, monkeypatch):
    sizes = []
    real = VideoPipeline.__call__

    def spy(self, num_videos=1, **kw):
        sizes.append(num_videos)
        return real(self, num_videos, **kw)

    monkeypatch.setattr(VideoPipeline, "__call__", spy)
    out = tmp_path / "out"
    assert main(["sample", "--model", str(model_dir), "--num", "10", "--batch", "4", "--steps", "1",
                 "--out", str(out)]) == 0
    assert sizes == [4, 4, 2]
    assert sorted(p.name for p in out.glob("sample_*.mp4")) == [f"sample_{i:03d}.mp4" for i in range(10)]
    assert read_video(out / "grid.mp4").shape[0] == 4


def test_augment_streams_each_prompt_in_batches(tmp_path, monkeypatch, capsys):
    from kinema.models.encoders import Conditioner, Tokenizer

    config = load_config(None, {**TINY, "model.cond_dim": 16, "cond.text": "gru", "cond.max_tokens": 8})
    torch.manual_seed(0)
    tokenizer = Tokenizer.build(["digit 1 moving left", "digit 2 moving up"])
    conditioner = Conditioner(config.cond, 16, in_channels=1, tokenizer=tokenizer)
    model = save_model_dir(tmp_path / "model", SpaceTimeUNet(config.model), video_model_config(config, fps=8.0),
                           extra={"conditioner": conditioner}, vocab=tokenizer.words)
    (tmp_path / "prompts.txt").write_text("digit 1 moving left\ndigit 2 moving up\n")
    calls = []
    real = VideoPipeline.__call__
    monkeypatch.setattr(VideoPipeline, "__call__", lambda self, n=1, **kw: calls.append((n, kw["prompt"], kw["seed"]))
                        or real(self, n, **kw))
    out = tmp_path / "aug"
    assert main(["augment", "--model", str(model), "--prompts", str(tmp_path / "prompts.txt"), "--per-prompt", "5",
                 "--batch", "2", "--steps", "1", "--seed", "10", "--out", str(out)]) == 0
    assert [(n, p[6]) for n, p, _ in calls] == [(2, "1"), (2, "1"), (1, "1"), (2, "2"), (2, "2"), (1, "2")]
    assert [s for *_, s in calls] == [10, 12, 14, 11, 13, 15]  # seed + prompt + batch x prompts
    assert len(list(out.glob("clip_*.mp4"))) == 10 and (out / "clip_0001_004.txt").read_text() == "digit 2 moving up\n"
    err = capsys.readouterr().err
    assert "batch 5 of 6: clips 7-8, about" in err and "batch 6 of 6: clip 9, about" in err


# ---- user input takes the training clips' transform ----


def test_non_square_inputs_are_cropped_like_training_clips(tmp_path):
    """Animate a 48x80 image and predict from a 40x72 video: the given frames in the result are exactly what the
    training transform (shorter side scaled while decoding, centre square) makes of the same files."""
    from kinema.data.transforms import ClipConfig, crop_square
    from kinema.data.video_io import read_clip

    config = load_config(None, {**TINY, "model.in_channels": 3})
    torch.manual_seed(0)
    pipe = VideoPipeline(SpaceTimeUNet(config.model), config.diffusion, size=16, num_frames=4, device="cpu")
    ramp = np.linspace(0, 255, 80)[None, :, None] * np.ones((48, 1, 3))
    image = np.concatenate([ramp[:, :40], 255 - ramp[:, 40:]], axis=1).astype(np.uint8)  # (48, 80, 3), not symmetric
    write_image(tmp_path / "wide.png", image)
    out = pipe(first_frame=str(tmp_path / "wide.png"), num_frames=4, steps=1).numpy()[0]  # (T, 16, 16, 3)
    expected = crop_square(read_image(tmp_path / "wide.png", shorter_side=16)[None], 16)[0]
    assert np.array_equal(out[0], expected)
    stretched = np.asarray(video_io.Image.fromarray(image).resize((16, 16), video_io.Image.Resampling.BILINEAR))
    assert np.abs(out[0].astype(int) - stretched.astype(int)).mean() > 10  # not the old squashed frame

    frames = np.stack([np.roll(image[:40, :72], 6 * i, axis=1) for i in range(10)])  # (10, 40, 72, 3)
    write_video(tmp_path / "wide.mp4", frames, fps=10)
    out = pipe(context=str(tmp_path / "wide.mp4"), context_frames=2, num_frames=4, steps=1).numpy()[0]
    clip = ClipConfig(num_frames=2, size=16)
    expected = crop_square(read_clip(tmp_path / "wide.mp4", [8, 9], shorter_side=clip.size), clip.size)
    assert np.array_equal(out[:2], expected)
    in_memory = pipe(first_frame=image, num_frames=4, steps=1).numpy()[0, 0]  # an array: cropped, not stretched
    assert np.abs(in_memory.astype(int) - stretched.astype(int)).mean() > 10


def test_written_files_and_swapped_folders_get_the_usual_modes(tmp_path):
    # a writer that creates its file 0600 (as safetensors does) and mkdtemp's 0700 folders end as any new file /
    # folder of the user's: what the umask allows
    import os

    from kinema.files import atomic_write, current_umask, temp_dir_beside

    def private(p):
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))

    mask = current_umask()
    assert (atomic_write(tmp_path / "w.safetensors", private).stat().st_mode & 0o777) == 0o666 & ~mask
    assert (temp_dir_beside(tmp_path / "cache").stat().st_mode & 0o777) == 0o777 & ~mask
