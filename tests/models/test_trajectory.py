"""The trajectory condition: heatmaps and vectors, frame by frame; dropping; parsing a user's path; digits' tracks."""

import json

import numpy as np
import pytest
import torch

from kinema.config import CondConfig, UNetConfig, load_config
from kinema.data.datasets import MovingDigits, MovingDigitsConfig
from kinema.inputs import resample_path, trajectory_input
from kinema.models import SpaceTimeUNet
from kinema.models.encoders import Conditioner, render_heatmap

T, SIZE = 6, 16


def _unet(map_channels):
    cfg = UNetConfig(channels=16, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                     spatial_attention_levels=(1,), cond_dim=16, map_channels=map_channels)
    model = SpaceTimeUNet(cfg).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # zero-initialised output layers would hide the conditions entirely
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.2)
    return model


def _conditioner(encoding):
    torch.manual_seed(1)
    return Conditioner(CondConfig(trajectory=encoding, trajectory_objects=2), 16, frame_size=SIZE).eval()


def _path(b=2):
    """A straight diagonal path per clip (B, T, 1, 2)."""
    line = torch.linspace(0.2, 0.8, T)
    return torch.stack([line, line.flip(0)], dim=-1)[None, :, None].repeat(b, 1, 1, 1)


@pytest.mark.parametrize("encoding", ["heatmap", "vector"])
def test_the_trajectory_reaches_the_network_frame_by_frame(encoding):
    """Moving frame t's target changes frame t's output more than any other frame's."""
    model, enc = _unet(int(encoding == "heatmap")), _conditioner(encoding)
    x, step = torch.randn(1, 1, T, SIZE, SIZE, generator=torch.Generator().manual_seed(3)), torch.tensor([500])
    with torch.no_grad():
        base = model(x, step, cond=enc(1, trajectory=_path(1))[0])
        for t in (1, 4):
            moved = _path(1)
            moved[0, t, 0] = torch.tensor([0.9, 0.9])
            diff = (model(x, step, cond=enc(1, trajectory=moved)[0]) - base).abs().mean(dim=(0, 1, 3, 4))  # (T,)
            assert int(diff.argmax()) == t, diff


@pytest.mark.parametrize("encoding", ["heatmap", "vector", "both"])
def test_dropping_the_trajectory_equals_the_branch_without_it(encoding):
    model, enc = _unet(int(encoding != "vector")), _conditioner(encoding)
    x, step = torch.randn(2, 1, T, SIZE, SIZE, generator=torch.Generator().manual_seed(4)), torch.tensor([50, 900])
    with torch.no_grad():
        dropped, _ = enc(2, trajectory=_path(), keep={"trajectory": torch.tensor([True, False])})
        full, _ = enc(2, trajectory=_path())
        out_dropped, out_full, out_none = model(x, step, cond=dropped), model(x, step, cond=full), model(x, step)
    torch.testing.assert_close(out_dropped[1], out_none[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(out_dropped[0], out_full[0], rtol=0, atol=1e-5)
    assert not torch.allclose(out_full[1], out_none[1], atol=1e-3)


def test_heatmap_is_a_gaussian_at_each_point_and_empty_where_absent():
    points = torch.tensor([[[[0.25, 0.75], [float("nan")] * 2]], [[[float("nan")] * 2] * 2]])  # (B=2, T=1, K=2, 2)
    maps = render_heatmap(points, 8, 8, sigma=0.1)  # (2, 1, 1, 8, 8)
    assert maps.shape == (2, 1, 1, 8, 8) and not maps[1].any()
    peak = divmod(int(maps[0, 0, 0].argmax()), 8)
    assert peak in {(5, 1), (5, 2), (6, 1), (6, 2)}  # row y = 0.75 * 8 - 0.5, column x = 0.25 * 8 - 0.5
    y, x = (torch.arange(8.0) + 0.5) / 8, (torch.arange(8.0) + 0.5) / 8
    expected = torch.exp(-((x[None] - 0.25) ** 2 + (y[:, None] - 0.75) ** 2) / (2 * 0.1 ** 2))
    torch.testing.assert_close(maps[0, 0, 0], expected)


def test_vector_trajectory_refuses_more_objects_than_slots():
    with pytest.raises(ValueError, match="slots for 2"):
        _conditioner("vector")(1, trajectory=torch.rand(1, T, 3, 2))


def test_config_sets_the_map_channel_of_a_heatmap_and_refuses_a_mismatch():
    cfg = load_config(None, {"cond.trajectory": "heatmap", "model.cond_dim": 8})
    assert cfg.model.map_channels == 1 and cfg.model.input_channels == 2
    assert load_config(None, {"cond.trajectory": "vector", "model.cond_dim": 8}).model.map_channels == 0
    with pytest.raises(ValueError, match="model.map_channels is 2"):
        load_config(None, {"cond.trajectory": "heatmap", "model.cond_dim": 8, "model.map_channels": 2})
    with pytest.raises(ValueError, match="cond.trajectory.*heatmap"):
        CondConfig(trajectory="arrows")


def test_maps_of_the_wrong_shape_are_refused():
    model = _unet(1)
    from kinema.types import Cond
    with pytest.raises(ValueError, match="condition maps"):
        model(torch.randn(1, 1, T, SIZE, SIZE), torch.tensor([1]), cond=Cond(maps=torch.zeros(1, 1, T, 8, 8)))


# ---- a user's path ----


def test_a_path_with_one_point_per_frame_is_kept_and_waypoints_are_spread_evenly():
    per_frame = trajectory_input("0.1,0.2;0.2,0.2;-;0.4,0.2;0.5,0.2;0.6,0.2", batch=2, num_frames=T)
    assert per_frame.shape == (2, T, 1, 2) and per_frame[0, 2].isnan().all()
    assert per_frame[1, 5, 0].tolist() == pytest.approx([0.6, 0.2])
    square = resample_path([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)], 5)  # length 2: a point every 0.5
    torch.testing.assert_close(square, torch.tensor([[0, 0], [0.5, 0], [1, 0], [1, 0.5], [1, 1.0]]))
    two = trajectory_input("0.1,0.1;0.9,0.9 | 0.5,0.5", batch=1, num_frames=T)
    assert two.shape == (1, T, 2, 2) and torch.equal(two[0, :, 1], torch.full((T, 2), 0.5))


def test_a_path_from_a_json_file(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps([[0.1, 0.1], None, [0.3, 0.3], [0.4, 0.4], [0.5, 0.5], [0.6, 0.6]]))
    points = trajectory_input(str(path), batch=1, num_frames=T)
    assert points[0, 1].isnan().all() and points[0, 5, 0].tolist() == pytest.approx([0.6, 0.6])
    path.write_text(json.dumps([[[0.1, 0.1], [0.9, 0.9]], [[0.5, 0.5]]]))  # two objects' waypoints
    assert trajectory_input(str(path), batch=1, num_frames=T).shape == (1, T, 2, 2)


@pytest.mark.parametrize("bad, message", [
    ("0.1;0.2", "expected two numbers"), ("0.5,1.5", "must lie in"), ("a,b;0,0", "expected two numbers"),
    ("-;-", "has no point"), ("0.1,0.1;-;0.2,0.2", "exactly one entry per frame"), ("nan,0.5", "must lie in"),
])
def test_a_malformed_path_is_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        trajectory_input(bad, batch=1, num_frames=T)


def test_a_trajectory_array_must_fit_the_frames_and_the_unit_square():
    with pytest.raises(ValueError, match="T = 6"):
        trajectory_input(np.zeros((4, 2)), batch=1, num_frames=T)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        trajectory_input(np.full((T, 2), 3.0), batch=1, num_frames=T)
    assert trajectory_input(np.full((T, 2), 0.5), batch=3, num_frames=T).shape == (3, T, 1, 2)


# ---- true tracks of moving digits ----


def test_moving_digits_tracks_follow_each_digit():
    data = MovingDigits(MovingDigitsConfig(size=32, num_frames=8, max_digits=2, min_digits=1, length=20))
    for i in range(10):
        item = data[i]
        track, video = item["trajectory"], (item["video"][0] + 1) / 2  # (T, 2, 2), (T, H, W)
        n = len(data.tracks(i))
        assert track.shape == (8, 2, 2) and track[:, n:].isnan().all() and not track[:, :n].isnan().any()
        if n == 1:  # the ink's centre of mass lies near the track (a sprite's ink is not centred exactly)
            ys, xs = torch.meshgrid(torch.arange(32.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
            mass = video.sum(dim=(1, 2))
            centre = torch.stack([(video * xs).sum(dim=(1, 2)) / mass, (video * ys).sum(dim=(1, 2)) / mass], -1)
            assert (centre / 32 - track[:, 0]).abs().max() < 2.5 / 32, (centre / 32, track[:, 0])
