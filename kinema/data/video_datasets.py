"""Data sets of real video files: VideoFolder, UCF101, Kinetics400 and what they share.

Every item is ``{"video": float32 (3, T, size, size) in [-1, 1], "caption": str ("" when none),
"label": int (-1 when none)}``, plus ``"audio": float32 (A,)`` — mono at ``audio_rate``,
covering exactly the clip's frames, zeros without a sound track — when ``audio=True``.

Files are probed (headers only) when the data set is built: one that cannot be opened or is
too short for a clip is skipped with a warning naming it, and listed in ``bad_files``. A file
that fails later, while its frames are decoded, is recorded the same way and the item falls
back to the next video, so training never stops on a bad file. A data set without a single
readable video is a ValueError. FIFOs, sockets and devices are never opened (a FIFO would block).

Text files (caption indexes, split lists) must be UTF-8: anything else is a ValueError naming
the file and line. A broken line of a caption index is skipped with a warning naming file:line;
a broken line of a split list or annotations table is a ValueError naming file:line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
import torch
from einops import rearrange

from .transforms import ClipConfig, clip_indices, clip_start, clip_span, crop_square, frame_seconds, random_flip
from .video_io import (
    AV_SUFFIXES,
    DECODE_ERRORS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoInfo,
    make_grid,
    probe_video,
    read_audio,
    read_clip,
    to_tensor,
)

CAPTION_INDEXES = ("captions.jsonl", "captions.csv")  # path -> caption files read at a VideoFolder's root
MAX_LISTED = 5  # bad files or broken lines named in one message; the rest are counted
MAX_WARNED = 20  # bad files warned about one by one; the rest are only in bad_files and the counts

# ---- helpers ----


@dataclass
class VideoEntry:
    """One video of a data set: where it is and what it says."""

    path: Path  # a video file or a folder of frames
    caption: str = ""  # "" when none
    label: int = -1  # class index, -1 when none


def listing(problems: dict[str, str], limit: int = MAX_LISTED) -> str:
    """A {path: reason} dict as "a (why), b (why) ... and N more": a message of bounded length."""
    shown = [f"{path} ({why})" for path, why in list(problems.items())[:limit]]
    more = len(problems) - len(shown)
    return ", ".join(shown) + (f" ... and {more} more" if more > 0 else "")


def special_file(path: Path) -> Optional[str]:
    """What `path` is ("a FIFO", ...) when it is neither a regular file nor a folder, else None; never opens it."""
    try:
        mode = path.stat().st_mode  # follows symlinks: a link to a regular file is a regular file
    except OSError:
        return "a broken symbolic link" if path.is_symlink() else None  # missing: the caller's own message
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device",
             stat.S_ISBLK: "a block device"}
    return next((kind for is_kind, kind in kinds.items() if is_kind(mode)), "not a regular file")


def find_videos(root: Path) -> list[Path]:
    """Video files (VIDEO_SUFFIXES) and folders of frames under `root`, recursively, sorted.

    Anything that is not a regular file (a FIFO would block the first read) is skipped with a warning.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        if here != root and any(Path(f).suffix.lower() in IMAGE_SUFFIXES and (here / f).is_file() for f in files):
            found.append(here)  # a folder of frames
        for f in files:
            if Path(f).suffix.lower() not in VIDEO_SUFFIXES or f.startswith("."):
                continue
            kind = special_file(here / f)
            if kind is None:
                found.append(here / f)
            else:
                warnings.warn(f"skipping {here / f}: {kind}, not a regular file", stacklevel=2)
    return sorted(found)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a BOM is allowed); a ValueError naming file:line when it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); "
                         f"save it as UTF-8") from None


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file, split at "\n" only (a caption may hold U+2028)."""
    return list(enumerate(read_text(path).split("\n"), start=1))


def _short(text: str, limit: int = 80) -> str:
    """`text` quoted, cut to `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _warn_skipped_lines(path: Path, problems: dict[str, str]) -> None:
    """Warn about the skipped lines of `path` ({"file:line": why}): the first MAX_LISTED by name, then a count."""
    for where, why in list(problems.items())[:MAX_LISTED]:
        warnings.warn(f"{where}: skipping this line: {why}", stacklevel=3)
    if len(problems) > MAX_LISTED:
        warnings.warn(f"{path}: skipped {len(problems)} lines in all ({len(problems) - MAX_LISTED} more than "
                      f"named above)", stacklevel=3)


def _jsonl_captions(path: Path) -> dict[str, str]:
    """{path: caption} from a captions.jsonl; broken lines are skipped with a warning naming file:line."""
    captions: dict[str, str] = {}
    problems: dict[str, str] = {}
    for n, line in _numbered_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems[f"{path}:{n}"] = f"not JSON ({err.msg} at column {err.colno}): {_short(line)}"
            continue
        if not (isinstance(row, dict) and isinstance(row.get("path"), str) and isinstance(row.get("caption"), str)):
            problems[f"{path}:{n}"] = f"want an object with string 'path' and 'caption', got {_short(line)}"
            continue
        captions[str(PurePosixPath(row["path"]))] = row["caption"]
    _warn_skipped_lines(path, problems)
    return captions


def _csv_rows(path: Path, need: set[str]) -> list[tuple[int, dict]]:
    """(line, row) of a UTF-8 CSV whose header names every column in `need`; a ValueError naming file:line."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: columns {sorted(need)} are required, got {reader.fieldnames}")
        return [(reader.line_num, row) for row in reader]  # line_num: the last line of the row
    except csv.Error as err:  # line_num counts the lines parsed before the one that failed
        raise ValueError(f"{path}:{reader.line_num + 1}: {err}") from None


def _csv_captions(path: Path) -> dict[str, str]:
    """{path: caption} from a captions.csv; short or long rows are skipped with a warning naming file:line."""
    captions: dict[str, str] = {}
    problems: dict[str, str] = {}
    for n, row in _csv_rows(path, {"path", "caption"}):
        if row["path"] is None or row["caption"] is None:
            problems[f"{path}:{n}"] = "fewer fields than the header"
        elif None in row:  # DictReader's key for the extra fields
            problems[f"{path}:{n}"] = "more fields than the header (quote a caption that holds a comma)"
        else:
            captions[str(PurePosixPath(row["path"]))] = row["caption"]
    _warn_skipped_lines(path, problems)
    return captions


def read_caption_index(root: Path) -> dict[str, str]:
    """{relative posix path: caption} from captions.jsonl ({"path", "caption"} per line) and captions.csv."""
    jsonl, table = root / CAPTION_INDEXES[0], root / CAPTION_INDEXES[1]
    captions = _jsonl_captions(jsonl) if jsonl.is_file() else {}
    if table.is_file():
        captions.update(_csv_captions(table))
    return captions


def sidecar_caption(path: Path) -> Optional[str]:
    """The text of `name.txt` beside `name.mp4` (or beside a frame folder `name/`), if there is one."""
    side = path.parent / (path.name + ".txt") if path.is_dir() else path.with_suffix(".txt")
    return read_text(side).strip() if side.is_file() else None


def class_caption(name: str) -> str:
    """A CamelCase class name in words: "ApplyEyeMakeup" -> "apply eye makeup", "YoYo" -> "yo yo"."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b|\d)|[A-Z]?[a-z]+|\d+", name.replace("_", " "))
    return " ".join(w.lower() for w in words)


def _as_int(text: Optional[str], parse=int) -> Optional[int]:
    """`parse(text)` as an int, or None when `text` is not a number (or is missing)."""
    try:
        return int(parse(text))
    except (TypeError, ValueError, OverflowError):
        return None


def _resolve(root: Path, name: str | Path, what: str) -> Path:
    """`name` as given, else under `root`; a clear error when neither is a file."""
    candidates = (Path(name), root / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for candidate in candidates:
        if candidate.exists():
            raise ValueError(f"{what} {candidate} is {special_file(candidate) or 'a directory'}, not a file")
    raise FileNotFoundError(f"{what} {name} not found (looked as given and under {root})")


# ---- the shared base ----


class VideoClips(torch.utils.data.Dataset):
    """Clips cut from a list of videos by a ClipConfig; unreadable videos are skipped and recorded."""

    def __init__(self, entries: list[VideoEntry], clip: Optional[ClipConfig] = None, *, audio: bool = False,
                 audio_rate: int = 16000, name: str = "videos"):
        if audio_rate <= 0:
            raise ValueError(f"audio_rate must be > 0, got {audio_rate}")
        self.clip = clip if clip is not None else ClipConfig()
        self.audio, self.audio_rate, self.name = audio, audio_rate, name
        self.bad_files: dict[str, str] = {}  # path -> why it was skipped
        self.entries: list[VideoEntry] = []
        self.infos: list[VideoInfo] = []
        for entry in entries:
            kind = special_file(entry.path)
            if kind is not None:
                self.mark_bad(entry.path, f"{kind}, not a regular file (not opened)")
                continue
            try:
                info = probe_video(entry.path)
            except DECODE_ERRORS as err:
                self.mark_bad(entry.path, str(err))
                continue
            if info.num_frames < clip_span(self.clip, info.fps):
                self.mark_bad(entry.path, f"too few frames: {info.num_frames} < {clip_span(self.clip, info.fps)} "
                                       f"needed for one clip")
                continue
            self.entries.append(entry)
            self.infos.append(info)
        if not self.entries:
            skipped = f"; skipped {len(self.bad_files)}: {listing(self.bad_files)}" if self.bad_files else ""
            raise ValueError(f"{name}: no readable video among {len(entries)} candidates{skipped}")
        if self.bad_files:
            warnings.warn(f"{name}: skipped {len(self.bad_files)} of {len(entries)} videos (see .bad_files)",
                          stacklevel=2)

    def mark_bad(self, path: Path, reason: str) -> None:
        """Record a bad video and warn once naming it (the first MAX_WARNED bad videos; then only record)."""
        if str(path) in self.bad_files:
            return
        self.bad_files[str(path)] = reason
        if len(self.bad_files) <= MAX_WARNED:
            warnings.warn(f"{self.name}: skipping {path}: {reason}", stacklevel=3)
        elif len(self.bad_files) == MAX_WARNED + 1:
            warnings.warn(f"{self.name}: more than {MAX_WARNED} bad videos; the rest are skipped without a "
                          f"warning each (all are listed in bad_files)", stacklevel=3)

    def __len__(self) -> int:
        return len(self.entries) * self.clip.clips_per_video

    def caption(self, index: int) -> str:
        """The caption of item `index`, without decoding it."""
        return self.entries[index // self.clip.clips_per_video].caption

    def clip_frames(self, index: int, *, deterministic: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Item `index` as uint8 (T, size, size, 3) frames and float32 (A,) audio (None unless audio); may raise.

        `deterministic` takes the "uniform" start and the centre crop without flipping (the cache's clip).
        """
        cfg = self.clip
        video, k = divmod(index, cfg.clips_per_video)
        entry, info = self.entries[video], self.infos[video]
        start = clip_start(cfg, info.num_frames, info.fps, k, deterministic=deterministic)
        frames = read_clip(entry.path, clip_indices(cfg, start, info.fps), shorter_side=cfg.size)  # (T, h, w, 3)
        frames = crop_square(frames, cfg.size, "center" if deterministic else cfg.crop)  # (T, S, S, 3)
        if cfg.flip and not deterministic:
            frames = random_flip(frames)
        sound = None
        if self.audio:
            seconds = frame_seconds(cfg, info.fps)
            sound = read_audio(entry.path, start / info.fps, cfg.num_frames * seconds, self.audio_rate)
        return frames, sound

    def sample(self, index: int, frames: np.ndarray, sound: Optional[np.ndarray]) -> dict:
        """The sample dict of item `index` from its uint8 frames and audio."""
        entry = self.entries[index // self.clip.clips_per_video]
        item = {"video": to_tensor(frames), "caption": entry.caption, "label": entry.label}  # video (3, T, S, S)
        if sound is not None:
            item["audio"] = torch.from_numpy(sound)  # (A,)
        return item

    def __getitem__(self, index: int) -> dict:
        """{"video": (3, T, S, S), "caption", "label"[, "audio": (A,)]}; a broken video falls back to the next."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} of length {len(self)}")
        per = self.clip.clips_per_video
        for attempt in range(len(self.entries)):
            i = (index + attempt * per) % len(self)  # same clip slot of the next video: deterministic
            path = self.entries[i // per].path
            if str(path) in self.bad_files:
                continue
            try:
                return self.sample(i, *self.clip_frames(i))
            except DECODE_ERRORS as err:
                self.mark_bad(path, f"cannot decode: {err}")
        raise ValueError(f"{self.name}: every video failed to decode; skipped {len(self.bad_files)}: "
                         f"{listing(self.bad_files)}")


# ---- the data sets ----


class VideoFolder(VideoClips):
    """Every video under `root`, recursively: mp4, avi, mov, mkv, webm, gif files and folders of frames.

    Captions come from a sidecar `name.txt` beside `name.mp4` (or beside the frame folder
    `name/`), else from `captions.jsonl` (`{"path": "a/b.mp4", "caption": "..."}` per line) or
    `captions.csv` (columns path, caption) at the root, paths relative to it; else "".
    Labels are -1.
    """

    def __init__(self, root: str | Path, clip: Optional[ClipConfig] = None, *, audio: bool = False,
                 audio_rate: int = 16000):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"VideoFolder: no such directory: {self.root}")
        index = read_caption_index(self.root)
        entries = []
        for path in find_videos(self.root):
            caption = sidecar_caption(path)
            if caption is None:
                caption = index.get(path.relative_to(self.root).as_posix(), "")
            entries.append(VideoEntry(path, caption))
        if not entries:
            raise ValueError(f"VideoFolder: no video files ({VIDEO_SUFFIXES}) or frame folders under {self.root}")
        super().__init__(entries, clip, audio=audio, audio_rate=audio_rate,
                         name=f"VideoFolder({self.root})")


class UCF101(VideoClips):
    """UCF-101 from its official layout: `root/Class/v_Class_gXX_cYY.avi` and a split list.

    `split_file` is `trainlist0k.txt` ("Class/v_....avi label" lines, labels 1-based) or
    `testlist0k.txt` ("Class/v_....avi"), with `classInd.txt` ("1 ApplyEyeMakeup") beside it;
    relative names are also looked up under `root`. The label is the 0-based class index and the
    caption the class name in words ("apply eye makeup"). Listed clips missing on disk are
    counted in `missing` and reported in one warning.
    """

    def __init__(self, root: str | Path, split_file: str | Path, clip: Optional[ClipConfig] = None, *,
                 audio: bool = False, audio_rate: int = 16000):
        self.root = Path(root)
        split_path = _resolve(self.root, split_file, "UCF101 split file")
        class_file = split_path.parent / "classInd.txt"
        if not class_file.is_file():
            raise FileNotFoundError(f"UCF101: classInd.txt not found beside {split_path}")
        self.classes: list[str] = []
        for n, line in _numbered_lines(class_file):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or _as_int(parts[0]) != len(self.classes) + 1:
                raise ValueError(f"{class_file}:{n}: expected '{len(self.classes) + 1} ClassName', got {line!r}")
            self.classes.append(parts[1])
        label_of = {name: i for i, name in enumerate(self.classes)}
        entries, self.missing = [], []
        for n, line in _numbered_lines(split_path):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            name = rel.split("/")[0]
            if name not in label_of:
                raise ValueError(f"{split_path}:{n}: class {name!r} of {rel!r} is not in {class_file}")
            label = label_of[name]
            if len(parts) > 1 and _as_int(parts[1]) != label + 1:
                raise ValueError(f"{split_path}:{n}: {rel!r} has label {parts[1]}, but {class_file} numbers "
                                 f"{name!r} as {label + 1}")
            path = self.root / rel
            if not path.is_file():
                self.missing.append(rel)
                continue
            entries.append(VideoEntry(path, class_caption(name), label))
        if self.missing:
            warnings.warn(f"UCF101: {len(self.missing)} of {len(self.missing) + len(entries)} clips listed in "
                          f"{split_path.name} are missing under {self.root} (first: {self.missing[0]})", stacklevel=2)
        super().__init__(entries, clip, audio=audio, audio_rate=audio_rate,
                         name=f"UCF101({split_path})")


class Kinetics400(VideoClips):
    """Kinetics-400 clips already downloaded under `root`, listed by the official annotations CSV.

    The CSV has columns label, youtube_id, time_start, time_end, split; a clip is the file
    `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4` (any AV suffix) anywhere under `root`,
    e.g. inside its label folder. `split` keeps only rows with that split value ("train", "val",
    "test"). Labels index the sorted label names of the whole CSV; the caption is the label text.
    Rows without a file are counted in `missing` and reported in one warning, not fatal.
    """

    def __init__(self, root: str | Path, annotations: str | Path, clip: Optional[ClipConfig] = None, *,
                 split: Optional[str] = None, audio: bool = False, audio_rate: int = 16000):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Kinetics400: no such directory: {self.root}")
        table = _resolve(self.root, annotations, "Kinetics400 annotations")
        rows = _csv_rows(table, {"youtube_id", "time_start", "time_end"})  # (line, row)
        self.classes = sorted({r["label"] for _, r in rows if r.get("label")})
        label_of = {name: i for i, name in enumerate(self.classes)}
        files = {p.stem: p for p in self.root.rglob("*") if p.suffix.lower() in AV_SUFFIXES}
        entries, self.missing = [], []
        for n, row in rows:
            if split is not None and row.get("split") != split:
                continue
            start, end = _as_int(row["time_start"], float), _as_int(row["time_end"], float)
            if not row["youtube_id"] or start is None or end is None:
                raise ValueError(f"{table}:{n}: want a youtube_id and time_start, time_end in seconds, got "
                                 f"{row['youtube_id']!r}, {row['time_start']!r}, {row['time_end']!r}")
            stem = f"{row['youtube_id']}_{start:06d}_{end:06d}"
            if stem not in files:
                self.missing.append(stem)
                continue
            name = row.get("label") or ""
            entries.append(VideoEntry(files[stem], name.replace("_", " "), label_of.get(name, -1)))
        if self.missing:
            warnings.warn(f"Kinetics400: {len(self.missing)} of {len(self.missing) + len(entries)} clips in "
                          f"{table.name} are missing under {self.root} (first: {self.missing[0]})", stacklevel=2)
        super().__init__(entries, clip, audio=audio, audio_rate=audio_rate,
                         name=f"Kinetics400({table})")


# ---- inspection ----


def summarize(dataset: VideoClips, *, decode: bool = True) -> dict:
    """Counts, total duration, resolutions, fps, captions found and bad files of a data set (JSON-able).

    With `decode`, one clip of every video is decoded too, so files broken past their headers
    show up in `bad_files`.
    """
    if decode:
        for i in range(0, len(dataset), dataset.clip.clips_per_video):
            path = dataset.entries[i // dataset.clip.clips_per_video].path
            try:
                dataset.clip_frames(i, deterministic=True)
            except DECODE_ERRORS as err:
                dataset.mark_bad(path, f"cannot decode: {err}")
    good = [(e, info) for e, info in zip(dataset.entries, dataset.infos) if str(e.path) not in dataset.bad_files]
    durations = [info.duration for _, info in good]
    return {
        "videos": len(good),
        "bad": len(dataset.bad_files),
        "missing": len(getattr(dataset, "missing", [])),
        "clips": len(good) * dataset.clip.clips_per_video,
        "seconds_total": round(sum(durations), 3),
        "seconds_min": round(min(durations), 3) if durations else 0.0,
        "seconds_max": round(max(durations), 3) if durations else 0.0,
        "resolutions": {f"{w}x{h}": n for (w, h), n in Counter((i.width, i.height) for _, i in good).most_common()},
        "fps": {f"{fps:g}": n for fps, n in Counter(round(i.fps, 3) for _, i in good).most_common()},
        "with_audio": sum(i.has_audio for _, i in good),
        "captions": sum(bool(e.caption) for e, _ in good),
        "labels": len({e.label for e, _ in good if e.label >= 0}),
        "bad_files": dict(dataset.bad_files),
    }


def preview_grid(dataset: VideoClips, num_videos: int = 8, num_frames: int = 8) -> np.ndarray:
    """A contact sheet uint8 (H, W, 3): one row per readable video, `num_frames` frames of its clip across."""
    rows = []
    for i in range(0, len(dataset), dataset.clip.clips_per_video):
        if len(rows) == num_videos:
            break
        if str(dataset.entries[i // dataset.clip.clips_per_video].path) in dataset.bad_files:
            continue
        try:
            frames, _ = dataset.clip_frames(i, deterministic=True)  # (T, S, S, 3)
        except DECODE_ERRORS as err:
            dataset.mark_bad(dataset.entries[i // dataset.clip.clips_per_video].path, f"cannot decode: {err}")
            continue
        pick = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
        rows.append(frames[pick])  # (F, S, S, 3)
    if not rows:
        raise ValueError(f"{dataset.name}: no readable video to preview")
    cells = rearrange(np.stack(rows), "n f h w c -> (n f) 1 h w c")  # each frame its own 1-frame cell
    return make_grid(cells, ncol=rows[0].shape[0])[0]  # (H', W', 3)
