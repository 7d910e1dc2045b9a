"""Contracts of kinema.data.datasets: the sample dict and the MovingDigits generator."""

import dataclasses
import re

import numpy as np
import pytest
import torch

from kinema.data import DIRECTIONS, MovingDigits, MovingDigitsConfig, build_dataset, digit_split

# Unit sign (dy, dx) of each direction's words, derived from the words themselves.
SIGNS = {name: (("down" in name) - ("up" in name), ("right" in name) - ("left" in name)) for name in DIRECTIONS}


def make(**kwargs):
    return MovingDigits(MovingDigitsConfig(**{"length": 64, **kwargs}))


def center_of_mass(frame):
    """(y, x) centre of the ink of one (H, W) frame in [-1, 1]."""
    ink = (frame + 1) / 2
    ys, xs = torch.meshgrid(torch.arange(frame.shape[0]), torch.arange(frame.shape[1]), indexing="ij")
    return torch.stack([(ink * ys).sum(), (ink * xs).sum()]) / ink.sum()


# ---- the sample contract ----


@pytest.mark.parametrize("size, digit_size, num_frames", [(32, 14, 16), (64, 28, 8), (24, 10, 5)])
def test_sample_contract(size, digit_size, num_frames):
    ds = make(size=size, digit_size=digit_size, num_frames=num_frames, max_digits=3)
    assert len(ds) == 64
    for i in range(8):
        sample = ds[i]
        video, labels = sample["video"], sample["labels"]
        assert video.shape == (1, num_frames, size, size) and video.dtype == torch.float32  # (C, T, H, W)
        assert video.min() == -1 and video.max() <= 1  # background is -1
        assert video.amax(dim=(0, 2, 3)).min() > 0.5  # every frame shows a bright digit
        assert labels.shape == (3, 2) and labels.dtype == torch.long
        assert isinstance(sample["caption"], str)


def test_batches_collate():
    batch = next(iter(torch.utils.data.DataLoader(make(), batch_size=4)))
    assert batch["video"].shape == (4, 1, 16, 32, 32) and len(batch["caption"]) == 4


def test_deterministic_by_seed_split_and_index():
    a, b = make(seed=3), make(seed=3)
    for i in (0, 5, 63):
        assert torch.equal(a[i]["video"], b[i]["video"]) and a[i]["caption"] == b[i]["caption"]
    assert torch.equal(a[7]["video"], a[7]["video"])  # no hidden state between calls
    assert not torch.equal(a[0]["video"], make(seed=4)[0]["video"])
    assert not torch.equal(a[0]["video"], a[1]["video"])
    assert not torch.equal(a[0]["video"], make(seed=3, split="test")[0]["video"])


def test_caption_matches_labels():
    ds = make(max_digits=3)
    pattern = re.compile(r"digit (\d) moving ((?:up|down|left|right)(?: and (?:left|right))?)")
    for i in range(32):
        sample = ds[i]
        said = [(int(d), DIRECTIONS.index(w)) for d, w in pattern.findall(sample["caption"])]
        rows = [tuple(r) for r in sample["labels"].tolist() if r != [-1, -1]]
        assert said == rows and 1 <= len(rows) <= 3
        assert (sample["labels"][len(rows):] == -1).all()  # padding after the present digits


def test_digit_count_respects_bounds():
    ds = make(min_digits=2, max_digits=2)
    assert all(len(ds.tracks(i)) == 2 for i in range(16))
    counts = {len(make(max_digits=3).tracks(i)) for i in range(64)}
    assert counts == {1, 2, 3}


# ---- geometry and motion ----


def test_digits_stay_fully_inside_every_frame():
    ds = make(num_frames=32, min_digits=1, max_digits=1, max_speed=4.0)
    room = 32 - 14
    for i in range(16):
        (track,) = ds.tracks(i)
        assert track.positions.min() >= 0 and track.positions.max() <= room
        ink = ((ds[i]["video"][0] + 1) / 2).sum(dim=(1, 2))  # (T,) total brightness per frame
        torch.testing.assert_close(ink, ink[:1].expand_as(ink))  # never clipped by a wall


def test_motion_follows_the_labelled_direction():
    ds = make(num_frames=3, min_digits=1, max_digits=1)
    room, checked = 32 - 14, 0
    for i in range(64):
        (track,) = ds.tracks(i)
        sign = np.array(SIGNS[DIRECTIONS[track.direction]])
        end = track.positions[0] + 2 * track.speed * sign / np.hypot(*sign)  # (y, x) without walls
        if ((end < 1) | (end > room - 1)).any():
            continue  # a bounce in the first frames could flip the sign (1 px margin for rounding)
        video = ds[i]["video"][0]  # (T, H, W)
        assert not torch.equal(video[0], video[2])  # motion happens
        shift = (center_of_mass(video[2]) - center_of_mass(video[0])).numpy()
        label_direction = DIRECTIONS[int(ds[i]["labels"][0, 1])]
        for axis, sign in enumerate(SIGNS[label_direction]):
            if sign == 0:
                assert abs(shift[axis]) < 1e-3
            else:
                assert np.sign(shift[axis]) == sign and abs(shift[axis]) >= 1
        checked += 1
    assert checked >= 20


def test_digits_bounce_back():
    ds = make(num_frames=64, min_digits=1, max_digits=1)
    (track,) = ds.tracks(0)
    deltas = np.diff(track.positions, axis=0)  # (T - 1, 2)
    moving = [axis for axis in range(2) if SIGNS[DIRECTIONS[track.direction]][axis] != 0]
    for axis in moving:  # 64 frames at >= 1 px/frame cross an 18 px room: both signs appear
        assert (deltas[:, axis] > 0).any() and (deltas[:, axis] < 0).any()


# ---- split ----


def test_train_and_test_use_disjoint_digit_images():
    train, test = digit_split("train"), digit_split("test")
    assert set(train).isdisjoint(test) and len(train) + len(test) == 1797
    assert 0.15 < len(test) / 1797 < 0.25
    np.testing.assert_array_equal(make(split="test").image_indices, test)
    used = {tr.image_index for i in range(64) for tr in make(split="test", max_digits=3).tracks(i)}
    assert used <= set(test)
    used = {tr.image_index for i in range(64) for tr in make(split="train", max_digits=3).tracks(i)}
    assert used <= set(train)


# ---- configuration ----


@pytest.mark.parametrize(
    "field, value",
    [
        ("size", 16),
        ("num_frames", 0),
        ("min_digits", 0),
        ("max_digits", 0),
        ("digit_size", 32),
        ("digit_size", 4),
        ("split", "valid"),
        ("length", 0),
        ("seed", -1),
        ("min_speed", 0.0),
        ("max_speed", 1.0),
        ("max_speed", 40.0),
    ],
)
def test_bad_config_raises_naming_the_value(field, value):
    with pytest.raises(ValueError, match=re.escape(str(value))):
        MovingDigitsConfig(**{field: value})


def test_config_fields_have_defaults():
    for f in dataclasses.fields(MovingDigitsConfig):
        assert f.default is not dataclasses.MISSING, f.name


def test_build_dataset():
    ds = build_dataset("moving-digits", size=64, digit_size=28, length=5)
    assert isinstance(ds, MovingDigits) and len(ds) == 5 and ds[0]["video"].shape[-1] == 64
    with pytest.raises(ValueError, match="ucf-9000"):
        build_dataset("ucf-9000")
    with pytest.raises(ValueError, match="colour"):
        build_dataset("moving-digits", colour=True)


def test_out_of_range_index_raises():
    with pytest.raises(IndexError, match="64"):
        make()[64]


def test_inverted_clips_are_light_with_a_dark_digit_and_say_so():
    plain = MovingDigits(MovingDigitsConfig(length=40, max_digits=1))
    mixed = MovingDigits(MovingDigitsConfig(length=40, max_digits=1, inverted=0.5))
    flags = [mixed.is_inverted(i) for i in range(40)]
    assert 8 < sum(flags) < 32  # about half
    for i, flag in enumerate(flags):
        a, b = plain[i], mixed[i]
        if flag:
            assert torch.allclose(b["video"], -a["video"], atol=1e-6) and b["caption"] == a["caption"] + ", inverted"
        else:
            assert torch.equal(b["video"], a["video"]) and b["caption"] == a["caption"]  # the others do not move
    with pytest.raises(ValueError, match="inverted"):
        MovingDigitsConfig(inverted=1.5)


@pytest.mark.parametrize("lead", [1, 4])
def test_the_captions_direction_holds_for_lead_frames_steps(lead):
    """With lead_frames = k every digit's first k steps go the caption's way (no bounce before), each step within a
    pixel of the track's speed along the direction (positions are rounded); bounces still come later."""
    ds = MovingDigits(MovingDigitsConfig(size=32, num_frames=16, max_digits=1, lead_frames=lead, length=200))
    unit = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1), "up and left": (-1, -1),
            "up and right": (-1, 1), "down and left": (1, -1), "down and right": (1, 1)}
    bounced_early = 0
    for i in range(len(ds)):
        (track,) = ds.tracks(i)
        want = np.array(unit[DIRECTIONS[track.direction]], dtype=float)
        want /= np.linalg.norm(want)
        steps = np.diff(track.positions, axis=0).astype(float)  # (T - 1, 2)
        for s in steps[:lead]:
            assert np.abs(s - track.speed * want).max() <= 1.0, (i, lead, steps[:lead], track.speed, want)
        bounced_early += bool((np.sign(steps[lead:lead + 2]) * np.sign(want) < 0).any())
    assert bounced_early > 0  # reflections off the walls happen right after the lead


def test_lead_frames_must_fit_the_room():
    with pytest.raises(ValueError, match="lead_frames \\* max_speed <= size - digit_size = 18"):
        MovingDigitsConfig(size=32, lead_frames=8)


def test_slow_digits_still_fit_one_lead_step():
    """The lead check does not refuse speeds below one pixel per frame (valid before lead_frames existed)."""
    MovingDigitsConfig(size=32, min_speed=0.3, max_speed=0.5)
