"""`kinema train-flow`: a few self-supervised steps lower the loss and write a loadable flow model directory."""

import json

import torch

from kinema.cli import main
from kinema.config import FlowTrainConfig
from kinema.evaluation.temporal import translated_digits
from kinema.models.flow import FlowNet
from kinema.models.model_dir import load_flow_net
from kinema.training.flow_training import flow_loss_terms


def test_loss_falls_on_translated_digits():
    torch.manual_seed(0)
    net, cfg = FlowNet(), FlowTrainConfig()
    f1, f2, _, _ = translated_digits(16, max_shift=2.0, seed=3, split="train")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = flow_loss_terms(net, f1, f2, cfg)["photo"].item()
    for _ in range(30):
        loss = flow_loss_terms(net, f1, f2, cfg)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert flow_loss_terms(net, f1, f2, cfg)["photo"].item() < 0.8 * first


def test_cli_writes_a_flow_model_directory(tmp_path, capsys):
    out = tmp_path / "flow"
    code = main(["train-flow", "--data", "moving-digits", "--out", str(out), "--steps", "3",
                 "--set", "flow_train.batch_size=4", "--set", "flow.width=8", "--set", "data.num_frames=3"])
    assert code == 0 and "flow model" in capsys.readouterr().out
    net = load_flow_net(out)
    assert net.config.width == 8 and len(json.loads((out / "metrics.json").read_text())) >= 1
    assert main(["train-flow", "--data", "moving-digits", "--out", str(out), "--set", "model.channels=8"]) == 2


def test_fewer_clips_than_a_batch_is_refused_instead_of_waiting_for_ever(tmp_path, capsys):
    code = main(["train-flow", "--data", "moving-digits", "--out", str(tmp_path / "flow"), "--steps", "2",
                 "--set", "data.length=3", "--set", "flow_train.batch_size=4", "--set", "flow.width=8",
                 "--set", "data.num_frames=3"])
    assert code == 2 and "3 clips, fewer than flow_train.batch_size = 4" in capsys.readouterr().err
