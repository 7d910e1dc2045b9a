"""Pickle-free checkpoints: flatten round trips, atomic save / load, fallback, RNG, model dirs."""

import json
import math
import random
import re

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from kinema.training.checkpoint import (
    flatten_state,
    list_checkpoints,
    load_checkpoint,
    nonfinite_tensors,
    remove_stale,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unflatten_state,
)

# ---- helpers ----


def _through_disk(obj):
    """Flatten, pass tensors through safetensors bytes and the skeleton through strict JSON, unflatten."""
    tensors, skeleton = flatten_state(obj)
    assert all(isinstance(k, str) for k in tensors)
    blob = safetensors.torch.save({k: v.detach().clone().contiguous() for k, v in tensors.items()})
    return unflatten_state(safetensors.torch.load(blob), json.loads(json.dumps(skeleton, allow_nan=False)))


def _assert_same(a, b, where="root"):
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k!r}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _train_setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    return model, opt, sched


def _train_step(model, opt, sched, x):
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


# ---- flatten / unflatten ----


def test_optimizer_round_trip_continues_bit_identically():
    model, opt, sched = _train_setup()
    x = torch.randn(8, 4)
    for _ in range(2):
        _train_step(model, opt, sched, x)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    restored = _through_disk(state)  # copies now, before the original moves on

    assert set(restored["optimizer"]["state"]) == {0, 1}  # int keys come back as ints
    assert isinstance(restored["optimizer"]["param_groups"][0]["betas"], tuple)
    _assert_same(opt.state_dict(), restored["optimizer"])
    _assert_same(sched.state_dict(), restored["scheduler"])

    model2, opt2, sched2 = _train_setup(seed=1)
    model2.load_state_dict(restored["model"])
    opt2.load_state_dict(restored["optimizer"])
    sched2.load_state_dict(restored["scheduler"])
    _train_step(model, opt, sched, x)
    _train_step(model2, opt2, sched2, x)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_exotic_values_round_trip():
    obj = {
        "tuples": (1, (2.5, "a", None), ()),
        7: "int key",
        (None): {True: 1, 1.5: 2},
        "__tensor__": "a plain value under a marker-like key",
        "floats": [float("inf"), float("-inf"), float("nan"), 0.1, -0.0],
        "arrays": [np.arange(5, dtype=np.uint32), np.array(3.0), np.zeros((2, 0), np.float16),
                   np.array([[1, 2]], dtype=">i4")],
        "np_scalars": (np.float64(1.5), np.int64(-3), np.bool_(True)),
        "tensors": {0: torch.arange(3), 1: torch.ones(2, dtype=torch.bfloat16), 2: torch.zeros(0)},
        "rng": rng_state(),
        "empty": {},
    }
    _assert_same(obj, _through_disk(obj))


def test_colliding_paths_get_distinct_keys():
    obj = {"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}
    tensors, _ = flatten_state(obj)
    assert len(tensors) == 2
    _assert_same(obj, _through_disk(obj))


@pytest.mark.parametrize("bad", [object(), {"k": {1, 2}}, {(1, 2): 3}, np.array([None], dtype=object)])
def test_unsupported_values_raise(bad):
    with pytest.raises(ValueError, match="cannot store"):
        flatten_state(bad)


# ---- save / load ----


def _state(v: float) -> dict:
    return {"model": {"w": torch.full((2, 3), v)}, "data": {"epoch": 1, "index": 42}, "lr": 1e-3}


def _names(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_save_load_round_trip(tmp_path):
    path = save_checkpoint(tmp_path, 7, _state(1.0))
    assert path == tmp_path / "checkpoints" / "step_00000007"
    assert {p.name for p in path.iterdir()} == {"state.safetensors", "meta.json"}
    meta = json.loads((path / "meta.json").read_text())
    assert meta["step"] == 7 and meta["format"] == 1
    for source in (tmp_path, path):
        step, state = load_checkpoint(source)
        assert step == 7
        _assert_same(_state(1.0), state)
    # saving the same step again replaces it, leaving no temp dirs behind
    save_checkpoint(tmp_path, 7, _state(2.0))
    assert _names(tmp_path) == ["step_00000007"]
    assert torch.equal(load_checkpoint(tmp_path)[1]["model"]["w"], torch.full((2, 3), 2.0))


def test_shared_storage_and_views_are_saved(tmp_path):
    t = torch.arange(12.0)
    state = {"a": t, "b": t[2:5], "c": t, "d": t.view(3, 4).T, "param": nn.Parameter(torch.ones(2))}
    save_checkpoint(tmp_path, 0, state)
    _, loaded = load_checkpoint(tmp_path)
    for k in state:
        assert torch.equal(loaded[k], state[k].detach()), k


def test_keep_last_k(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, _state(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000040", "step_00000050"]
    assert _names(tmp_path) == ["step_00000040", "step_00000050"]  # no temp or trash dirs


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_state_is_never_written(tmp_path, bad):
    save_checkpoint(tmp_path, 1, _state(1.0))
    state = _state(2.0)
    state["model"]["w"][1, 2] = bad
    with pytest.raises(ValueError, match=r"refusing to write checkpoint step 2: non-finite values in \['model.w'\]"):
        save_checkpoint(tmp_path, 2, state)
    assert _names(tmp_path) == ["step_00000001"]  # nothing written, no temp dir left
    assert nonfinite_tensors({"i": torch.tensor([2**40]), "f": torch.ones(2)}) == []


def test_remove_stale_cleans_what_a_kill_leaves(tmp_path):
    root = tmp_path / "checkpoints"
    save_checkpoint(tmp_path, 1, _state(1.0))
    save_checkpoint(tmp_path, 2, _state(2.0))
    (root / ".tmp-step_00000003-11-abcd").mkdir()  # killed while writing step 3
    (root / ".del-step_00000000-11-abcd").mkdir()  # killed while pruning
    (root / "step_00000002").rename(root / ".old-step_00000002-ab12")  # killed between the renames of a re-save
    assert len(remove_stale(tmp_path)) == 3
    assert _names(tmp_path) == ["step_00000001", "step_00000002"]
    assert torch.equal(load_checkpoint(tmp_path)[1]["model"]["w"], torch.full((2, 3), 2.0))


def test_list_checkpoints_sorts_by_step_and_ignores_temp_dirs(tmp_path):
    for step in (100, 9, 123456789):
        save_checkpoint(tmp_path, step, _state(0.0), keep=10)
    (tmp_path / "checkpoints" / ".tmp-step_00000200-1-abc").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000009", "step_00000100", "step_123456789"]
    assert list_checkpoints(tmp_path / "nowhere") == []


def _truncate(path):
    f = path / "state.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


@pytest.mark.parametrize("corrupt", [
    _truncate,
    lambda p: (p / "meta.json").write_text("{not json"),
    lambda p: (p / "state.safetensors").unlink(),
    lambda p: (p / "meta.json").write_text(json.dumps({"format": 99, "step": 2, "state": {}})),
])
def test_corrupt_newest_falls_back_with_warning(tmp_path, corrupt):
    save_checkpoint(tmp_path, 1, _state(1.0))
    newest = save_checkpoint(tmp_path, 2, _state(2.0))
    corrupt(newest)
    with pytest.warns(UserWarning, match=re.escape(str(newest))):
        step, state = load_checkpoint(tmp_path)
    assert step == 1
    _assert_same(_state(1.0), state)
    with pytest.raises(ValueError, match=re.escape(str(newest))):
        load_checkpoint(newest)  # an explicit checkpoint path does not fall back


def test_all_corrupt_raises(tmp_path):
    _truncate(save_checkpoint(tmp_path, 1, _state(1.0)))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable checkpoint"):
        load_checkpoint(tmp_path)


def test_empty_or_missing_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.mark.parametrize("kwargs", [{"step": -1}, {"step": 1.0}, {"step": 1, "keep": 0}])
def test_bad_save_args_raise(tmp_path, kwargs):
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path, state=_state(0.0), **kwargs)


# ---- RNG ----


def _draw():
    return random.random(), random.gauss(0, 1), np.random.randn(3), torch.randn(3)


def test_rng_restore_is_exact(tmp_path):
    random.gauss(0, 1)
    np.random.randn(1)  # leaves a cached gaussian in both states
    save_checkpoint(tmp_path, 0, {"rng": rng_state()})
    first = _draw()
    set_rng_state(load_checkpoint(tmp_path)[1]["rng"])
    second = _draw()
    assert first[:2] == second[:2]
    assert np.array_equal(first[2], second[2]) and torch.equal(first[3], second[3])


def test_set_rng_state_missing_keys_raise():
    with pytest.raises(ValueError, match="numpy"):
        set_rng_state({"python": random.getstate(), "torch": torch.get_rng_state()})
