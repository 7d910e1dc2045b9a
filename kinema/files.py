"""Files kinema writes: atomically, checked before any work, and never at the cost of a user's own files.

Every output goes to a hidden temporary name beside its target and is renamed into place, so a kill,
a full disk or an error leaves either the old file or the new one, never half of one. Directories
(caches, checkpoints) are built the same way and swapped in with two renames. Nothing here deletes
a path it did not create in the same call, except a directory `replace_dir` is told to replace.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterable

# ---- durability ----


def fsync_file(path: Path) -> None:
    """Flush a written file to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames into it) to disk; a no-op on Windows."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- files ----


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, durable: bool = True) -> Path:
    """Call `write(tmp)` on a hidden temporary file beside `path`, then rename it to `path`; returns `path`.

    On any failure the temporary file is removed and `path` is untouched; OSErrors name `path`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # a new file's usual mode: some writers create theirs 0600
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and str(path) not in str(err):
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        raise
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create directory `path` if needed and check a file can be written in it, before any work; returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what}: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".kinema-probe-"):
            pass
    except OSError as err:
        raise ValueError(f"{what}: cannot write into {path}: {err.strerror or err}") from err
    return path


def check_output_file(path: str | os.PathLike, suffixes: Iterable[str], what: str = "--out") -> Path:
    """Check, before any work, that a file with one of `suffixes` (any case) can be written at `path`."""
    path, suffixes = Path(path), tuple(suffixes)
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a directory; give a file name ending in {' or '.join(suffixes)}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{what} must end in {' or '.join(suffixes)} (any case), got {str(path)!r}")
    check_writable_dir(path.parent, f"{what} {path}: its folder")
    return path


# ---- directories ----


def temp_dir_beside(target: str | os.PathLike) -> Path:
    """A new empty hidden directory next to `target` (same file system, so it can be renamed onto it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    made = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(made, 0o777 & ~current_umask())  # mkdtemp makes it 0700; it becomes the user's folder when renamed
    return made


def replace_dir(src: Path, dst: Path) -> None:
    """Rename directory `src` to `dst`; an existing `dst` is moved aside first and removed only after the swap."""
    if not dst.exists():
        os.rename(src, dst)
        return
    # rename() cannot replace a non-empty directory: move the old one aside, then drop it.
    old = dst.with_name(f".old-{dst.name}-{uuid.uuid4().hex[:8]}")
    os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    shutil.rmtree(old)
