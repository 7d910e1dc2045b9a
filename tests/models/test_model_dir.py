"""Model directories: config.json + model.safetensors round trips and clear errors."""

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import kinema
from kinema.models.model_dir import (
    FORMAT,
    load_model_weights,
    read_model_config,
    resolve_model_dir,
    save_model_dir,
)

# ---- model directories ----


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_model_dir_round_trip(tmp_path):
    torch.manual_seed(0)
    model = _net()
    model[2].weight = nn.Parameter(torch.randn(2, 4))
    out = save_model_dir(tmp_path / "m", model, {"dim": 4, "name": "tiny"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    raw = json.loads((out / "config.json").read_text())
    assert "kinema_version" in raw
    assert read_model_config(out) == {"dim": 4, "name": "tiny"}
    fresh = _net()
    fresh.load_state_dict(load_model_weights(out))
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k


def test_model_dir_with_tied_weights(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight
    save_model_dir(tmp_path, model, {})
    weights = load_model_weights(tmp_path)
    assert torch.equal(weights["0.weight"], weights["1.weight"])


def test_model_dir_missing_raises(tmp_path):
    missing = tmp_path / "no_model"
    for fn in (load_model_weights, read_model_config):
        with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
            fn(missing)
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model_weights(tmp_path / "half")


@pytest.mark.parametrize("config", [{"kinema_version": "9"}, {"format": 1}, {"x": object()}, {"x": float("nan")},
                                    [1]])
def test_model_dir_bad_config_raises(tmp_path, config):
    with pytest.raises(ValueError):
        save_model_dir(tmp_path, nn.Linear(1, 1), config)


def test_model_dir_records_its_format(tmp_path):
    save_model_dir(tmp_path, nn.Linear(1, 1), {"a": 1})
    assert json.loads((tmp_path / "config.json").read_text())["format"] == FORMAT


@pytest.mark.parametrize("edit, message", [
    (lambda c: {**c, "format": FORMAT + 1, "kinema_version": "9.9.9"}, r"written by kinema 9\.9\.9 in model format 2"),
    (lambda c: {k: v for k, v in c.items() if k not in ("format", "kinema_version")}, "a kinema model directory"),
])
def test_model_dir_from_another_version_is_refused(tmp_path, edit, message):
    save_model_dir(tmp_path, nn.Linear(1, 1), {"a": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(edit(config)))
    with pytest.raises(ValueError, match=message):
        read_model_config(tmp_path)


def test_model_dir_written_before_formats_is_format_1(tmp_path):
    save_model_dir(tmp_path, nn.Linear(1, 1), {"a": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    del config["format"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_model_config(tmp_path) == {"a": 1}


def test_truncated_weights_are_a_clear_error(tmp_path):
    save_model_dir(tmp_path, nn.Linear(4, 4), {})
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read .*model.safetensors"):
        load_model_weights(tmp_path)


@pytest.mark.parametrize("name", ["absolute", "no/such/dir"])
def test_missing_model_lists_the_bundled_models_only(tmp_path, name):
    (tmp_path / "sibling").mkdir()
    target = tmp_path / "missing" if name == "absolute" else name
    bundled = sorted(p.name for p in (Path(kinema.__file__).parent / "pretrained").iterdir() if p.is_dir())
    with pytest.raises(FileNotFoundError, match=re.escape(f"(bundled: {', '.join(bundled) or 'none'})")):
        resolve_model_dir(target)
