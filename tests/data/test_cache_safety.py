"""`kinema data cache` never deletes what it did not write: user folders, the source, a cache with a user's file."""

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinema.cli import main

from video_fixtures import gradient_frames, write_av


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones included) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def clips(tmp_path):
    """A folder of six small mp4 clips."""
    root = tmp_path / "clips"
    root.mkdir()
    for i in range(6):
        write_av(root / f"clip{i}.mp4", gradient_frames(t=10, h=24, w=24, seed=i))
    return root


def _cache(src, out, *extra):
    return main(["data", "cache", str(src), "--out", str(out), "--set", "data.size=16",
                 "--set", "data.num_frames=4", *extra])


def test_a_folder_holding_a_users_file_is_refused_and_kept(clips, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\documentclass{article} years of work")
    before = _tree(thesis)
    assert _cache(clips, thesis) == 2
    assert _tree(thesis) == before
    err = capsys.readouterr().err
    assert str(thesis) in err and "thesis.tex" in err and "not a kinema cache" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left beside


@pytest.mark.parametrize("where", ["source", "parent"])
def test_the_source_folder_and_its_parent_are_refused(clips, where, capsys):
    out = clips if where == "source" else clips.parent
    before = _tree(out)
    assert _cache(clips, out) == 2
    assert _tree(out) == before
    assert "not a kinema cache" in capsys.readouterr().err


def test_a_file_as_out_is_refused(clips, tmp_path):
    note = tmp_path / "notes.txt"
    note.write_text("keep me")
    assert _cache(clips, note) == 2
    assert note.read_text() == "keep me"


def test_overwrite_replaces_only_a_kinema_cache(clips, tmp_path, capsys):
    out = tmp_path / "cache"
    assert _cache(clips, out) == 0
    first = _tree(out)
    assert _cache(clips, out) == 2  # an existing cache needs --overwrite
    assert "--overwrite" in capsys.readouterr().err and _tree(out) == first
    assert main(["data", "cache", str(clips), "--out", str(out), "--set", "data.size=8",
                 "--set", "data.num_frames=4", "--overwrite"]) == 0
    assert _tree(out) != first and '"clip_shape": [\n  4,\n  8,' in (out / "index.json").read_text()
    (out / "mine.txt").write_text("a user's file inside the cache folder")
    before = _tree(out)
    assert _cache(clips, out, "--overwrite") == 2  # not kinema's files only: refused even with --overwrite
    assert _tree(out) == before
    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("x")
    assert _cache(clips, user, "--overwrite") == 2 and (user / "a.txt").read_text() == "x"


def test_an_interrupted_cache_leaves_the_old_one(clips, tmp_path, monkeypatch):
    from kinema.data.video_datasets import VideoClips

    out = tmp_path / "cache"
    assert _cache(clips, out) == 0
    before = _tree(out)
    calls = []
    real = VideoClips.clip_frames

    def interrupted(self, index, **kw):
        calls.append(index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, index, **kw)

    monkeypatch.setattr(VideoClips, "clip_frames", interrupted)
    assert _cache(clips, out, "--overwrite") == 130
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clips"]  # the temp folder was removed


CHILD = """
import sys, time
from kinema.data.video_datasets import VideoClips
real = VideoClips.clip_frames
def slow(self, index, **kw):
    time.sleep(0.3)
    return real(self, index, **kw)
VideoClips.clip_frames = slow
from kinema.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_caching_leaves_the_old_cache_intact(clips, tmp_path):
    out = tmp_path / "cache"
    assert _cache(clips, out) == 0
    before = _tree(out)
    argv = ["data", "cache", str(clips), "--out", str(out), "--set", "data.size=16", "--set", "data.num_frames=4",
            "--overwrite"]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not any(p.name.startswith(".cache.tmp-") for p in tmp_path.iterdir()):
        assert child.poll() is None and time.time() < deadline, "the cache was never started"
        time.sleep(0.02)
    time.sleep(0.5)  # mid-way through the clips
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _tree(out) == before
