"""Does a decoder trained on noisy latents turn a latent model's mosaic into a picture?

    kinema train-ae --config configs/autoencoder-natural.yaml --out runs/ae-natural-dec --steps 300 \
        --set finetune.init_from=ae-natural --set ae_loss.decoder_only=true --set ae_loss.latent_noise=0.3 \
        --set data.num_frames=4 --set train.lr=2e-4 --set train.warmup_steps=20
    python benchmarks/decoder_noise.py --autoencoder ae-natural --decoder runs/ae-natural-dec/model \
        --model runs/natural-128

`train-ae` with `ae_loss.decoder_only` trains the decoder alone (encoder and latent statistics kept, so the latent
model's samples still fit) on latents with Gaussian noise. This script decodes the same sampled latents of
`--model` with the original and the noise-trained decoder, and the held-out clips' clean latents with both (what
the fine-tuning costs in reconstruction). Writes benchmarks/results/decoder_noise.{md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kinema.data import to_uint8
from kinema.data.natural import NaturalVideo, NaturalVideoConfig
from kinema.data.video_io import write_image
from kinema.evaluation.frame_metrics import psnr_per_frame
from kinema.models.model_dir import load_autoencoder
from kinema.pipeline import VideoPipeline


def main() -> None:
    """Decode both ways, write the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--autoencoder", required=True)
    ap.add_argument("--decoder", required=True, help="the autoencoder fine-tuned by train-ae ae_loss.decoder_only")
    ap.add_argument("--model", required=True, help="a latent model trained on --autoencoder")
    ap.add_argument("--out", default="benchmarks/results/decoder_noise")
    args = ap.parse_args()
    ae, tuned = load_autoencoder(args.autoencoder).eval(), load_autoencoder(args.decoder).eval()
    run = Path(args.decoder).parent / "config.json"  # the train-ae run's own record, when the directory is a run's
    ae_loss = json.loads(run.read_text()).get("ae_loss", {}) if run.is_file() else {}
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
             f"Decoder `{args.decoder}`: trained by `kinema train-ae` with `ae_loss.decoder_only` "
             f"(latent noise {ae_loss.get('latent_noise', 'not recorded')} latent stds at most).", "",
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
