"""Typed config: defaults, YAML in, clear errors naming the key and value, round trips and overrides."""

import dataclasses
import json
from pathlib import Path

import pytest

from kinema.config import Config, DiffusionConfig, UNetConfig, from_dict, load_config, parse_override, to_dict

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


# ---- reading ----


def test_defaults_load():
    config = load_config()
    assert config == Config()
    for section in dataclasses.fields(Config):
        part = getattr(config, section.name)
        for f in dataclasses.fields(part):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert getattr(part, f.name) == default, f"{section.name}.{f.name}"


def test_load_yaml_file(tmp_path):
    text = "model:\n  channels: 32\n  channel_mult: [1, 2]\n  spatial_attention_levels: [1]\ntrain:\n  lr: 1\n"
    path = _write(tmp_path, text)
    config = load_config(path)
    assert config.model.channels == 32
    assert config.model.channel_mult == (1, 2)  # YAML lists become tuples
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)  # ints are accepted as floats
    assert config.model.num_res_blocks == UNetConfig().num_res_blocks  # the rest keeps its defaults
    assert config.diffusion == DiffusionConfig()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    assert isinstance(load_config(path), Config)


def test_empty_file_is_the_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == Config()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n"])
def test_file_must_be_a_mapping(tmp_path, text):
    with pytest.raises(ValueError, match="mapping"):
        load_config(_write(tmp_path, text))


def test_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ValueError, match="model.*mapping"):
        load_config(_write(tmp_path, "model: 3\n"))


# ---- errors name the key and the value ----


@pytest.mark.parametrize(
    "text,bad,close",
    [
        ("model:\n  chanels: 32\n", "model.chanels", "channels"),
        ("modle:\n  channels: 32\n", "modle", "model"),
        ("train:\n  learning_rate: 0.1\n  lr: 0.1\n", "train.learning_rate", None),
        ("diffusion:\n  num_step: 10\n", "diffusion.num_step", "num_steps"),
    ],
)
def test_unknown_key_suggests_the_close_one(tmp_path, text, bad, close):
    with pytest.raises(ValueError, match="unknown config key") as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert repr(bad) in message
    if close is not None:
        assert f"did you mean {close!r}" in message


@pytest.mark.parametrize(
    "text,key",
    [
        ("model:\n  channels: wide\n", "model.channels"),
        ("model:\n  channels: true\n", "model.channels"),  # a bool is not an int
        ("model:\n  channels: 32.0\n", "model.channels"),
        ("model:\n  learned_variance: 'yes'\n", "model.learned_variance"),
        ("model:\n  channel_mult: 2\n", "model.channel_mult"),
        ("model:\n  channel_mult: [1, two]\n", "model.channel_mult"),
        ("train:\n  lr: 1e-3x\n", "train.lr"),
        ("diffusion:\n  schedule: 3\n", "diffusion.schedule"),
    ],
)
def test_wrong_type_names_the_key(tmp_path, text, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    "text,key,value",
    [
        ("model:\n  dropout: 1.5\n", "model.dropout", "1.5"),
        ("model:\n  channels: 0\n", "model.channels", "0"),
        ("model:\n  norm_groups: 5\n", "model.norm_groups", "5"),
        ("model:\n  spatial_attention_levels: [7]\n", "model.spatial_attention_levels", "7"),
        ("diffusion:\n  schedule: quadratic\n", "diffusion.schedule", "quadratic"),
        ("diffusion:\n  prediction: score\n", "diffusion.prediction", "score"),
        ("diffusion:\n  num_steps: 1\n", "diffusion.num_steps", "1"),
        ("diffusion:\n  shift: 0.0\n", "diffusion.shift", "0.0"),
        ("diffusion:\n  shift: -2.0\n", "diffusion.shift", "-2.0"),
        ("diffusion:\n  schedule: linear\n  num_steps: 10\n", "diffusion.num_steps", "10"),
        ("data:\n  size: 4\n", "data.size", "4"),
        ("train:\n  ema_decay: 1.0\n", "train.ema_decay", "1.0"),
        ("train:\n  mixed_precision: fp8\n", "train.mixed_precision", "fp8"),
        ("train:\n  batch_size: 0\n", "train.batch_size", "0"),
    ],
)
def test_out_of_range_names_key_and_value(tmp_path, text, key, value):
    with pytest.raises(ValueError) as info:
        load_config(_write(tmp_path, text))
    assert key in str(info.value) and value in str(info.value)


def test_hybrid_loss_needs_learned_variance(tmp_path):
    with pytest.raises(ValueError, match="hybrid.*learned_variance"):
        load_config(_write(tmp_path, "diffusion:\n  loss: hybrid\n"))
    config = load_config(_write(tmp_path, "diffusion:\n  loss: hybrid\nmodel:\n  learned_variance: true\n"))
    assert config.diffusion.loss == "hybrid" and config.model.out_channels == 2 * config.model.in_channels


def test_data_size_must_divide_by_the_downsample_factor(tmp_path):
    # channel_mult (1, 2, 2, 2) halves H and W three times: sizes must be multiples of 8
    with pytest.raises(ValueError, match="data.size 36 is not divisible by 8"):
        load_config(_write(tmp_path, "model:\n  channel_mult: [1, 2, 2, 2]\ndata:\n  size: 36\n"))
    assert load_config(_write(tmp_path, "model:\n  channel_mult: [1, 2, 2, 2]\ndata:\n  size: 40\n")).data.size == 40
    # 2 x 2 patches on top of three halvings: multiples of 16
    with pytest.raises(ValueError, match=r"data.size 40 is not divisible by 16 \(model.patch_size 2"):
        load_config(_write(tmp_path, "model:\n  channel_mult: [1, 2, 2, 2]\n  patch_size: 2\ndata:\n  size: 40\n"))


# ---- writing, round trips and overrides ----


def test_to_dict_from_dict_round_trip():
    config = load_config(overrides={"model.channels": 32, "model.channel_mult": [1, 2],
                                    "model.spatial_attention_levels": [1], "diffusion.schedule": "linear",
                                    "train.lr": 3e-4})
    data = to_dict(config)
    assert json.loads(json.dumps(data)) == data  # plain JSON data
    assert data["model"]["channel_mult"] == [1, 2]
    assert from_dict(Config, data) == config
    assert from_dict(Config, json.loads(json.dumps(data))) == config


def test_exponents_without_a_dot_read_as_numbers(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string; a config and --set read it as people mean it
    config = load_config(_write(tmp_path, "train:\n  lr: 1e-3\n  weight_decay: 2E-2\n"))
    assert config.train.lr == 1e-3 and config.train.weight_decay == 2e-2
    assert parse_override("cond.kl_weight=1e-6") == ("cond.kl_weight", 1e-6)


def test_overrides_apply_over_the_file(tmp_path):
    path = _write(tmp_path, "model:\n  channels: 32\ntrain:\n  steps: 5\n")
    config = load_config(path, overrides={"model.channels": 64, "train.lr": 1e-3, "data.num_frames": 4})
    assert config.model.channels == 64 and config.train.lr == 1e-3 and config.data.num_frames == 4
    assert config.train.steps == 5


def test_overrides_into_an_empty_section(tmp_path):
    # "model:" with nothing under it reads as None; an override must still land there
    config = load_config(_write(tmp_path, "model:\ntrain:\n  steps: 5\n"), overrides={"model.channels": 32})
    assert config.model.channels == 32 and config.train.steps == 5


def test_overrides_are_validated():
    with pytest.raises(ValueError, match="did you mean 'channels'"):
        load_config(overrides={"model.chanels": 32})
    with pytest.raises(ValueError, match=r"model\.dropout = 2"):
        load_config(overrides={"model.dropout": 2.0})
