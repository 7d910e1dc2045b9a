"""Model directories: `config.json` + `model.safetensors`, written atomically, never pickled.

The one reader and writer of every kind: a video model (UNet + optional conditioner and vocabulary,
`load_video_model`), a flow network (`kind: flow`, `load_flow_net`), and the one safe way to read
any weights file (`read_weights`, `load_checked`). Loading rebuilds a network from its config alone;
nothing here runs code from the files it reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
import torch
from torch import Tensor, nn

from ..config import (AutoencoderConfig, CondConfig, Config, DiffusionConfig, FlowConfig, UNetConfig, from_dict, is_int,
                      to_dict)
from ..files import atomic_write, fsync_dir
from .encoders import Conditioner, Tokenizer
from .flow import FlowNet
from .lora import adapter_state
from .unet import SpaceTimeUNet

VOCAB_FILE = "text_vocab.json"
FORMAT = 1  # layout of a model directory, recorded in config.json as "format"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")  # torch.save / pickle files: loading them can run code

# ---- helpers ----


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
    for key in ("kinema_version", "format"):
        if key in config:
            raise ValueError(f"config key {key!r} is reserved, got {config[key]!r}")
    try:
        text = json.dumps({"kinema_version": _kinema_version(), "format": FORMAT, **config}, indent=2,
                          allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise ValueError(f"config is not JSON-serialisable: {err}") from err
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, module in {"model": model, **(extra or {})}.items():
        weights = _unshared(module.state_dict())
        atomic_write(out / f"{name}.safetensors",
                      lambda tmp, w=weights: save_file(w, str(tmp), metadata={"format": "pt"}))
    if vocab is not None:
        words = json.dumps(list(vocab), indent=0) + "\n"
        atomic_write(out / VOCAB_FILE, lambda tmp: tmp.write_text(words))
    atomic_write(out / "config.json", lambda tmp: tmp.write_text(text))
    fsync_dir(out)
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


def load_model_weights(model_dir: str | os.PathLike, name: str = "model", *,
                       trust_pickle: bool = False) -> dict[str, Tensor]:
    """Return the state dict in model_dir/<name>.safetensors (CPU tensors); a pickle only with `trust_pickle`."""
    root = Path(model_dir)
    safe = root / f"{name}.safetensors"
    pickles = [root / f"{name}{s}" for s in PICKLE_SUFFIXES if (root / f"{name}{s}").is_file()]
    if safe.is_file() or not pickles:
        return read_weights(_model_file(model_dir, safe.name))
    if not trust_pickle:
        raise ValueError(f"{pickles[0]} is a pickle, and loading a pickle can run any code in it; kinema reads "
                         f"weights from {safe.name} only. If you trust the file, pass --trust-pickle "
                         "(trust_pickle=True), which loads it with torch.load(weights_only=True)")
    return read_weights(pickles[0], trust_pickle=True)


def read_weights(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, Tensor]:
    """The state dict in a weights file: safetensors, or (only with `trust_pickle`) any other file as a torch.save
    pickle read with torch.load(weights_only=True): tensors only, {"state_dict": ...} and DataParallel's "module."
    prefix unwrapped. The one reader of weights every loader in kinema goes through."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path)
        except SafetensorError as err:
            raise ValueError(f"cannot read {path}: {err}") from err
    elif not trust_pickle:
        raise ValueError(f"{path} is a pickle, and loading a pickle can run any code in it; convert it to "
                         ".safetensors, or pass --trust-pickle to read it as a plain state dict "
                         "(torch.load(weights_only=True))")
    else:
        state = _load_trusted_pickle(path)
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_checked(module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike, what: str,
                 optional: Callable[[str], bool] = lambda key: False) -> nn.Module:
    """Load `state` into `module`, refusing (ValueError naming `path`) keys that do not fit (but `optional`
    missing ones), integers where floats belong and NaN / inf; returns it in eval mode, frozen."""
    expected = module.state_dict()
    cast = [k for k, t in state.items() if k in expected and expected[k].is_floating_point()
            and not t.is_floating_point()]
    if cast:
        raise ValueError(f"{path}: the {what} weights hold {state[cast[0]].dtype} tensors where floats belong "
                         f"({len(cast)}, e.g. {cast[0]!r}); kinema loads float weights only (quantised weights "
                         "are not supported)")
    broken = [k for k, t in state.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if broken:
        raise ValueError(f"{path}: the {what} weights hold NaN or infinite values in {len(broken)} tensors "
                         f"(e.g. {broken[0]!r}); they would make black clips. Were they saved from a diverged run?")
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # size mismatches: one line, cut short
        text = " ".join(str(err).split())
        raise ValueError(f"{path}: the {what} weights do not fit its config: "
                         f"{text[:300]}{'...' if len(text) > 300 else ''}") from err
    missing = [k for k in missing if not optional(k)]
    if missing or unexpected:
        raise ValueError(f"{path} does not match the {what} architecture: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    return module.eval().requires_grad_(False)


def _load_trusted_pickle(path: Path) -> dict[str, Tensor]:
    """A state dict from a torch.save file through torch.load(weights_only=True): tensors and containers only."""
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        found = re.search(r"Unsupported[^.\n]*", str(err))  # e.g. "Unsupported global: GLOBAL exec was not ..."
        why = found.group(0) if found else (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"refusing {path}: torch.load(weights_only=True) rejected it: {why}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the common {"state_dict": ...} wrapper
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors (got {type(state).__name__})")
    return state


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
    version = config.pop("kinema_version", None)
    # directories written before "format" was recorded are format 1; no kinema_version at all: not ours
    found = config.pop("format", 1 if version is not None else None)
    if found is None:
        raise ValueError(f"{path} has no 'kinema_version' or 'format'; is {path.parent} a kinema model directory?")
    if found != FORMAT:
        raise ValueError(f"{path.parent} was written by kinema {version} in model format {found!r}; this kinema "
                         f"{_kinema_version()} reads format {FORMAT}; load it with kinema {version} or re-export it")
    return config


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A model directory path as given, or the bundled model of that name (kinema/pretrained/<name>)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    root = Path(__file__).resolve().parent.parent / "pretrained"
    bundled = root / str(name_or_path)
    if bundled.is_dir() and not path.is_absolute():
        return bundled
    # list the bundled models themselves, not the parent of the path given (an absolute path or a/b/c)
    available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    raise FileNotFoundError(f"model directory {name_or_path} not found, and no bundled model has that name "
                            f"(bundled: {', '.join(available) or 'none'})")


# ---- the kinds of model directory ----


def video_model_config(config: Config, fps: Optional[float] = None) -> dict:
    """What a video model directory records: enough to rebuild the network (and its encoders) and sample from it."""
    dc = config.data
    out = {"model": to_dict(config.model), "diffusion": to_dict(config.diffusion),
           "data": {"kind": dc.kind, "size": dc.size, "num_frames": dc.num_frames}}
    if config.cond.enabled:
        out["cond"] = to_dict(config.cond)
        out["data"].update(audio_rate=dc.audio_rate, fps=fps)
    return out


@dataclass
class VideoModel:
    """A video model directory, rebuilt: the UNet, its conditioner, and what sampling needs to know."""

    path: Path  # the directory read
    model: SpaceTimeUNet  # in eval mode, frozen
    conditioner: Optional[Conditioner]  # the condition encoders, or None for an unconditioned model
    diffusion: DiffusionConfig  # schedule and prediction the network was trained with
    size: int  # frame height and width
    num_frames: int  # the training window
    fps: float  # frame rate the audio is aligned to (8 when the model records none)
    audio_rate: int  # audio samples per second
    autoencoder: Optional[nn.Module] = None  # a latent model's VideoAutoencoder (its own copy, in the directory)


def load_video_model(name_or_path: str | os.PathLike, *, trust_pickle: bool = False) -> VideoModel:
    """A video model from a model directory, a training run's directory (its `model/`) or a bundled name."""
    path = resolve_model_dir(name_or_path)
    if not (path / "model.safetensors").is_file() and (path / "model" / "config.json").is_file():
        path = path / "model"
    for adapter in (path / ADAPTER_FILE, path / "adapter" / ADAPTER_FILE):
        if adapter.is_file() and not (path / "model.safetensors").is_file():
            base = json.loads(adapter.read_text()).get("base")
            raise ValueError(f"{path} holds a LoRA adapter, not a model: load its base model ({base}) and add "
                             f"--adapter {adapter.parent} (VideoPipeline.load_adapter)")
    config, where = read_model_config(path), path / "config.json"
    for key in ("model", "diffusion", "data"):
        if key not in config:
            raise ValueError(f"{where} has no {key!r} section; is it a kinema model directory?")
    try:
        model_config = from_dict(UNetConfig, config["model"], prefix="model.")
        diffusion = from_dict(DiffusionConfig, config["diffusion"], prefix="diffusion.")
        cond = from_dict(CondConfig, config["cond"], prefix="cond.") if "cond" in config else None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    autoencoder = None
    if "autoencoder" in config:  # a latent model: its autoencoder's weights are in the directory beside the UNet's
        from .autoencoder import VideoAutoencoder, diffusers_from_record, latent_frame_count

        record = config["autoencoder"]
        autoencoder = (diffusers_from_record(record["diffusers"]) if "diffusers" in record
                       else VideoAutoencoder(from_dict(AutoencoderConfig, record, "autoencoder.")))
        autoencoder = load_checked(autoencoder, load_model_weights(path, "autoencoder", trust_pickle=trust_pickle),
                                   path, "autoencoder").eval()
    data = config["data"]
    f = model_config.downsample_factor * (autoencoder.config.spatial_factor if autoencoder is not None else 1)
    size, num_frames, audio_rate = data.get("size"), data.get("num_frames"), data.get("audio_rate", 16000)
    fps = 8.0 if data.get("fps") is None else data["fps"]  # unconditioned models record none
    if not is_int(size) or size < 1 or size % f:
        raise ValueError(f"{where}: data.size = {size!r} is not a positive multiple of {f}, the UNet's "
                         "downsampling factor (times the autoencoder's)")
    if not is_int(num_frames) or num_frames < 2:
        raise ValueError(f"{where}: data.num_frames = {num_frames!r} must be an integer >= 2 (the frames the model "
                         "was trained on)")
    if autoencoder is not None:
        latent_frame_count(autoencoder.config, num_frames, f"{where}: data.num_frames")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{where}: data.fps = {fps!r} must be a positive number of frames per second")
    if not is_int(audio_rate) or audio_rate < 1:
        raise ValueError(f"{where}: data.audio_rate = {audio_rate!r} must be a positive integer")
    model = load_checked(SpaceTimeUNet(model_config), load_model_weights(path, trust_pickle=trust_pickle), path,
                         "model")
    conditioner = None
    if cond is not None:
        tokenizer = Tokenizer(read_vocab(path)) if cond.text == "gru" else None
        grid = size // (autoencoder.config.spatial_factor if autoencoder is not None else 1)
        conditioner = Conditioner(cond, model_config.cond_dim, tokenizer=tokenizer, frame_size=grid,
                                  in_channels=model_config.in_channels if autoencoder is None
                                  else autoencoder.config.in_channels,
                                  temporal_factor=1 if autoencoder is None else autoencoder.config.temporal_factor)
        load_checked(conditioner, load_model_weights(path, "conditioner", trust_pickle=trust_pickle), path,
                     "conditioner")
    return VideoModel(path, model, conditioner, diffusion, size, num_frames, float(fps), audio_rate, autoencoder)


def save_flow_net(out_dir: str | os.PathLike, net: FlowNet, extra: Optional[dict] = None) -> Path:
    """Write a flow model directory: config.json ({"kind": "flow", "flow": ...}) + model.safetensors."""
    return save_model_dir(out_dir, net, {"kind": "flow", "flow": asdict(net.config), **(extra or {})})


def load_flow_net(name_or_path: str | os.PathLike) -> FlowNet:
    """A FlowNet from a model directory or a bundled name (e.g. "flow-moving-digits"), in eval mode."""
    root = resolve_model_dir(name_or_path)
    config = read_model_config(root)
    if config.get("kind") != "flow":
        raise ValueError(f"{root} is not a flow model directory (config.json kind={config.get('kind')!r}, "
                         f"expected 'flow')")
    return load_checked(FlowNet(from_dict(FlowConfig, config["flow"], "flow.")), load_model_weights(root), root, "flow")


def latent_autoencoder(model_config: UNetConfig, size: int, num_frames: int):
    """The autoencoder `model.autoencoder` names, checked against the UNet, the frame size and the clip length;
    frozen, eval mode."""
    from .autoencoder import latent_frame_count

    ae = load_autoencoder(model_config.autoencoder).requires_grad_(False)
    ac, where = ae.config, f"model.autoencoder {model_config.autoencoder}"
    if ac.temporal_factor != 1 and not isinstance(ac, AutoencoderConfig):
        raise ValueError(f"{where} is a diffusers {ae.kind} that compresses time ({ac.temporal_factor}x); latent "
                         "diffusion maps given frames to latent frames through kinema's own causal autoencoders only, "
                         "whose first frames encode alike alone and in the whole clip (CogVideoX's do not); take a "
                         "per-frame AutoencoderKL, or train one: kinema train-ae --set autoencoder.temporal_factor=2")
    latent_frame_count(ac, num_frames, "data.num_frames")
    if model_config.in_channels != ac.latent_channels:
        raise ValueError(f"{where} has {ac.latent_channels} latent channels: set model.in_channels to "
                         f"{ac.latent_channels}, got {model_config.in_channels}")
    f = ac.spatial_factor * model_config.downsample_factor
    if size % f:
        raise ValueError(f"data.size {size} is not divisible by {f}: the autoencoder's spatial factor "
                         f"{ac.spatial_factor} x the UNet's downsampling factor {model_config.downsample_factor}")
    return ae


def read_weights_sha(path: str | Path, what: str, trust_pickle: bool = False) -> tuple[dict, str]:
    """The state dict in a user-given weights file (read by `read_weights`) and the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found: {path}")
    return read_weights(path, trust_pickle=trust_pickle), hashlib.sha256(path.read_bytes()).hexdigest()


def load_autoencoder(name_or_path: str | os.PathLike):
    """A VideoAutoencoder (with its latent shift and scale) from a model directory, a `kinema train-ae` run directory
    (its `model/`) or a bundled name, in eval mode; "diffusers:PATH" wraps a diffusers autoencoder saved there."""
    from .autoencoder import VideoAutoencoder, load_diffusers_autoencoder

    if str(name_or_path).startswith("diffusers:"):
        return load_diffusers_autoencoder(str(name_or_path)[len("diffusers:"):])

    root = resolve_model_dir(name_or_path)
    if not (root / "model.safetensors").is_file() and (root / "model" / "config.json").is_file():
        root = root / "model"
    config = read_model_config(root)
    if config.get("kind") != "autoencoder":
        raise ValueError(f"{root} is not an autoencoder model directory (config.json kind={config.get('kind')!r}, "
                         f"expected 'autoencoder')")
    model = VideoAutoencoder(from_dict(AutoencoderConfig, config["autoencoder"], "autoencoder."))
    return load_checked(model, load_model_weights(root), root, "autoencoder").eval()


# ---- adapter directories (LoRA) ----

ADAPTER_FILE = "adapter.json"


def weights_sha256(*modules: Optional[nn.Module]) -> str:
    """A sha256 of the weights of `modules` (keys, dtypes, shapes, bytes), adapters left out: which base a model is."""
    digest = hashlib.sha256()
    for i, module in enumerate(modules):
        if module is None:
            continue
        for key, t in sorted(module.state_dict().items()):
            if ".lora." in key:
                continue
            t = t.detach().to("cpu").contiguous()
            digest.update(f"{i}:{key}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class Adapter:
    """An adapter directory, read: its config and its weights."""

    path: Path
    base: str  # the model it was trained on, as the run named it
    base_sha256: str  # weights_sha256 of that base (UNet, conditioner)
    rank: int
    alpha: float
    targets: tuple[str, ...]
    new_words: list[str]  # caption words the adapter adds to the base's vocabulary
    lora: dict[str, Tensor]  # "<layer>.down.weight" / "<layer>.up.weight"
    embeddings: Optional[Tensor]  # (len(new_words), D) rows of the new words


def save_adapter_dir(out_dir: str | os.PathLike, model: nn.Module, name: str, *, base: str, base_sha256: str,
                     rank: int, alpha: float, targets: tuple[str, ...], new_words: list[str],
                     embeddings: Optional[Tensor] = None) -> Path:
    """Write adapter.json + adapter.safetensors: adapter `name`'s weights of `model` and the new words' rows."""
    weights = {k.replace(f".lora.{name}.", "."): v for k, v in adapter_state(model, name).items()}
    if not weights:
        raise ValueError(f"the model has no adapter named {name!r}")
    if new_words:
        if embeddings is None or embeddings.shape[0] != len(new_words):
            raise ValueError(f"{len(new_words)} new words need as many embedding rows")
        weights["text.new_embeddings"] = embeddings
    config = {"kinema_version": _kinema_version(), "format": FORMAT, "kind": "lora-adapter", "base": base,
              "base_sha256": base_sha256, "rank": rank, "alpha": alpha, "targets": list(targets),
              "new_words": list(new_words)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = _unshared(weights)
    atomic_write(out / "adapter.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write(out / ADAPTER_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    fsync_dir(out)
    return out


def load_adapter_dir(path: str | os.PathLike) -> Adapter:
    """Read an adapter directory written by `kinema finetune --lora-rank R` (or save_adapter_dir)."""
    root = Path(path)
    where = root / ADAPTER_FILE
    if not where.is_file():
        hint = " (a LoRA run keeps it in <run>/adapter)" if (root / "adapter" / ADAPTER_FILE).is_file() else ""
        raise FileNotFoundError(f"{root} is not an adapter directory: no {ADAPTER_FILE}{hint}")
    try:
        config = json.loads(where.read_text())
    except ValueError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("kind") != "lora-adapter":
        raise ValueError(f"{where} does not describe a LoRA adapter (kind {config.get('kind')!r})")
    if config.get("format") != FORMAT:
        raise ValueError(f"{root} was written in adapter format {config.get('format')!r}; this kinema reads {FORMAT}")
    weights = read_weights(root / "adapter.safetensors")
    embeddings = weights.pop("text.new_embeddings", None)
    try:
        return Adapter(root, str(config["base"]), str(config["base_sha256"]), int(config["rank"]),
                       float(config["alpha"]), tuple(config["targets"]), list(config["new_words"]), weights,
                       embeddings)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where} lacks or garbles a field: {err!r}") from err
