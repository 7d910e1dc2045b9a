"""The Trainer end to end on a tiny model: loss terms, outputs on disk, exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from kinema.config import load_config
from kinema.training import Trainer
from kinema.training.trainer import StepBatchSampler

TINY = {
    "model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
    "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
    "data.size": 24, "data.num_frames": 4, "data.length": 64, "train.batch_size": 2, "train.log_every": 1,
    "train.checkpoint_every": 2, "train.sample_every": 0, "train.warmup_steps": 2, "train.lr": 1e-3,
}


def tiny_config(**extra):
    return load_config(None, {**TINY, **extra})


def test_fit_writes_run_directory(tmp_path):
    Trainer(tiny_config(**{"train.steps": 3, "train.sample_every": 3, "train.sample_steps": 2,
                           "train.num_samples": 2}), tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["loss"] == r["loss"] for r in rows)
    for name in ("loss.png", "config.json", "model/config.json", "model/model.safetensors",
                 "samples/step_00000003.gif"):
        assert (tmp_path / name).is_file(), name
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000002", "step_00000003"] or \
        sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000002", "step_00000003"]


def test_hybrid_loss_logs_vb(tmp_path):
    cfg = tiny_config(**{"train.steps": 2, "model.learned_variance": True, "diffusion.loss": "hybrid"})
    Trainer(cfg, tmp_path).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("vb" in r and r["vb"] >= 0 for r in rows)


@pytest.mark.parametrize("precision", ["no", "auto"])
def test_resume_continues_exactly(tmp_path, precision):
    """4 steps + resume to 6 ends with the same weights as 6 uninterrupted steps."""
    cfg = dict(**{"train.mixed_precision": precision})
    Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "straight").fit()
    Trainer(tiny_config(**cfg, **{"train.steps": 4}), tmp_path / "split").fit()
    resumed = Trainer(tiny_config(**cfg, **{"train.steps": 6}), tmp_path / "split", resume=True)
    assert resumed.step_count == 4
    resumed.fit()
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_without_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_config(), tmp_path, resume=True)


def test_batches_are_a_function_of_the_step():
    a = StepBatchSampler(100, 4, seed=0, process=0, start_step=0, micro=2)
    b = StepBatchSampler(100, 4, seed=0, process=0, start_step=3, micro=2)
    first = [batch for _, batch in zip(range(10), a)]
    assert [batch for _, batch in zip(range(4), b)] == first[6:10]
    other = StepBatchSampler(100, 4, seed=0, process=1, start_step=0, micro=2)
    assert next(iter(other)) != first[0]  # each process draws its own shard
