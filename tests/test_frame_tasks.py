"""One model for every frame task: mask mixture, exact known frames, long videos in constant memory."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kinema.config import MaskMixture, UNetConfig
from kinema.data import TASKS, draw_masks, task_mask
from kinema.diffusion import SAMPLERS, Denoiser, bind, keep_known, make_schedule, spaced_timesteps
from kinema.models import SpaceTimeUNet
from kinema.models.model_dir import save_model_dir
from kinema.pipeline import VideoPipeline
from kinema.types import FrameMask

TINY = dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
            spatial_attention_levels=(1,), frame_conditioning=True)


def test_task_masks():
    assert task_mask("generate", 6).tolist() == [0] * 6
    assert task_mask("predict", 6, 4).tolist() == [1, 1, 1, 1, 0, 0]
    assert task_mask("interpolate", 6).tolist() == [1, 0, 0, 0, 0, 1]
    assert task_mask("animate", 6).tolist() == [1, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="context_frames"):
        task_mask("predict", 6, 6)
    with pytest.raises(ValueError, match="'dance'"):
        task_mask("dance", 6)


def test_mask_mixture_draws_each_task_at_its_rate():
    mixture = MaskMixture(generate=1, predict=2, interpolate=3, animate=0, random=4, max_context=5)
    n = 20000
    masks, tasks = draw_masks(n, 16, mixture, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tasks, minlength=len(TASKS)).double() / n
    expected = torch.tensor(mixture.rates(), dtype=torch.float64) / sum(mixture.rates())
    assert (freq - expected).abs().max() < 0.015, (freq, expected)  # ~4.5 standard errors at n=20k
    assert freq[TASKS.index("animate")] == 0
    pred = masks[tasks == TASKS.index("predict")]
    k = pred.sum(1)
    assert k.min() == 1 and k.max() == 5  # k uniform in [1, max_context]
    assert all(torch.equal(m, task_mask("predict", 16, int(c))) for m, c in zip(pred[:50], k[:50]))
    assert (masks[tasks == TASKS.index("interpolate")] == task_mask("interpolate", 16)).all()
    assert (masks[tasks == TASKS.index("generate")] == 0).all()


def test_mask_mixture_rejects_bad_rates():
    with pytest.raises(ValueError, match="rates"):
        MaskMixture(generate=-1)
    with pytest.raises(ValueError, match="rates"):
        MaskMixture(generate=0, predict=0, interpolate=0, animate=0, random=0)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_known_frames_come_out_of_every_sampler_bit_exact(sampler, prediction):
    schedule = make_schedule("cosine", 100)
    g = torch.Generator().manual_seed(0)
    known = torch.rand(2, 1, 6, 8, 8, generator=g) * 2 - 1
    mask = torch.tensor([[1, 1, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0]], dtype=torch.float32)
    frames = FrameMask(mask=mask, frames=known * mask[:, None, :, None, None])

    def net(x_t, t):  # an arbitrary network: its output has nothing to do with the known frames
        return torch.tanh(x_t * 0.7 + 0.1)

    denoise = keep_known(Denoiser(net, schedule, prediction=prediction), frames, schedule=schedule)
    x_T = torch.randn(known.shape, generator=g)
    out = SAMPLERS[sampler](denoise, x_T, spaced_timesteps(100, 10), schedule=schedule,
                            generator=torch.Generator().manual_seed(1))
    m = mask.bool()
    assert torch.equal(out.permute(0, 2, 1, 3, 4)[m], known.permute(0, 2, 1, 3, 4)[m])
    assert not torch.equal(out.permute(0, 2, 1, 3, 4)[~m], known.permute(0, 2, 1, 3, 4)[~m])


def test_unet_takes_frames_only_when_trained_for_them():
    x, step = torch.randn(1, 1, 4, 8, 8), torch.tensor([3])
    frames = FrameMask(mask=torch.tensor([[1.0, 0, 0, 0]]), frames=torch.randn(1, 1, 4, 8, 8))
    net = SpaceTimeUNet(UNetConfig(**TINY))
    assert net.stem.in_channels == 3
    torch.nn.init.normal_(net.head[-1].weight)
    out_known, out_none = net(x, step, frames), net(x, step)
    assert out_known.shape == x.shape and not torch.equal(out_known, out_none)
    plain = SpaceTimeUNet(UNetConfig(**{**TINY, "frame_conditioning": False}))
    with pytest.raises(ValueError, match="frame_conditioning"):
        plain(x, step, frames)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    net = SpaceTimeUNet(UNetConfig(**TINY))
    config = {"model": json.loads(json.dumps(UNetConfig(**TINY).__dict__)), "diffusion": {"num_steps": 50},
              "data": {"kind": "moving-digits", "size": 16, "num_frames": 8}}
    save_model_dir(out, net, config)
    return out


@pytest.mark.parametrize("long_mode", ["sliding", "keyframes"])
def test_long_video_keeps_given_frames_and_covers_every_frame(tiny_model_dir, long_mode):
    pipe = VideoPipeline.from_pretrained(tiny_model_dir)
    image = (np.random.default_rng(0).random((16, 16, 1)) * 255).astype(np.uint8).repeat(3, -1)
    video = pipe(first_frame=image, num_frames=21, steps=2, seed=0, long_mode=long_mode, progress=False)
    frames = video.numpy()
    assert frames.shape == (1, 21, 16, 16, 1)
    assert np.array_equal(frames[0, 0, ..., 0], image[..., 0])
    assert len({frames[0, t].tobytes() for t in range(21)}) > 15  # generated, not copied


def test_draws_average_the_samples_and_keep_given_frames(tiny_model_dir, monkeypatch):
    pipe = VideoPipeline.from_pretrained(tiny_model_dir)
    image = (np.random.default_rng(1).random((16, 16, 1)) * 255).astype(np.uint8)
    one = pipe(first_frame=image, num_frames=8, steps=2, seed=0, progress=False).numpy()
    assert np.array_equal(pipe(first_frame=image, num_frames=8, steps=2, seed=0, draws=1, progress=False).numpy(),
                          one)  # draws=1 is the plain sample
    values = iter([-0.5, 0.1, 0.7])  # what each draw's window fills in: their mean is 0.1

    def window(known, batch, start, length, **kw):
        return torch.full((batch, 1, length, 16, 16), next(values))

    monkeypatch.setattr(pipe, "_window", window)
    frames = pipe(first_frame=image, num_frames=8, steps=2, seed=0, draws=3, progress=False).numpy()
    assert np.array_equal(frames[0, 0, ..., 0], image[..., 0])  # the given frame stays exact
    assert (frames[0, 1:] == round((0.1 + 1) * 127.5)).all()
    for bad in (0, 2.0):
        with pytest.raises(ValueError, match="draws"):
            pipe(first_frame=image, num_frames=8, steps=2, draws=bad, progress=False)


MEASURE = """
import resource, sys
from kinema.pipeline import VideoPipeline
pipe = VideoPipeline.from_pretrained(sys.argv[1])
pipe(2, num_frames=int(sys.argv[2]), steps=2, seed=0, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_long_video_memory_does_not_grow_with_length(tiny_model_dir):
    """A 128-frame video with an 8-frame window peaks at the same memory (+-10 %) as a 32-frame one."""
    peak = {}
    for frames in (32, 128):
        out = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_model_dir), str(frames)],
                             capture_output=True, text=True, check=True)
        peak[frames] = int(out.stdout.split()[-1])
    assert abs(peak[128] - peak[32]) <= 0.1 * peak[32], peak


def test_bind_passes_frames_to_the_network():
    seen = {}

    def net(x_t, t, frames=None):
        seen["frames"] = frames
        return x_t

    frames = FrameMask(mask=torch.ones(1, 2), frames=torch.zeros(1, 1, 2, 4, 4))
    bind(Denoiser(net, make_schedule("cosine", 10)), frames=frames)(torch.zeros(1, 1, 2, 4, 4), torch.tensor(3))
    assert seen["frames"] is frames


def test_cli_predict_interpolate_animate(tiny_model_dir, tmp_path):
    from kinema.cli import main
    from kinema.data import read_video, write_image, write_video

    rng = np.random.default_rng(0)
    clip = (rng.random((6, 16, 16, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "in.mp4", clip)
    write_image(tmp_path / "a.png", clip[0])
    write_image(tmp_path / "b.png", clip[-1])
    common = ["--model", str(tiny_model_dir), "--steps", "2"]
    assert main(["predict", *common, "--video", str(tmp_path / "in.mp4"), "--context", "3", "--frames", "12",
                 "--out", str(tmp_path / "p.mp4")]) == 0
    assert main(["interpolate", *common, "--first", str(tmp_path / "a.png"), "--last", str(tmp_path / "b.png"),
                 "--frames", "7", "--out", str(tmp_path / "i.gif")]) == 0
    assert main(["animate", *common, "--image", str(tmp_path / "a.png"), "--frames", "10", "--draws", "2",
                 "--out", str(tmp_path / "a.mp4")]) == 0
    assert read_video(tmp_path / "p.mp4").shape[:3] == (12, 16, 16)
    assert read_video(tmp_path / "a.mp4").shape[:3] == (10, 16, 16)
    assert main(["animate", *common, "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.mp4")]) == 2


def test_the_given_first_frame_is_the_reference_image_of_a_model_with_an_image_encoder():
    from kinema.config import CondConfig, DiffusionConfig
    from kinema.models.encoders import Conditioner

    torch.manual_seed(0)
    model = SpaceTimeUNet(UNetConfig(**TINY, cond_dim=8))
    for p in model.parameters():  # the zero-initialised projections would hide the condition
        torch.nn.init.normal_(p, std=0.1)
    conditioner = Conditioner(CondConfig(image=True), 8)
    pipe = VideoPipeline(model, DiffusionConfig(num_steps=100), size=16, num_frames=4, conditioner=conditioner,
                         device="cpu", precision="no")
    first = torch.rand(1, 16, 16) * 2 - 1  # (C, H, W)
    kw = dict(first_frame=first, steps=2, seed=0, progress=False)
    auto = pipe(**kw).numpy()
    assert np.array_equal(auto, pipe(image=first, frame_reference=False, **kw).numpy())
    assert not np.array_equal(auto, pipe(frame_reference=False, **kw).numpy())
    other = -first  # a reference the user gives wins
    assert np.array_equal(pipe(image=other, **kw).numpy(), pipe(image=other, frame_reference=False, **kw).numpy())


def test_frame_guidance_extrapolates_from_the_prediction_without_the_given_frames(tiny_model_dir):
    pipe = VideoPipeline.from_pretrained(tiny_model_dir, precision="no")
    torch.manual_seed(1)
    for p in pipe.model.parameters():  # the zero-initialised output would hide the frames
        torch.nn.init.normal_(p, std=0.05)
    context = torch.rand(1, 1, 3, 16, 16) * 2 - 1  # (B, C, T, H, W)
    kw = dict(context=context, num_frames=8, steps=1, sampler="ddim", spacing="trailing", seed=0, progress=False)
    plain = pipe(**kw).numpy().astype(float)
    assert np.array_equal(pipe(frame_guidance=1.0, **kw).numpy(), plain)  # scale 1: the plain conditional
    without = pipe(frame_guidance=0.0, **kw).numpy().astype(float)  # scale 0: the branch that sees no frames
    assert not np.array_equal(without[:, 3:], plain[:, 3:])
    guided = pipe(frame_guidance=2.0, **kw).numpy().astype(float)
    assert np.array_equal(guided[:, :3], plain[:, :3])  # given frames exact at every scale
    # one DDIM step from pure noise lands on the predicted x0: at scale 2 it is 2 x0(frames) - x0(none)
    expected = 2 * plain[:, 3:] - without[:, 3:]
    inside = (expected > 2) & (expected < 253) & (plain[:, 3:] > 0) & (plain[:, 3:] < 255) \
        & (without[:, 3:] > 0) & (without[:, 3:] < 255)  # away from clipping at either end
    assert inside.mean() > 0.3
    assert np.abs(guided[:, 3:] - expected)[inside].max() <= 2  # two uint8 roundings
    with pytest.raises(ValueError, match="frame_guidance"):
        pipe(num_frames=8, steps=1, frame_guidance=2.0, progress=False)  # nothing given to guide towards
    with pytest.raises(ValueError, match="frame_guidance"):
        pipe(frame_guidance=float("nan"), **kw)
