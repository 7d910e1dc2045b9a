"""A decoded-clip cache: every clip decoded once into a uint8 memory-mapped shard.

A cache directory holds ``clips.u8`` — raw uint8 ``(N, T, S, S, 3)`` in C order — optionally
``audio.f32`` — raw float32 ``(N, A)`` — and ``latents.f32`` — raw float32 ``(N, Z, T', h, w)``,
each clip's latent under one autoencoder, for latent diffusion — and ``index.json`` with the
shapes, the clip settings, the autoencoder's name and weight hash, and each clip's caption, label
and source. No pickle anywhere. Later epochs read the shard through ``numpy.memmap`` and decode
(and encode) nothing. The cached clip of each item is its deterministic one (the "uniform" start,
centre crop); ``CachedClips`` can still flip clips at random, but not cached latents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import replace_dir, temp_dir_beside
from .transforms import random_flip
from .video_datasets import VideoClips, listing
from .video_io import DECODE_ERRORS, to_tensor

CACHE_VERSION = 1
CLIPS_FILE, AUDIO_FILE, LATENTS_FILE, INDEX_FILE = "clips.u8", "audio.f32", "latents.f32", "index.json"
CACHE_FILES = (CLIPS_FILE, AUDIO_FILE, LATENTS_FILE, INDEX_FILE)  # all a cache folder holds
LATENT_BATCH = 8  # clips per autoencoder call while caching latents

# ---- writing ----


def cache_kind(path: Path) -> str:
    """What a would-be cache target holds: "none" (absent or empty), "cache" (kinema's own files only) or "other"."""
    if not path.exists():
        return "none"
    if not path.is_dir():
        return "other"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "none"
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return "other"
    ours = isinstance(index, dict) and {"version", "count", "clip_shape", "items"} <= set(index)
    return "cache" if ours and CLIPS_FILE in names and names <= set(CACHE_FILES) else "other"


def check_cache_target(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, a target that is not empty, new, or (with `overwrite`) a kinema cache."""
    kind = cache_kind(out)
    if kind == "other" and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a cache is a folder: choose a new or empty one")
    if kind == "other":
        found = sorted(p.name for p in out.iterdir())
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise ValueError(f"--out {out} is not a kinema cache and not empty (it holds {shown}); kinema writes a cache "
                         "only into a new or empty folder or over its own cache: choose another --out")
    if kind == "cache" and not overwrite:
        raise ValueError(f"--out {out} already holds a kinema cache; pass --overwrite to replace it")


def build_cache(dataset: VideoClips, out: str | Path, *, overwrite: bool = False, progress: bool = True,
                encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, latent_tag: Optional[dict] = None
                ) -> dict:
    """Decode every item of `dataset` once into the cache directory `out`; returns the index.

    With `encode` (an autoencoder's clips (B, C, T, H, W) in [-1, 1] -> latents (B, Z, T', h, w)), every
    clip's latent is stored too, and `latent_tag` (the autoencoder's name and weight hash) in the index,
    so latent training reads latents instead of encoding each clip at every step.
    The cache is written to a hidden folder beside `out` and renamed into place, so a kill leaves
    the old cache (or nothing) intact. `out` must be new, empty, or (with `overwrite`) a kinema cache
    holding only kinema's own files: nothing else is ever deleted.
    """
    out = Path(out)
    check_cache_target(out, overwrite)
    tmp = temp_dir_beside(out)
    try:
        index = _write_cache(dataset, tmp, progress)
        if encode is not None:
            index = _write_latents(tmp, index, encode, latent_tag or {}, progress)
        check_cache_target(out, overwrite)  # again: the folder may have changed while we decoded
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the hidden folder made above, nothing else
        raise
    return index


def _write_cache(dataset: VideoClips, tmp: Path, progress: bool) -> dict:
    """Decode every item into the shard files of the empty folder `tmp`; returns the index."""
    cfg, n = dataset.clip, len(dataset)
    shape = (cfg.num_frames, cfg.size, cfg.size, 3)  # one clip: (T, S, S, 3)
    clips = np.memmap(tmp / CLIPS_FILE, dtype=np.uint8, mode="w+", shape=(n, *shape))
    sound = None
    rows, kept = [], 0
    for i in tqdm(range(n), desc="cache", unit="clip", disable=not progress):
        entry = dataset.entries[i // cfg.clips_per_video]
        if str(entry.path) in dataset.bad_files:
            continue
        try:
            frames, audio = dataset.clip_frames(i, deterministic=True)
        except DECODE_ERRORS as err:
            dataset.mark_bad(entry.path, f"cannot decode: {err}")
            continue
        if audio is not None and sound is None:
            sound = np.memmap(tmp / AUDIO_FILE, dtype=np.float32, mode="w+", shape=(n, len(audio)))
        clips[kept] = frames
        if sound is not None:
            sound[kept] = audio
        rows.append({"caption": entry.caption, "label": entry.label, "source": str(entry.path)})
        kept += 1
    if kept == 0:
        raise ValueError(f"cache: no clip of {dataset.name} could be decoded; skipped {len(dataset.bad_files)}: "
                         f"{listing(dataset.bad_files)}")
    del clips  # flush, then cut the unused tail (items are the leading axis, so a prefix is a valid shard)
    os.truncate(tmp / CLIPS_FILE, kept * int(np.prod(shape)))
    index = {"version": CACHE_VERSION, "count": kept, "clip_shape": list(shape),
             "clip": dataclasses.asdict(cfg), "bad_files": dict(dataset.bad_files), "items": rows}
    if sound is not None:
        samples = sound.shape[1]
        del sound
        os.truncate(tmp / AUDIO_FILE, kept * samples * 4)
        index.update(audio_samples=samples, audio_rate=dataset.audio_rate)
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _write_latents(tmp: Path, index: dict, encode: Callable[[torch.Tensor], torch.Tensor], tag: dict,
                   progress: bool) -> dict:
    """Encode every cached clip of the folder `tmp` into its latents file; returns the index with their record."""
    n = index["count"]
    clips = np.memmap(tmp / CLIPS_FILE, dtype=np.uint8, mode="r", shape=(n, *index["clip_shape"]))
    latents = None
    with torch.no_grad():
        for lo in tqdm(range(0, n, LATENT_BATCH), desc="encode", unit="batch", disable=not progress):
            batch = torch.stack([to_tensor(np.array(c)) for c in clips[lo:lo + LATENT_BATCH]])  # (B, 3, T, S, S)
            z = encode(batch).float().cpu().numpy()  # (B, Z, T', h, w)
            if latents is None:
                latents = np.memmap(tmp / LATENTS_FILE, dtype=np.float32, mode="w+", shape=(n, *z.shape[1:]))
            latents[lo:lo + len(z)] = z
    shape = list(latents.shape[1:])
    del latents, clips  # flush
    index = {**index, "latents": {**tag, "shape": shape}}
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


# ---- reading ----


class CachedClips(torch.utils.data.Dataset):
    """Clips from a cache directory written by `build_cache`; the sample dict of the source data set."""

    def __init__(self, root: str | Path, *, size: Optional[int] = None, num_frames: Optional[int] = None,
                 flip: bool = False, audio: bool = False, latents: bool = False):
        self.root, self.flip, self.audio, self.latents = Path(root), flip, audio, latents
        path = self.root / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no clip cache at {self.root} (missing {INDEX_FILE}); "
                                    f"write one with `kinema data cache DIR --out {self.root}`")
        self.index = json.loads(path.read_text())
        if self.index.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {self.index.get('version')!r}, expected {CACHE_VERSION}")
        t, s = self.index["clip_shape"][:2]
        if (size is not None and size != s) or (num_frames is not None and num_frames != t):
            raise ValueError(f"cache {self.root} holds {t} frames of {s}x{s}, but size={size}, "
                             f"num_frames={num_frames} were asked; rebuild the cache")
        if audio and "audio_samples" not in self.index:
            raise ValueError(f"cache {self.root} was written without audio; rebuild it with audio")
        if latents and "latents" not in self.index:
            raise ValueError(f"cache {self.root} holds no latents; write them with `kinema data cache DIR --out "
                             f"{self.root} --autoencoder AE --overwrite`")
        if latents and flip:
            raise ValueError(f"cache {self.root}: flip with cached latents — a flipped clip's latent is not the cached "
                             "one flipped; set data.flip false, or train without cached latents")
        self._clips = self._sound = self._latents = None  # memmaps, opened lazily in each worker process

    @property
    def latent_tag(self) -> Optional[dict]:
        """The autoencoder the cached latents came from ({"autoencoder": name, "sha256": ..., "shape": ...}), or None."""
        return self.index.get("latents")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_clips": None, "_sound": None, "_latents": None}  # workers map the files themselves

    def __len__(self) -> int:
        return self.index["count"]

    def _open(self) -> None:
        """Map the shard files read-only."""
        n = self.index["count"]
        self._clips = np.memmap(self.root / CLIPS_FILE, dtype=np.uint8, mode="r", shape=(n, *self.index["clip_shape"]))
        if self.audio:
            shape = (n, self.index["audio_samples"])
            self._sound = np.memmap(self.root / AUDIO_FILE, dtype=np.float32, mode="r", shape=shape)
        if self.latents:
            shape = (n, *self.index["latents"]["shape"])
            self._latents = np.memmap(self.root / LATENTS_FILE, dtype=np.float32, mode="r", shape=shape)

    def caption(self, index: int) -> str:
        """The caption of item `index`, from the index alone."""
        return self.index["items"][index]["caption"]

    def __getitem__(self, index: int) -> dict:
        """{"video": (3, T, S, S), "caption", "label"[, "audio": (A,)][, "latent": (Z, T', h, w)]} from the shard."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a cache of {len(self)} clips")
        if self._clips is None:
            self._open()
        frames = np.array(self._clips[index])  # (T, S, S, 3): a copy, so the map stays read-only
        if self.flip:
            frames = np.ascontiguousarray(random_flip(frames))
        row = self.index["items"][index]
        item = {"video": to_tensor(frames), "caption": row["caption"], "label": row["label"]}
        if self.audio:
            item["audio"] = torch.from_numpy(np.array(self._sound[index]))  # (A,)
        if self.latents:
            item["latent"] = torch.from_numpy(np.array(self._latents[index]))  # (Z, T', h, w)
        return item
