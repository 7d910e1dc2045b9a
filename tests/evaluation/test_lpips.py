"""LPIPS with user-given weights: its contracts on random weights, the reference parameter names, loading, wiring."""

import pytest
import torch
from safetensors.torch import save_file

from kinema.evaluation.evaluate import frame_scores
from kinema.models.lpips import LPIPS, load_lpips, lpips_per_frame


def random_lpips(seed=0):
    torch.manual_seed(seed)
    net = LPIPS().eval()
    for k in range(5):  # LPIPS' linear weights are non-negative
        getattr(net, f"lin{k}").model[1].weight.data.uniform_(0, 1)
    return net


def test_zero_for_identical_images_positive_and_symmetric_otherwise():
    net = random_lpips()
    a, b = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    assert net(a, a).abs().max() < 1e-6
    d = net(a, b)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(d, net(b, a))


def test_more_distortion_is_further():
    net = random_lpips()
    a = torch.rand(4, 3, 64, 64) * 2 - 1
    noise = torch.randn_like(a)
    assert (net(a, a + 0.05 * noise) < net(a, a + 0.5 * noise)).all()


def test_parameter_names_follow_the_reference_package():
    keys = set(LPIPS().state_dict())
    for key in ("net.slice1.0.weight", "net.slice2.3.weight", "net.slice3.6.weight", "net.slice4.8.weight",
                "net.slice5.10.bias", "lin0.model.1.weight", "lin4.model.1.weight", "scaling_layer.shift"):
        assert key in keys, key
    assert LPIPS().lin2.model[1].weight.shape == (1, 384, 1, 1)


def test_load_round_trip_and_errors(tmp_path):
    net = random_lpips(1)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "lpips.safetensors")
    back, sha = load_lpips(tmp_path / "lpips.safetensors")
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(back(a, b), net(a, b))
    assert len(sha) == 64
    lin_only = {k: v for k, v in net.state_dict().items() if k.startswith("lin")}
    save_file(lin_only, tmp_path / "lin.safetensors")
    with pytest.raises(ValueError, match="backbone"):
        load_lpips(tmp_path / "lin.safetensors")
    with pytest.raises(FileNotFoundError):
        load_lpips(tmp_path / "none.safetensors")
    torch.save(net.state_dict(), tmp_path / "lpips.pt")
    with pytest.raises(ValueError, match="trust-pickle"):
        load_lpips(tmp_path / "lpips.pt")


def test_per_frame_on_grey_clips_and_in_frame_scores():
    net = random_lpips()
    real = torch.rand(2, 1, 4, 32, 32) * 2 - 1
    fake = real.clone()
    fake[:, :, 2:] = torch.rand(2, 1, 2, 32, 32) * 2 - 1
    per = lpips_per_frame(net, fake, real)
    assert per.shape == (2, 4) and per[:, :2].abs().max() < 1e-6 and (per[:, 2:] > 0).all()
    known = torch.tensor([True, True, False, False])
    scores = frame_scores(torch.stack([fake, real]), real, known, lpips=net)
    assert scores["mean_over_draws"]["lpips"] == pytest.approx(per[:, 2:].mean().item() / 2, rel=1e-4)
    assert scores["best_of_draws"]["lpips"] == pytest.approx(0.0, abs=1e-6)  # the exact draw wins per clip
    assert "lpips" not in frame_scores(fake[None], real, known)["mean_over_draws"]
