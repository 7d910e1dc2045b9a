"""`kinema eval` end to end on a tiny untrained model: the report, FVD "unavailable" without weights, usage errors."""

import json

import pytest
import torch

from kinema.cli import main
from kinema.config import UNetConfig, to_dict
from kinema.models import SpaceTimeUNet
from kinema.models.model_dir import save_model_dir


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    config = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, head_dim=8, norm_groups=4,
                        spatial_attention_levels=(1,), frame_conditioning=True)
    out = tmp_path_factory.mktemp("eval") / "model"
    save_model_dir(out, SpaceTimeUNet(config), {
        "model": to_dict(config), "diffusion": {"num_steps": 50},
        "data": {"kind": "moving-digits", "size": 32, "num_frames": 6}})
    return out


def test_eval_without_i3d_reports_fvd_unavailable_and_exits_0(tiny_model, tmp_path, capsys):
    argv = ["eval", "--model", str(tiny_model), "--task", "interpolate", "--num", "4", "--steps", "2",
            "--batch", "4", "--sampler", "dpmpp_2m", "--seed", "3", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    assert "FVD unavailable" in capsys.readouterr().out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    p = report["protocol"]
    assert (p["task"], p["sampler"], p["steps"], p["seed"], p["num_clips"]) == ("interpolate", "dpmpp_2m", [2], 3, 4)
    assert p["frames"]["given"] == [0, 5] and p["frames"]["size"] == 32 and p["model"] == str(tiny_model)
    assert report["feature_networks"]["fvd"]["available"] is False
    row = report["results"][0]
    assert row["fvd"] == "unavailable" and row["frame_metrics"]["frames_counted"] == [1, 2, 3, 4]
    assert report["environment"]["seconds_total"] > 0
    assert {"report.md", "samples.png", "per_frame.png"} <= {f.name for f in (tmp_path / "r").iterdir()}


def test_eval_records_and_applies_the_cache_interval(tiny_model, tmp_path, step_caches):
    argv = ["eval", "--model", str(tiny_model), "--num", "4", "--steps", "4", "--batch", "4", "--sampler", "dpmpp_2m",
            "--cache-interval", "2", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["protocol"]["cache_interval"] == 2
    assert "the full network every 2 steps" in (tmp_path / "r" / "report.md").read_text()
    assert step_caches and all((c.interval, c.full_calls, c.reused_calls) == (2, 2, 2) for c in step_caches)


@pytest.mark.parametrize("extra, message", [
    (["--i3d", "no/such/i3d.safetensors"], "no/such/i3d.safetensors"),
    (["--sampler", "euler_magic"], "euler_magic"),
    (["--task", "generate", "--draws", "2"], "draws=2"),
])
def test_eval_usage_errors_exit_2_with_the_bad_value(tiny_model, tmp_path, extra, message, capsys):
    argv = ["eval", "--model", str(tiny_model), "--num", "4", "--steps", "1", "--out", str(tmp_path / "r"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_eval_refuses_a_pickled_i3d_without_trust_pickle(tiny_model, tmp_path, capsys):
    weights = tmp_path / "i3d.pt"
    torch.save({"logits.conv3d.weight": torch.zeros(1)}, weights)
    argv = ["eval", "--model", str(tiny_model), "--num", "4", "--steps", "1", "--i3d", str(weights),
            "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--trust-pickle" in capsys.readouterr().err


def test_eval_with_i3d_weights_reports_fvd_and_their_sha256(tiny_model, tmp_path):
    import hashlib

    from safetensors.torch import save_file

    from kinema.evaluation.fvd import I3D

    torch.manual_seed(1)
    weights = tmp_path / "i3d.safetensors"
    save_file({k: v.contiguous() for k, v in I3D().state_dict().items()}, str(weights))
    argv = ["eval", "--model", str(tiny_model), "--num", "4", "--steps", "1", "--batch", "4", "--i3d", str(weights),
            "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    net = report["feature_networks"]["fvd"]
    assert net["available"] is True and net["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert "400 logits" in net["features"] and "224x224" in net["preprocessing"]
    assert isinstance(report["results"][0]["fvd"], float) and report["results"][0]["fvd"] >= 0
