"""Two processes under torchrun (DDP over gloo on the CPU) train like one process with their global batch,
with and without gradient accumulation, and their checkpoint resumes on one process."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from kinema.training.checkpoint import load_checkpoint

CONFIG = {
    "model": {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "head_dim": 8, "norm_groups": 4,
              "spatial_attention_levels": [1], "frame_conditioning": True},
    "diffusion": {"num_steps": 100},
    "data": {"size": 24, "num_frames": 4, "length": 64},
    "train": {"steps": 1, "batch_size": 2, "log_every": 1, "checkpoint_every": 1, "sample_every": 0,
              "warmup_steps": 2, "lr": 1e-3, "mixed_precision": "no"},
}


def _train(tmp_path, out, *sets, processes=1, resume=False):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    argv = [*launch, "-m", "kinema.cli", "train", "--config", str(config), "--out", str(tmp_path / out)]
    argv += [a for s in sets for a in ("--set", s)] + (["--resume"] if resume else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    return load_checkpoint(tmp_path / out), run


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_equal_one_process_with_their_global_batch(tmp_path):
    (step, one), _ = _train(tmp_path, "one", "train.batch_size=4")
    (step2, two), run = _train(tmp_path, "two", processes=2)  # 2 x batch 2
    (_, accum), _ = _train(tmp_path, "accum", "train.batch_size=1", "train.grad_accum=2", processes=2)  # 2 x 1 x 2
    (_, half), _ = _train(tmp_path, "half", "train.batch_size=2")  # one process, half the global batch
    assert step == step2 == 1
    assert len(two["rng"]) == 2 and len(one["rng"]) == 1  # each process's RNG is saved
    assert run.stdout.count("parameters") == 1  # one main process: the two really joined one DDP group

    moved = _max_diff(one["model"], half["model"])
    ddp, ddp_accum = _max_diff(one["model"], two["model"]), _max_diff(one["model"], accum["model"])
    print(f"max |w(1 x 4) - w(2 x 2)| = {ddp:.3g}; with accumulation (2 x 1 x 2) {ddp_accum:.3g}; "
          f"vs 1 x 2 (other data) {moved:.3g}")
    assert ddp < 1e-6 and ddp_accum < 1e-6
    assert moved > 1e-5  # a different batch moves the weights measurably: the comparison can fail
    assert _max_diff(one["ema"], two["ema"]) < 1e-6
    rows = [json.loads((tmp_path / d / "metrics.jsonl").read_text()) for d in ("one", "two")]
    assert abs(rows[0]["loss"] - rows[1]["loss"]) < 1e-5  # the logged loss is the mean over processes


@pytest.mark.slow
def test_checkpoint_of_two_processes_resumes_on_one(tmp_path):
    _train(tmp_path, "two", processes=2)
    (step, resumed), run = _train(tmp_path, "two", "train.batch_size=4", "train.steps=3", resume=True)
    (_, straight), _ = _train(tmp_path, "one", "train.batch_size=4", "train.steps=3")
    assert step == 3 and "global batch" not in run.stderr  # 1 x 4 continues the 2 x 2 data stream
    diff = _max_diff(straight["model"], resumed["model"])
    print(f"max |w(1 process, 3 steps) - w(2 processes 1 step, then 1 process 2 steps)| = {diff:.3g}")
    assert diff < 1e-6
    assert all(torch.isfinite(v).all() for v in resumed["model"].values())
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
