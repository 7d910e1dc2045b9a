"""Atomic, pickle-free save and load of the full training state.

A training state (model, EMA, optimizer, scheduler, RNG, data position) is split into
a flat dict of tensors, written with safetensors, and a JSON skeleton that says where
each tensor goes. Nothing is ever pickled, so loading a checkpoint runs no code.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..files import fsync_dir, fsync_file, replace_dir
from ..models.model_dir import _unshared

FORMAT = 1  # version of the checkpoint layout written to meta.json
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
# Skeleton nodes that are JSON objects carrying one of these keys are markers, not plain dicts.
_MARKERS = ("__tensor__", "__ndarray__", "__npscalar__", "__tuple__", "__dict__", "__float__")
_KEY_TYPES = (str, int, float, bool, type(None))

# ---- flatten / unflatten ----


def _join(path: str, part: Any) -> str:
    return f"{path}.{part}" if path else str(part)


def _new_key(path: str, tensors: dict[str, Tensor]) -> str:
    key = path or "root"
    n = 1
    while key in tensors:  # {"a.b": x, "a": {"b": y}} share a dotted path; keep both
        key = f"{path or 'root'}#{n}"
        n += 1
    return key


def _encode(obj: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        key = _new_key(path, tensors)
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise ValueError(f"cannot store numpy array of dtype object at '{path}' in a checkpoint")
        key = _new_key(path, tensors)
        # Raw bytes keep every numpy dtype (e.g. the uint32 MT19937 key) exact, byte order included.
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).reshape(-1).view(np.uint8).copy())
        return {"__ndarray__": key, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {"__npscalar__": obj.dtype.str, "value": _encode(obj.item(), path, tensors)}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        # JSON has no inf / nan; spell them as strings that float() reads back.
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, _KEY_TYPES)]
        if bad:
            raise ValueError(f"cannot store dict key {bad[0]!r} at '{path}'; keys must be str, int, float, bool or None")
        if all(isinstance(k, str) and k not in _MARKERS for k in obj):
            return {k: _encode(v, _join(path, k), tensors) for k, v in obj.items()}
        # Non-string keys (optimizer state is keyed by int) keep their type as [key, value] pairs.
        return {"__dict__": [[_encode(k, path, tensors), _encode(v, _join(path, k), tensors)] for k, v in obj.items()]}
    raise ValueError(
        f"cannot store {type(obj).__name__} at '{path}' in a checkpoint; allowed: tensors, numpy arrays, "
        "dict, list, tuple, int, float, bool, str, None"
    )


def _decode(node: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return _lookup(tensors, node["__tensor__"])
    if "__ndarray__" in node:
        raw = _lookup(tensors, node["__ndarray__"]).numpy()
        return raw.view(np.dtype(node["dtype"])).reshape(node["shape"]).copy()
    if "__npscalar__" in node:
        return np.dtype(node["__npscalar__"]).type(_decode(node["value"], tensors))
    if "__tuple__" in node:
        return tuple(_decode(v, tensors) for v in node["__tuple__"])
    if "__dict__" in node:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in node["__dict__"]}
    if "__float__" in node:
        return float(node["__float__"])
    return {k: _decode(v, tensors) for k, v in node.items()}


def _lookup(tensors: dict[str, Tensor], key: str) -> Tensor:
    if key not in tensors:
        raise ValueError(f"skeleton refers to tensor '{key}', which is missing from the tensor file")
    return tensors[key]


def flatten_state(obj: Any) -> tuple[dict[str, Tensor], Any]:
    """Split nested state into (flat dict of tensors keyed by dotted path, JSON-serialisable skeleton)."""
    tensors: dict[str, Tensor] = {}
    skeleton = _encode(obj, "", tensors)
    return tensors, skeleton


def unflatten_state(tensors: dict[str, Tensor], skeleton: Any) -> Any:
    """Rebuild the nested state that `flatten_state` split into `tensors` and `skeleton`."""
    return _decode(skeleton, tensors)


# ---- training checkpoints ----


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Return the checkpoint directories under `run_dir/checkpoints`, sorted by step ascending."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: str | os.PathLike, step: int, state: dict, keep: int = 3) -> Path:
    """Atomically write `state` to run_dir/checkpoints/step_{step:08d}/, prune to `keep`; return the path."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    tensors, skeleton = flatten_state(state)
    bad = nonfinite_tensors(tensors)
    if bad:
        raise ValueError(f"refusing to write checkpoint step {step}: non-finite values in {bad[:5]}"
                         f"{f' and {len(bad) - 5} more' if len(bad) > 5 else ''}")
    meta = json.dumps({"format": FORMAT, "step": step, "state": skeleton}, allow_nan=False)

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_unshared(tensors), str(tmp / "state.safetensors"), metadata={"format": str(FORMAT)})
        (tmp / "meta.json").write_text(meta)
        fsync_file(tmp / "state.safetensors")
        fsync_file(tmp / "meta.json")
        fsync_dir(tmp)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)
    _prune(run_dir, keep, final)
    return final


def nonfinite_tensors(tensors: dict[str, Tensor]) -> list[str]:
    """Keys of the floating-point tensors that hold a NaN or an infinity."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def remove_stale(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temp / half-deleted directories a killed run left under run_dir/checkpoints; return them."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.is_dir() and p.name.startswith((".tmp-", ".del-", ".old-"))]
    for path in stale:
        if path.name.startswith(".old-") and not (root / path.name.split("-")[1]).exists():
            # killed between the two renames of replace_dir: the old copy is the only one; put it back
            os.rename(path, root / path.name.split("-")[1])
            continue
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _prune(run_dir: str | os.PathLike, keep: int, just_saved: Path) -> None:
    # The checkpoint just written is never pruned, even if older steps exist above it.
    for path in list_checkpoints(run_dir)[:-keep]:
        if path == just_saved:
            continue
        doomed = path.with_name(f".del-{path.name}-{uuid.uuid4().hex[:8]}")
        os.rename(path, doomed)  # a kill mid-delete leaves a hidden dir, never a half checkpoint
        shutil.rmtree(doomed)


def _read_checkpoint(ckpt: Path) -> tuple[int, dict]:
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
        tensors = load_file(ckpt / "state.safetensors")
    except (OSError, ValueError, SafetensorError) as err:
        raise ValueError(f"cannot read checkpoint {ckpt}: {type(err).__name__}: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"checkpoint {ckpt} has format {found!r}; this kinema reads format {FORMAT}")
    step = meta.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or "state" not in meta:
        raise ValueError(f"checkpoint {ckpt} has a bad meta.json: step={step!r}, keys={sorted(meta)}")
    return step, unflatten_state(tensors, meta["state"])


def load_checkpoint(path_or_run_dir: str | os.PathLike) -> tuple[int, dict]:
    """Return (step, state) from a checkpoint dir, or from a run dir's newest readable checkpoint."""
    path = Path(path_or_run_dir)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint or run directory at {path}")
    if _STEP_DIR.match(path.name) or (path / "meta.json").exists():
        return _read_checkpoint(path)
    candidates = list_checkpoints(path)
    if not candidates:
        raise FileNotFoundError(f"no checkpoints in {path / 'checkpoints'}; expected step_XXXXXXXX/ directories")
    for ckpt in reversed(candidates):
        try:
            return _read_checkpoint(ckpt)
        except ValueError as err:
            warnings.warn(f"skipping unreadable checkpoint {ckpt}: {err}", stacklevel=2)
    raise ValueError(f"no readable checkpoint in {path / 'checkpoints'}; tried {[c.name for c in candidates]}")


# ---- RNG state ----


def rng_state() -> dict:
    """Return the python, numpy, torch CPU and CUDA random states as one dict."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore the random states captured by `rng_state`."""
    missing = {"python", "numpy", "torch"} - state.keys()
    if missing:
        raise ValueError(f"RNG state lacks {sorted(missing)}; got keys {sorted(state)}")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = list(state.get("cuda", []))
    if not cuda:
        return
    if not torch.cuda.is_available():
        warnings.warn(f"{len(cuda)} CUDA RNG states saved but CUDA is unavailable; they are not restored")
        return
    if len(cuda) != torch.cuda.device_count():
        warnings.warn(f"{len(cuda)} CUDA RNG states saved for {torch.cuda.device_count()} devices now visible")
    torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
