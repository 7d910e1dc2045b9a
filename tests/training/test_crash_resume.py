"""A `kinema train` process killed with SIGKILL at random moments and resumed each time ends exactly where an
uninterrupted run ends: the same weights, EMA, optimizer, RNG and metrics, bit for bit (CPU, fp32, one thread)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kinema.training.checkpoint import flatten_state, list_checkpoints, load_checkpoint

STEPS = 40
CONFIG = {
    "model": {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "head_dim": 8, "norm_groups": 4,
              "spatial_attention_levels": [1]},
    "diffusion": {"num_steps": 100},
    "data": {"size": 24, "num_frames": 4, "length": 64},
    "train": {"steps": STEPS, "batch_size": 2, "log_every": 1, "checkpoint_every": 2, "sample_every": 0,
              "warmup_steps": 2, "lr": 1e-3, "mixed_precision": "no"},
}


def _start(config, out, resume=False):
    argv = [sys.executable, "-m", "kinema.cli", "train", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv + (["--resume"] if resume else []), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _last_logged(out):
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [0]
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line being written
            pass
    return max(steps)


def _kill_at_random(proc, out, rng, start):
    """Wait until this process has trained past step `start`, then SIGKILL it after a random delay."""
    began, deadline = time.time(), time.time() + 120
    metrics = out / "metrics.jsonl"
    while _last_logged(out) <= start or metrics.stat().st_mtime < began:
        assert proc.poll() is None, f"the run ended before training (exit {proc.returncode}): {proc.stderr.read()}"
        assert time.time() < deadline, "the run did not start training within 120 s"
        time.sleep(0.02)
    delay = rng.uniform(0.0, 1.5)
    time.sleep(delay)
    assert proc.poll() is None, f"the run finished before the kill at +{delay:.2f} s; raise STEPS"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return delay


@pytest.mark.slow
def test_sigkill_three_times_then_resume_ends_bit_identical(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    seed = int(os.environ.get("KINEMA_KILL_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    print(f"kill seed {seed} (set KINEMA_KILL_SEED to replay)")

    straight = _start(config, tmp_path / "straight")
    assert straight.wait() == 0, straight.stderr.read()

    out, resumed_at = tmp_path / "killed", 0
    for kill in range(3):
        proc = _start(config, out, resume=resumed_at > 0)  # killed before its first checkpoint: start afresh
        delay = _kill_at_random(proc, out, rng, resumed_at)
        left = sorted(p.name for p in (out / "checkpoints").iterdir()) if (out / "checkpoints").is_dir() else []
        print(f"kill {kill + 1}: +{delay:.2f} s after step {resumed_at} trained; logged up to step "
              f"{_last_logged(out)}; checkpoints dir: {left}")
        found = list_checkpoints(out)
        resumed_at = int(found[-1].name.split("_")[1]) if found else 0
    proc = _start(config, out, resume=resumed_at > 0)
    assert proc.wait() == 0, proc.stderr.read()
    assert "Traceback" not in proc.stderr.read()

    # every tensor of the final training state: weights, EMA, AdamW moments, LR schedule, RNG states
    step_a, a = load_checkpoint(tmp_path / "straight")
    step_b, b = load_checkpoint(out)
    assert step_a == step_b == STEPS
    (ta, sa), (tb, sb) = flatten_state(a), flatten_state(b)
    assert sa == sb and ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]
    ma, mb = (load_file(d / "model" / "model.safetensors") for d in (tmp_path / "straight", out))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    # the metrics file holds each step once, with the uninterrupted run's losses
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (tmp_path / "straight", out)]
    assert [r["step"] for r in rows[1]] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows[0]] == [r["loss"] for r in rows[1]]
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
