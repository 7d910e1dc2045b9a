"""Latent diffusion through an autoencoder that compresses time: the frame mapping, and every task end to end."""

import json
import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.config import AutoencoderConfig, CondConfig, load_config
from kinema.diffusion import SAMPLERS
from kinema.models.autoencoder import (VideoAutoencoder, frame_pooling, given_latent_frames, latent_frame_count,
                                       latent_frame_span, whole_latent_prefix)
from kinema.models.encoders import Conditioner
from kinema.pipeline import VideoPipeline
from kinema.training import Trainer
from kinema.training.autoencoder_trainer import AutoencoderTrainer

# ---- the mapping, against closed forms ----


@pytest.mark.parametrize("f", [1, 2, 4])
def test_latent_frame_j_covers_frame_0_then_f_frames_each(f):
    assert latent_frame_span(0, f) == range(0, 1)
    for j in range(1, 6):
        assert list(latent_frame_span(j, f)) == [1 + (j - 1) * f + i for i in range(f)]
    covered = [p for j in range(6) for p in latent_frame_span(j, f)]
    assert covered == list(range(1 + 5 * f))  # every frame exactly once, in order
    assert latent_frame_count(AutoencoderConfig(temporal_factor=f), 1 + 5 * f) == 6


def test_a_latent_frame_is_given_only_when_all_its_frames_are():
    assert given_latent_frames([0, 1, 2, 3], 4) == [0]  # 4 frames at factor 4: frame 0 alone; 1-3 miss frame 4
    assert given_latent_frames(range(5), 4) == [0, 1]
    assert given_latent_frames(range(9), 4) == [0, 1, 2]
    assert given_latent_frames([0, 8], 4) == [0]  # interpolation's end alone does not fill latent frame 2
    assert given_latent_frames([5, 6, 7, 8], 4) == [2]  # a whole group, without frame 0
    assert given_latent_frames([1, 2, 3, 4], 2) == [1, 2]
    assert given_latent_frames([0, 4], 1) == [0, 4] and given_latent_frames([], 2) == []
    assert [whole_latent_prefix(k, 2) for k in range(1, 8)] == [1, 1, 3, 3, 5, 5, 7]
    assert [whole_latent_prefix(k, 4) for k in range(1, 11)] == [1, 1, 1, 1, 5, 5, 5, 5, 9, 9]


def test_frame_aligned_conditions_average_each_latent_frames_frames():
    pool = frame_pooling(7, 2)  # latent frames {0}, {1, 2}, {3, 4}, {5, 6}
    expected = torch.tensor([[1, 0, 0, 0, 0, 0, 0], [0, .5, .5, 0, 0, 0, 0], [0, 0, 0, .5, .5, 0, 0],
                             [0, 0, 0, 0, 0, .5, .5]])
    torch.testing.assert_close(pool, expected)
    assert torch.equal(frame_pooling(5, 1), torch.eye(5))
    with pytest.raises(ValueError, match="6 frames do not fill whole latent frames"):
        frame_pooling(6, 2)
    cond = Conditioner(CondConfig(trajectory="both", trajectory_objects=1), 8, frame_size=4, temporal_factor=2)
    points = torch.rand(2, 5, 1, 2)
    out, _ = cond.encode("trajectory", points)
    full = Conditioner(CondConfig(trajectory="both", trajectory_objects=1), 8, frame_size=4)
    full.load_state_dict(cond.state_dict())
    per_pixel_frame, _ = full.encode("trajectory", points)
    assert out.per_frame.shape == (2, 3, 8) and out.maps.shape == (2, 1, 3, 4, 4)
    torch.testing.assert_close(out.per_frame[:, 1], per_pixel_frame.per_frame[:, 1:3].mean(1))
    torch.testing.assert_close(out.maps[:, :, 0], per_pixel_frame.maps[:, :, 0])


@pytest.mark.parametrize("f", [2, 4])
def test_a_prefix_of_whole_latent_frames_encodes_as_in_the_whole_clip(f):
    torch.manual_seed(0)
    ae = VideoAutoencoder(AutoencoderConfig(channels=8, norm_groups=4, latent_channels=2, temporal_factor=f)).eval()
    x = torch.rand(1, 1, 1 + 3 * f, 16, 16) * 2 - 1
    with torch.no_grad():
        z = ae.encode(x)
        for m in range(3):
            prefix = x[:, :, :latent_frame_span(m, f).stop]
            torch.testing.assert_close(ae.encode(prefix), z[:, :, :m + 1])


# ---- a tiny latent model at temporal factor 2, end to end ----

AE = {
    "autoencoder.channels": 8, "autoencoder.norm_groups": 4, "autoencoder.latent_channels": 3,
    "autoencoder.temporal_factor": 2, "data.size": 32, "data.num_frames": 5, "data.length": 32,
    "data.max_digits": 1, "train.batch_size": 2, "train.checkpoint_every": 2, "train.sample_every": 0,
    "train.mixed_precision": "no", "train.steps": 1, "ae_loss.stats_clips": 4,
}
UNET = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "model.cond_dim": 8, "model.in_channels": 3,
    "model.frame_conditioning": True, "diffusion.num_steps": 100, "data.size": 32, "data.num_frames": 5,
    "data.length": 32, "data.max_digits": 1, "data.audio": True, "cond.text": "gru", "cond.image": True,
    "cond.audio": True, "cond.n_mels": 8, "cond.audio_steps_per_frame": 2, "cond.trajectory": "both",
    "cond.trajectory_objects": 1, "train.batch_size": 2, "train.checkpoint_every": 2, "train.sample_every": 2,
    "train.num_samples": 2, "train.sample_steps": 2, "train.mixed_precision": "no", "train.steps": 1,
}
KW = dict(steps=2, seed=0, progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent_temporal")
    AutoencoderTrainer(load_config(None, AE), root / "ae").fit()
    Trainer(load_config(None, {**UNET, "model.autoencoder": str(root / "ae" / "model")}), root / "unet").fit()
    return root


@pytest.fixture(scope="module")
def run(root):
    return root / "unet"


@pytest.fixture(scope="module")
def pipe(run):
    return VideoPipeline.from_pretrained(run, device="cpu")


def _clip(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (frames, 32, 32, 1), dtype=np.uint8)


def test_the_unet_trains_and_samples_on_latent_frames(run, pipe):
    assert pipe.temporal_factor == 2 and pipe.latent_frames(pipe.num_frames) == 3 and pipe.grid == 8
    assert json.loads((run / "model" / "config.json").read_text())["autoencoder"]["temporal_factor"] == 2
    assert (run / "samples" / "step_00000001.gif").is_file()  # the training grid, decoded from 3 latent frames
    seen = []
    hook = pipe.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        video = pipe(2, prompt="digit 3 moving up", guidance=3, **KW).numpy()
    finally:
        hook.remove()
    assert video.shape == (2, 5, 32, 32, 1)
    assert seen and {s[2] for s in seen} == {3}  # (B, Z, T', H', W'): 5 frames are 3 latent frames


def test_given_frames_come_back_exactly_in_every_task(pipe):
    clip = _clip(9)
    predicted = pipe(context=clip, context_frames=3, **KW).numpy()
    assert predicted.shape == (1, 5, 32, 32, 1) and np.array_equal(predicted[0, :3], clip[-3:])
    by_default = pipe(context=clip, **KW).numpy()  # all up to window - 1 = 4 frames: the last 3 fill latent frames
    assert by_default.shape == (1, 5, 32, 32, 1) and np.array_equal(by_default[0, :3], clip[-3:])
    between = pipe(first_frame=clip[0], last_frame=clip[-1], **KW).numpy()
    assert between.shape == (1, 5, 32, 32, 1)
    assert np.array_equal(between[0, 0], clip[0]) and np.array_equal(between[0, -1], clip[-1])
    animated = pipe(first_frame=clip[0], image=clip[1], image_guidance=2, **KW).numpy()
    assert animated.shape == (1, 5, 32, 32, 1) and np.array_equal(animated[0, 0], clip[0])
    longer = pipe(context=clip, context_frames=3, num_frames=9, overlap=2, **KW).numpy()  # 2 windows
    assert longer.shape == (1, 9, 32, 32, 1) and np.array_equal(longer[0, :3], clip[-3:])


def test_the_encoded_given_frames_follow_the_mapping(pipe):
    clip = torch.rand(1, 1, 5, 32, 32) * 2 - 1
    known = {p: clip[:, :, p] for p in range(3)}
    latents = pipe._encode_known(known, 5)
    assert sorted(latents) == [0, 1]  # frames 0, 1-2
    torch.testing.assert_close(torch.stack([latents[0], latents[1]], 2), pipe.autoencoder.encode(clip)[:, :, :2])
    ends = pipe._encode_known({0: clip[:, :, 0], 4: clip[:, :, 4]}, 5)
    assert sorted(ends) == [0, 2]  # the last frame, held: a still clip of it gives latent frame 2
    still = clip[:, :, 4:5].expand(-1, -1, 3, -1, -1)
    torch.testing.assert_close(ends[2], pipe.autoencoder.encode(still)[:, :, 1])
    with pytest.raises(ValueError, match=r"given frames \[3\] do not fill whole latent frames"):
        pipe._encode_known({p: clip[:, :, p] for p in range(4)}, 5)


def test_long_videos_every_sampler_edit_and_conditions_through_the_latents(pipe):
    assert pipe(1, num_frames=9, overlap=2, **KW).numpy().shape == (1, 9, 32, 32, 1)  # 5 latent frames, 2 windows
    assert pipe(1, num_frames=11, long_mode="keyframes", **KW).numpy().shape == (1, 11, 32, 32, 1)
    assert pipe(1, cache_interval=2, steps=4, seed=0, progress=False).numpy().shape == (1, 5, 32, 32, 1)
    assert pipe.edit(_clip(5), prompt="digit 1 moving left", strength=0.5, **KW).numpy().shape == (1, 5, 32, 32, 1)
    audio = np.random.default_rng(1).standard_normal(int(9 / pipe.fps * pipe.audio_rate)).astype(np.float32)
    out = pipe(1, num_frames=9, audio=audio, audio_guidance=2, trajectory="0.2,0.2;0.8,0.8", trajectory_guidance=2,
               **KW)
    assert out.numpy().shape == (1, 9, 32, 32, 1)  # frame-aligned conditions pooled to latent frames, cut per window
    for sampler in sorted(SAMPLERS):
        assert pipe(1, sampler=sampler, **KW).numpy().shape == (1, 5, 32, 32, 1), sampler


def test_frame_counts_that_do_not_fit_are_refused_naming_the_ones_that_do(pipe, root, tmp_path):
    with pytest.raises(ValueError, match="num_frames = 8 does not fit.*7 or 9 fit"):
        pipe(1, num_frames=8, **KW)
    with pytest.raises(ValueError, match="context_frames=4 does not fill whole latent frames.*3 or 5 fit"):
        pipe(context=_clip(6), context_frames=4, **KW)
    with pytest.raises(ValueError, match="overlap must be a multiple of 2 in \\[2, 4\\].*got 3"):
        pipe(1, num_frames=9, overlap=3, **KW)
    with pytest.raises(ValueError, match="frame count = 4 does not fit.*3 or 5 fit"):
        pipe.edit(_clip(4), **KW)
    with pytest.raises(ValueError, match="no latent frame to generate"):
        pipe(context=_clip(3), last_frame=_clip(1)[0], num_frames=5, **KW)
    with pytest.raises(ValueError, match="data.num_frames = 6 does not fit the autoencoder.*5 or 7 fit"):
        Trainer(load_config(None, {**UNET, "data.num_frames": 6, "model.autoencoder": str(root / "ae")}),
                tmp_path / "x")


def test_kinema_eval_and_demo_on_a_time_compressing_latent_model(run, tmp_path):
    assert main(["eval", "--model", str(run), "--task", "predict", "--context", "3", "--num", "2",
                 "--batch", "2", "--steps", "2", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["results"][0]["frame_metrics"]["mean_over_draws"]["psnr"] > 0
    assert main(["demo", "--model", str(run), "--steps", "2", "--out", str(tmp_path / "demo")]) == 0
    clips = json.loads((tmp_path / "demo" / "demo.json").read_text())["clips"]
    assert {"prediction", "interpolation", "animation", "audio → motion", "path → motion"} <= {c["task"] for c in clips}


def test_temporal_factor_4_predicts_interpolates_and_refuses_what_does_not_fit(tmp_path):
    AutoencoderTrainer(load_config(None, {**AE, "autoencoder.temporal_factor": 4, "data.num_frames": 9}),
                       tmp_path / "ae").fit()
    unet = {k: v for k, v in UNET.items() if not k.startswith(("cond.", "data.audio", "model.cond_dim"))}
    Trainer(load_config(None, {**unet, "data.num_frames": 9, "train.sample_every": 0,
                               "model.autoencoder": str(tmp_path / "ae" / "model")}), tmp_path / "unet").fit()
    pipe = VideoPipeline.from_pretrained(tmp_path / "unet", device="cpu")
    assert pipe.latent_frames(9) == 3 and pipe.fit_context(8) == 5
    clip = _clip(13)
    predicted = pipe(context=clip, **KW).numpy()  # 8 frames at most (window - 1): the last 5 fill latent frames 0-1
    assert predicted.shape == (1, 9, 32, 32, 1) and np.array_equal(predicted[0, :5], clip[-5:])
    between = pipe(first_frame=clip[0], last_frame=clip[-1], num_frames=13, **KW).numpy()
    assert between.shape == (1, 13, 32, 32, 1)
    assert np.array_equal(between[0, 0], clip[0]) and np.array_equal(between[0, -1], clip[-1])
    assert pipe(1, num_frames=17, overlap=4, **KW).numpy().shape == (1, 17, 32, 32, 1)  # 5 latent frames, 2 windows
    with pytest.raises(ValueError, match="context_frames=4 does not fill whole latent frames.*1 or 5 fit"):
        pipe(context=clip, context_frames=4, **KW)
    with pytest.raises(ValueError, match="num_frames = 12 does not fit.*9 or 13 fit"):
        pipe(1, num_frames=12, **KW)
