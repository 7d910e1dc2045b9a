"""What errors in an autoencoder's latent look like once decoded: a clip's latent plus Gaussian noise.

    python benchmarks/latent_noise.py --autoencoder ae-natural --clip data/natural-clips/carphone_pristine-0050-0014.mp4

Encodes the clip's first `--frames` frames, adds noise of each `--std` (in the normalised units diffusion
works in: unit variance per channel on training data) and decodes. Prints the PSNR of each against the
clean decode and writes OUT.png: the clip, then each noisy decode, first frame of each side by side.
"""

from __future__ import annotations

import argparse

import torch

from kinema.data import make_grid, to_tensor, to_uint8
from kinema.data.video_io import read_video, write_image
from kinema.evaluation.frame_metrics import psnr_per_frame
from kinema.models.model_dir import load_autoencoder


def main() -> None:
    """Decode noisy latents; print PSNRs; write the picture."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--std", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    ap.add_argument("--out", default="benchmarks/results/latent_noise.png")
    args = ap.parse_args()
    ae = load_autoencoder(args.autoencoder)
    video = to_tensor(read_video(args.clip))[None, :, :args.frames]  # (1, C, T, H, W) in [-1, 1]
    if ae.config.in_channels == 1:  # a grey autoencoder (moving digits): the files are stored as RGB
        video = video.mean(1, keepdim=True)
    generator = torch.Generator().manual_seed(0)
    shown = [video]
    with torch.no_grad():
        z = ae.encode(video)
        clean = ae.decode(z).clamp(-1, 1)
        print(f"clean decode: {float(psnr_per_frame(clean, video).mean()):.2f} dB against the clip")
        for std in args.std:
            noisy = ae.decode(z + std * torch.randn(z.shape, generator=generator)).clamp(-1, 1)
            psnr = float(psnr_per_frame(noisy, clean).mean())
            print(f"latent noise std {std:g}: {psnr:.2f} dB against the clean decode")
            shown.append(noisy)
    write_image(args.out, make_grid(to_uint8(torch.cat(shown))[:, :1], ncol=len(shown))[0])


if __name__ == "__main__":
    main()
