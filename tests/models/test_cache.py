"""Reusing the deep features across sampler steps: what a reusing call runs, what it returns, and when it happens."""

import dataclasses

import pytest
import torch
from torch import nn

from kinema.config import DiffusionConfig, UNetConfig
from kinema.models import FeatureCache, SpaceTimeUNet, StepCache
from kinema.models.kernels import flop_counter
from kinema.pipeline import VideoPipeline

CFG = UNetConfig(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                 spatial_attention_levels=(2,))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _net(cfg=CFG, seed=0):
    """A network with every parameter random (the zero-initialised branches would hide what runs)."""
    net = SpaceTimeUNet(cfg).eval()
    g = _gen(seed)
    for p in net.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net


def _x(seed=1, b=2):
    return torch.randn(b, 1, 4, 16, 16, generator=_gen(seed))


def _steps(b=2, at=100):
    return torch.full((b,), at)


class _Calls:
    """Counts forward calls of the given modules."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.count = dict.fromkeys(modules, 0)
        for name, m in modules.items():
            m.register_forward_hook(lambda *_, name=name: self.count.__setitem__(name, self.count[name] + 1))


@torch.no_grad()
def test_a_full_call_with_a_cache_is_the_plain_call_and_stores_the_top_levels_input():
    net, x = _net(), _x()
    cache = FeatureCache()
    torch.testing.assert_close(net(x, _steps(), cache=cache), net(x, _steps()), rtol=0, atol=0)
    # the output of the last Upsample: level 1's width at the top level's resolution
    assert cache.deep.shape == (2, 16, 4, 16, 16)


@torch.no_grad()
def test_reusing_at_the_same_input_gives_the_full_output():
    net, x = _net(), _x()
    cache = FeatureCache()
    full = net(x, _steps(), cache=cache)
    cache.reuse = True
    torch.testing.assert_close(net(x, _steps(), cache=cache), full, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_a_reusing_call_runs_only_the_top_level():
    net, x, x2 = _net(), _x(1), _x(2)
    top = {f"down{i}": m for i, m in enumerate(net.down[:net.top_down])}
    top |= {f"up{i}": m for i, m in enumerate(net.up[net.top_up:])}
    deep = {f"down{i}": m for i, m in enumerate(net.down[net.top_down:])}
    deep |= {f"mid{i}": m for i, m in enumerate(net.mid)} | {f"up{i}": m for i, m in enumerate(net.up[:net.top_up])}
    calls_top, calls_deep = _Calls(top), _Calls(deep)
    cache = FeatureCache()
    full = net(x, _steps(), cache=cache)
    assert set(calls_deep.count.values()) == {1} and set(calls_top.count.values()) == {1}
    cache.reuse = True
    with flop_counter() as reused_flops:
        out = net(x2, _steps(), cache=cache)
    assert set(calls_deep.count.values()) == {1}, "a deep layer ran in a reusing call"
    assert set(calls_top.count.values()) == {2}
    with flop_counter() as full_flops:
        net(x2, _steps())
    assert reused_flops.get_total_flops() < 0.6 * full_flops.get_total_flops()
    assert not torch.allclose(out, full, atol=1e-3)  # the top level sees the new input
    assert not torch.allclose(out, net(x2, _steps()), atol=1e-3)  # the deep levels' output is the stored one


@torch.no_grad()
def test_reuse_without_fitting_features_is_an_error():
    net = _net()
    with pytest.raises(ValueError, match="do not fit"):
        net(_x(), _steps(), cache=FeatureCache(reuse=True))
    cache = FeatureCache()
    net(_x(b=1), _steps(1), cache=cache)
    cache.reuse = True
    with pytest.raises(ValueError, match=r"\(1, 16, 4, 16, 16\)"):
        net(_x(b=2), _steps(2), cache=cache)


def test_a_one_level_network_cannot_cache():
    net = _net(dataclasses.replace(CFG, channel_mult=(1,), spatial_attention_levels=()))
    with pytest.raises(ValueError, match="at least two levels"):
        StepCache(net, 2)
    with pytest.raises(ValueError, match="at least two levels"), torch.no_grad():
        net(_x(), _steps(), cache=FeatureCache())


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_a_bad_interval_is_named(bad):
    with pytest.raises(ValueError, match=repr(bad).replace(".", r"\.")):
        StepCache(_net(), bad)


@torch.no_grad()
def test_the_network_runs_in_full_once_every_interval_steps():
    net = _net()
    calls = _Calls({"mid": net.mid[0]})
    cached = StepCache(net, 3)
    for i in range(7):
        cached(_x(i), _steps(at=900 - 100 * i))
    assert calls.count["mid"] == 3  # steps 0, 3, 6
    assert (cached.full_calls, cached.reused_calls) == (3, 4)


@torch.no_grad()
def test_each_branch_of_a_step_keeps_its_own_features():
    net, xa, xb = _net(), _x(1), _x(2)
    cached = StepCache(net, 2)
    for at in (500, 400):  # two steps, two branches each (as classifier-free guidance calls)
        out_a = cached(xa, _steps(at=at))
        out_b = cached(xb, _steps(at=at))
    assert (cached.full_calls, cached.reused_calls) == (2, 2)
    for x, out in ((xa, out_a), (xb, out_b)):  # the same calls by hand, one cache per branch
        cache = FeatureCache()
        net(x, _steps(at=500), cache=cache)
        cache.reuse = True
        torch.testing.assert_close(out, net(x, _steps(at=400), cache=cache), rtol=0, atol=0)


def test_the_pipeline_takes_a_cache_interval():
    net = _net(dataclasses.replace(CFG, frame_conditioning=True))
    pipe = VideoPipeline(net, DiffusionConfig(prediction="v"), size=16, num_frames=4, device="cpu")
    calls = _Calls({"mid": net.mid[0], "stem": net.stem})
    plain = pipe(1, steps=6, sampler="dpmpp_2m", seed=0, progress=False).numpy()
    assert calls.count == {"mid": 6, "stem": 6}
    cached = pipe(1, steps=6, sampler="dpmpp_2m", seed=0, cache_interval=2, progress=False).numpy()
    assert calls.count == {"mid": 6 + 3, "stem": 6 + 6}
    assert cached.shape == plain.shape and (cached != plain).any()
    with pytest.raises(ValueError, match="got 0"):
        pipe(1, steps=2, seed=0, cache_interval=0, progress=False)


def test_caching_works_under_bf16_autocast_with_known_frames():
    net = _net(dataclasses.replace(CFG, frame_conditioning=True))
    pipe = VideoPipeline(net, DiffusionConfig(prediction="v"), size=16, num_frames=4, device="cpu", precision="bf16")
    calls = _Calls({"mid": net.mid[0]})
    context = torch.rand(1, 1, 2, 16, 16, generator=_gen(5)) * 2 - 1
    video = pipe(1, steps=4, sampler="dpmpp_2m", seed=0, cache_interval=2, context=context, progress=False)
    assert video.numpy().shape == (1, 4, 16, 16, 1) and calls.count["mid"] == 2
