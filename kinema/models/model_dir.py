"""Model directories: `config.json` + `model.safetensors`, written atomically, never pickled.

Loading rebuilds a network from its config alone (see `pipeline.py`); nothing here runs code
from the files it reads.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Callable, Optional

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

VOCAB_FILE = "text_vocab.json"

# ---- atomic file helpers (shared with training checkpoints) ----


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Return CPU, contiguous tensors that own their storage (safetensors refuses shared memory)."""
    out, seen = {}, set()
    for key, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.nbytes:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


# ---- model directories ----


def _kinema_version() -> str:
    import kinema  # at call time: kinema/__init__ may import this module

    return str(getattr(kinema, "__version__", "0"))


def save_model_dir(out_dir: str | os.PathLike, model: nn.Module, config: dict, *,
                   extra: Optional[dict[str, nn.Module]] = None, vocab: Optional[list[str]] = None) -> Path:
    """Write config.json, model.safetensors, `<name>.safetensors` per extra module and text_vocab.json, atomically."""
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    if "kinema_version" in config:
        raise ValueError(f"config key 'kinema_version' is reserved, got {config['kinema_version']!r}")
    try:
        text = json.dumps({"kinema_version": _kinema_version(), **config}, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"config is not JSON-serialisable: {err}") from err
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, module in {"model": model, **(extra or {})}.items():
        weights = _unshared(module.state_dict())
        _atomic_write(out / f"{name}.safetensors",
                      lambda tmp, w=weights: save_file(w, str(tmp), metadata={"format": "pt"}))
    if vocab is not None:
        words = json.dumps(list(vocab), indent=0) + "\n"
        _atomic_write(out / VOCAB_FILE, lambda tmp: tmp.write_text(words))
    _atomic_write(out / "config.json", lambda tmp: tmp.write_text(text))
    _fsync_dir(out)
    return out


def _model_file(model_dir: str | os.PathLike, name: str) -> Path:
    root = Path(model_dir)
    if not root.is_dir():
        raise FileNotFoundError(
            f"model directory {root} not found; expected a directory with config.json and model.safetensors"
        )
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; a model directory holds config.json and model.safetensors")
    return path


def load_model_weights(model_dir: str | os.PathLike, name: str = "model") -> dict[str, Tensor]:
    """Return the state dict stored in model_dir/<name>.safetensors (CPU tensors)."""
    return load_file(_model_file(model_dir, f"{name}.safetensors"))


def read_vocab(model_dir: str | os.PathLike) -> list[str]:
    """The text encoder's vocabulary saved beside the weights."""
    path = _model_file(model_dir, VOCAB_FILE)
    words = json.loads(path.read_text())
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{path} must hold a JSON list of words")
    return words


def read_model_config(model_dir: str | os.PathLike) -> dict:
    """Return the config dict from model_dir/config.json, without the added 'kinema_version'."""
    path = _model_file(model_dir, "config.json")
    try:
        config = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    config.pop("kinema_version", None)
    return config
