"""What `kinema data inspect` and the video data sets say about bad input: broken caption lines, many bad
files, FIFOs and other non-regular files, and messages that name the path they are about."""

import json
import os
import threading
import warnings

import pytest
from video_fixtures import gradient_frames, write_av, write_frame_folder

from kinema.cli import main
from kinema.data import UCF101, ClipConfig, Kinetics400, VideoFolder
from kinema.data import video_datasets as vd
from kinema.data.video_datasets import find_videos, read_caption_index

SMALL = ClipConfig(num_frames=8, size=16, start="uniform")


def caught_messages(fn, *args, **kwargs):
    """(fn's result, the text of every warning it raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught]


def finishes(fn, *args, timeout=20.0, fifos=()):
    """fn(*args) run in a thread; fails instead of hanging when it blocks on opening one of `fifos`."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # re-raised in the test's thread
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:  # a writer end lets a reader blocked in open() go on, so the thread ends
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(5)
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked for {timeout} s (opened a FIFO?)")
    if "error" in out:
        raise out["error"]
    return out["value"]


# ---- the caption index ----


def test_broken_caption_lines_are_skipped_with_file_and_line(tmp_path):
    for name in ("a", "b", "c"):
        write_av(tmp_path / f"{name}.mp4", gradient_frames(seed=ord(name)))
    jsonl = tmp_path / "captions.jsonl"
    lines = [
        json.dumps({"path": "a.mp4", "caption": "one\u2028line\x85still one"}, ensure_ascii=False),  # valid JSON
        '{"path": "b.mp4", "caption": "cut off"',  # line 2: not JSON
        json.dumps({"file": "c.mp4"}),  # line 3: no path, no caption
        json.dumps({"path": 3, "caption": "not a path"}),  # line 4
        json.dumps(["c.mp4", "a list"]),  # line 5
        "",
        json.dumps({"path": "b.mp4", "caption": "bee"}),
        json.dumps({"path": "c.mp4", "caption": None}),  # line 8
    ]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds, messages = caught_messages(VideoFolder, tmp_path, SMALL)
    assert {e.path.name: e.caption for e in ds.entries} == {"a.mp4": "one\u2028line\x85still one", "b.mp4": "bee",
                                                              "c.mp4": ""}
    for n in (2, 3, 4, 5, 8):
        assert any(f"{jsonl}:{n}:" in m for m in messages), (n, messages)
    assert not any(f"{jsonl}:{n}:" in m for n in (1, 6, 7, 9) for m in messages)
    assert any("not JSON" in m for m in messages) and any("'path'" in m for m in messages)


def test_many_broken_caption_lines_give_a_bounded_warning(tmp_path):
    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text("".join(f"not json {n}\n" for n in range(1000)))
    captions, messages = caught_messages(read_caption_index, tmp_path)
    assert captions == {}
    assert len(messages) <= vd.MAX_LISTED + 1 and sum(len(m) for m in messages) < 4000
    assert f"{jsonl}:1:" in messages[0] and any("1000" in m for m in messages)


@pytest.mark.parametrize("name", ["captions.jsonl", "captions.csv", "a.txt"])
def test_a_caption_file_that_is_not_utf8_is_an_error_naming_it(tmp_path, name):
    write_av(tmp_path / "a.mp4", gradient_frames())
    text = {"captions.jsonl": '{"path": "a.mp4", "caption": "caf\u00e9"}\n',
            "captions.csv": "path,caption\na.mp4,caf\u00e9\n", "a.txt": "caf\u00e9\n"}[name]
    (tmp_path / name).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=f"{tmp_path / name}.*UTF-8"):
        VideoFolder(tmp_path, SMALL)


def test_short_or_broken_csv_rows_name_file_and_line(tmp_path):
    write_av(tmp_path / "a.mp4", gradient_frames())
    table = tmp_path / "captions.csv"
    table.write_text("path,caption\nb.mp4\na.mp4,ay\n")
    captions, messages = caught_messages(read_caption_index, tmp_path)
    assert captions == {"a.mp4": "ay"} and any(f"{table}:2:" in m for m in messages)
    table.write_text('path,caption\na.mp4,"' + "x" * 200_000 + '"\n')  # over csv's field size limit
    with pytest.raises(ValueError, match=f"{table}:2"):
        read_caption_index(tmp_path)


def test_inspect_with_a_broken_caption_line_succeeds_and_warns(tmp_path, capsys):
    root = tmp_path / "v"
    write_av(root / "a.mp4", gradient_frames())
    (root / "captions.jsonl").write_text('{"path": "a.mp4", "caption": "ok"}\n{"path": \n')
    with pytest.warns(UserWarning, match="captions.jsonl:2:"):
        code = main(["data", "inspect", str(root), "--preview", str(tmp_path / "p.png"),
                     "--set", "data.num_frames=8", "--set", "data.size=16"])
    assert code == 0 and "captions: 1 of 1" in capsys.readouterr().out


# ---- many bad files ----


def test_listing_shows_the_count_and_the_first_few():
    bad = {f"/d/v{k}.mp4": "empty" for k in range(5000)}
    text = vd.listing(bad)
    assert len(text) < 400 and text.startswith("/d/v0.mp4 (empty)") and f"and {5000 - vd.MAX_LISTED} more" in text
    assert vd.listing({"/d/a.mp4": "empty"}) == "/d/a.mp4 (empty)"


def test_many_empty_files_give_a_short_error(tmp_path, capsys):
    root = tmp_path / "v"
    root.mkdir()
    for k in range(300):
        (root / f"v{k:04d}.mp4").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["data", "inspect", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    # one line naming the count and the first few, not all 300 (785 kB for 5,000 files before)
    assert len(err) < 3000 and "300" in err and str(root / "v0000.mp4") in err and "and 295 more" in err
    assert len(caught) <= 30  # not one warning per file


# ---- FIFOs and other files that are not regular ----


@pytest.fixture
def with_fifos(tmp_path):
    """A folder with one good video, a FIFO `pipe.mp4`, a frame folder holding only a FIFO, and symlinks."""
    root = tmp_path / "v"
    write_av(root / "good.mp4", gradient_frames())
    os.mkfifo(root / "pipe.mp4")
    (root / "fifo_frames").mkdir()
    os.mkfifo(root / "fifo_frames" / "frame_0000.png")
    os.symlink(root / "good.mp4", root / "linked.mp4")  # a symlink to a regular file counts
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    return root, [root / "pipe.mp4", root / "fifo_frames" / "frame_0000.png"]


def test_find_videos_skips_what_is_not_a_regular_file(with_fifos):
    root, fifos = with_fifos
    found, messages = caught_messages(finishes, find_videos, root, fifos=fifos)
    assert [p.name for p in found] == ["good.mp4", "linked.mp4"]
    assert any(str(root / "pipe.mp4") in m and "FIFO" in m for m in messages)
    assert any(str(root / "dangling.mp4") in m for m in messages)


def test_inspect_does_not_hang_on_a_fifo(with_fifos, tmp_path, capsys):
    root, fifos = with_fifos
    write_frame_folder(root / "frames", gradient_frames())
    os.mkfifo(root / "frames" / "frame_9999.png")  # beside real frames: ignored
    argv = ["data", "inspect", str(root), "--preview", str(tmp_path / "p.png"), "--set", "data.num_frames=8",
            "--set", "data.size=16"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert finishes(main, argv, fifos=[*fifos, root / "frames" / "frame_9999.png"]) == 0
    assert "3 readable videos" in capsys.readouterr().out


def test_kinetics_does_not_open_a_fifo(tmp_path):
    root = tmp_path / "k400"
    write_av(root / "aaaaaaaaaaa_000000_000010.mp4", gradient_frames())
    os.mkfifo(root / "bbbbbbbbbbb_000000_000010.mp4")
    (root / "k.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                "x,aaaaaaaaaaa,0,10,train\ny,bbbbbbbbbbb,0,10,train\n")
    ds, messages = caught_messages(finishes, Kinetics400, root, "k.csv", SMALL,
                                   fifos=[root / "bbbbbbbbbbb_000000_000010.mp4"])
    assert [e.path.name for e in ds.entries] == ["aaaaaaaaaaa_000000_000010.mp4"]
    assert any("bbbbbbbbbbb_000000_000010.mp4" in m and "FIFO" in m for m in messages)


# ---- messages that name their path ----


def test_ucf101_list_errors_name_file_and_line(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    classes, split = lists / "classInd.txt", lists / "trainlist01.txt"
    classes.write_text("1 ApplyEyeMakeup\n2\n")
    split.write_text("ApplyEyeMakeup/v_a.avi 1\n")
    with pytest.raises(ValueError, match=f"{classes}:2"):
        UCF101(tmp_path, split, SMALL)
    classes.write_text("1 ApplyEyeMakeup\none YoYo\n")
    with pytest.raises(ValueError, match=f"{classes}:2"):
        UCF101(tmp_path, split, SMALL)
    classes.write_text("1 ApplyEyeMakeup\n")
    split.write_text("ApplyEyeMakeup/v_a.avi 1\nApplyEyeMakeup/v_b.avi first\n")
    with pytest.raises(ValueError, match=f"{split}:2"):
        UCF101(tmp_path, split, SMALL)
    split.write_bytes("ApplyEyeMakeup/v_\u00e9.avi 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"{split}.*UTF-8"):
        UCF101(tmp_path, split, SMALL)


def test_ucf101_with_every_clip_missing_names_the_folder(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 YoYo\n")
    (tmp_path / "testlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi\n")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=f"{tmp_path / 'testlist01.txt'}"):
        UCF101(tmp_path / "UCF-101", tmp_path / "testlist01.txt", SMALL)


@pytest.mark.parametrize("row", ["x,aaaaaaaaaaa,zero,10,train", "x,aaaaaaaaaaa", "x,aaaaaaaaaaa,inf,10,train",
                                 'x,aaaaaaaaaaa,0,10,"' + "y" * 200_000 + '"'])
def test_kinetics400_bad_rows_name_file_and_line(tmp_path, row):
    write_av(tmp_path / "aaaaaaaaaaa_000000_000010.mp4", gradient_frames())
    table = tmp_path / "k.csv"
    table.write_text(f"label,youtube_id,time_start,time_end,split\nx,aaaaaaaaaaa,0,10,train\n{row}\n")
    with pytest.raises(ValueError, match=f"{table}:3"):
        Kinetics400(tmp_path, table, SMALL)


def test_a_list_file_that_is_a_directory_says_so(tmp_path):
    (tmp_path / "k.csv").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'k.csv'} is a directory"):
        Kinetics400(tmp_path, "k.csv", SMALL)
    os.mkfifo(tmp_path / "k2.csv")
    with pytest.raises(ValueError, match=f"{tmp_path / 'k2.csv'} is a FIFO"):
        finishes(Kinetics400, tmp_path, "k2.csv", SMALL, fifos=[tmp_path / "k2.csv"])
