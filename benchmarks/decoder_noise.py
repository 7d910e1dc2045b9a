"""Does a decoder trained on noisy latents turn a latent model's mosaic into a picture?

    python benchmarks/decoder_noise.py --autoencoder ae-natural --model runs/natural-128 --steps 300

Fine-tunes a copy of the autoencoder's decoder (encoder and latent statistics frozen, so the latent model's
samples still fit) on `data.kind natural` clips whose normalised latent gets Gaussian noise of std `--noise`,
L1 against the clean clip. Then decodes the same sampled latents of `--model` with the original and the
fine-tuned decoder, and the held-out clips' clean latents with both (what the fine-tuning costs in
reconstruction). Writes benchmarks/results/decoder_noise.{md,png}.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from tqdm.auto import trange

from kinema.data import to_uint8
from kinema.data.natural import NaturalVideo, NaturalVideoConfig
from kinema.data.video_io import write_image
from kinema.evaluation.frame_metrics import psnr_per_frame
from kinema.models.model_dir import load_autoencoder
from kinema.pipeline import VideoPipeline


def main() -> None:
    """Fine-tune, decode both ways, write the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--model", required=True, help="a latent model trained on this autoencoder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--out", default="benchmarks/results/decoder_noise")
    args = ap.parse_args()
    torch.manual_seed(0)
    ae = load_autoencoder(args.autoencoder)
    tuned = copy.deepcopy(ae).train().requires_grad_(False)
    params = [*tuned.decoder.parameters(), *(tuned.shortcut_out.parameters() if tuned.shortcut_out else [])]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr)
    data = NaturalVideo(NaturalVideoConfig(size=128, num_frames=4, length=10**6, seed=11))
    start = time.time()
    for step in trange(args.steps, desc="decoder"):
        x = torch.stack([data[step * 4 + i]["video"] for i in range(4)])  # (4, 3, 4, 128, 128)
        with torch.no_grad():
            z = tuned.encode(x)
        z = z + args.noise * torch.rand(z.shape[0], 1, 1, 1, 1) * torch.randn_like(z)  # noise of std in [0, noise]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = (tuned.decode(z).float() - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    minutes = (time.time() - start) / 60
    tuned.eval()
    latents = sample_latents(VideoPipeline.from_pretrained(args.model))
    with torch.no_grad():
        held = NaturalVideo(NaturalVideoConfig(size=128, num_frames=16, split="test", clip_share=1.0, length=8))
        clips = torch.stack([held[i]["video"] for i in range(8)])
        zc = ae.encode(clips)
        rec = {"original": float(psnr_per_frame(ae.decode(zc).clamp(-1, 1), clips).mean()),
               "noise-trained": float(psnr_per_frame(tuned.decode(zc).clamp(-1, 1), clips).mean())}
        before, after = ae.decode(latents).clamp(-1, 1), tuned.decode(latents).clamp(-1, 1)
    frames = [0, 8, 15]
    rows = [torch.cat([torch.cat(list(v[i, :, frames].unbind(1)), dim=-1) for v in (before, after)], dim=-1)
            for i in range(latents.shape[0])]  # (C, H, 6 W) per sample: 3 frames before, 3 after
    picture = to_uint8(torch.cat(rows, dim=-2)[None, :, None])[0, 0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out.with_suffix(".png"), picture)
    lines = [f"# A decoder trained on noisy latents: {args.autoencoder}, samples of {args.model}", "",
             f"{args.steps} steps of the decoder alone (batch 4 × 4 frames at 128 × 128, noise std uniform in "
             f"[0, {args.noise}], LR {args.lr}), {minutes:.1f} minutes.", "",
             "| decoder | reconstruction of 8 held-out bikes.mp4 clips (PSNR) |", "| --- | --- |",
             f"| original | {rec['original']:.2f} |", f"| noise-trained | {rec['noise-trained']:.2f} |", "",
             f"`{out.with_suffix('.png').name}`: each row one sampled latent; frames 0, 8, 15 through the original "
             "decoder, then through the noise-trained one."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def sample_latents(pipe: VideoPipeline) -> torch.Tensor:
    """Four sampled latent clips (4, Z, T, h, w) of a latent pipeline, seed 0, as they go to its decoder."""
    caught = []
    decode = pipe._decode
    pipe._decode = lambda clip, chunk: caught.append(clip.detach().float().clone()) or decode(clip, chunk)
    pipe(4, steps=25, sampler="dpmpp_2m", seed=0, progress=False)
    return caught[-1]


if __name__ == "__main__":
    main()
