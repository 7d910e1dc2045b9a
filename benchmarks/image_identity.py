"""What a model's reference-image encoder says about the digit: a linear probe of its latent mean.

    python benchmarks/image_identity.py MODEL [MODEL ...] [--out benchmarks/results/image_identity]

The image encoder turns a clip's first frame into the one token every frame of a clip sees (image ->
video, and the given first frame of prediction / interpolation / animation). If that latent names the
digit, the network has a global cue for which digit to draw; if it only says where the digit is, the
digit must be carried from frame to frame by local operations. For each model: the first frames of
2,000 training-split clips fit a logistic regression from the latent mean to the digit class, scored on
the first frames of 500 held-out clips (test-split digit images); chance is 0.10. Also the latent's KL
to N(0, I) (nats) and how often the nearest other frame of the same held-out clip, among 500 clips'
frames, is the clip's own (instance retrieval); and the probe on the mean of the latent means of a clip's first
4 frames (what prediction's given frames could hand the encoder together). Writes JSON and markdown.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from kinema.data.datasets import MovingDigits, MovingDigitsConfig
from kinema.models.model_dir import load_video_model


def _clips(size: int, frames: int, split: str, seed: int, n: int) -> tuple[torch.Tensor, np.ndarray]:
    data = MovingDigits(MovingDigitsConfig(size=size, num_frames=frames, max_digits=1, split=split, seed=seed))
    items = [data[i] for i in range(n)]
    return torch.stack([it["video"] for it in items]), np.array([int(it["labels"][0, 0]) for it in items])


@torch.no_grad()
def probe(model_dir: str, train: int = 2000, test: int = 500) -> dict:
    """{"probe": accuracy, "kl": nats, "retrieval": share} of one model directory's image encoder."""
    loaded = load_video_model(model_dir)
    if loaded.conditioner is None or loaded.conditioner.image is None:
        raise ValueError(f"{model_dir} has no image encoder (cond.image)")
    encoder = loaded.conditioner.image.eval()
    video, y = _clips(loaded.size, loaded.num_frames, "train", 1, train)  # (N, C, T, H, W)
    video_t, y_t = _clips(loaded.size, loaded.num_frames, "test", 123, test)
    mu, _ = encoder.mean(video[:, :, 0])
    mu_t, log_var_t = encoder.mean(video_t[:, :, 0])
    clf = LogisticRegression(max_iter=3000).fit(mu.numpy(), y)
    mu4 = torch.stack([encoder.mean(video_t[:, :, k])[0] for k in range(4)]).mean(0)  # (N, Z): 4 frames' mean
    kl = 0.5 * (mu_t.pow(2) + log_var_t.exp() - 1 - log_var_t).sum(-1)
    last, _ = encoder.mean(video_t[:, :, -1])  # (N, Z): the clip's last frame, the digit elsewhere
    sim = torch.nn.functional.normalize(mu_t, dim=-1) @ torch.nn.functional.normalize(last, dim=-1).T
    return {"model": model_dir, "probe": float(clf.score(mu_t.numpy(), y_t)),
            "probe_4_frames": float(clf.score(mu4.numpy(), y_t)), "kl": float(kl.mean()),
            "retrieval": float((sim.argmax(1) == torch.arange(test)).float().mean()), "train": train, "test": test}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/image_identity")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [probe(m) for m in args.models]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# What the reference-image encoder knows about the digit", "",
             "Linear probe of the image latent's mean: digit class of a clip's first frame (fit on 2,000 training-split "
             "clips, scored on 500 held-out ones; chance 0.10). Retrieval: the held-out clip whose last frame's latent "
             "is nearest (cosine) to a first frame's is the same clip (chance 0.002).", "",
             "| model | digit probe | probe, mean of 4 frames | retrieval first -> last frame | KL (nats) |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['probe']:.3f} | {r['probe_4_frames']:.3f} | {r['retrieval']:.3f} | {r['kl']:.1f} |"
              for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
