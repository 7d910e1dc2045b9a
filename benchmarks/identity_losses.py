"""Which training signal makes the reference-image latent name the digit: the image encoder alone, several objectives.

    python benchmarks/identity_losses.py [--steps 3000] [--seeds 0 1] [--out benchmarks/results/identity_losses]

The frame tasks hand the given first frame to the image encoder; how well its latent names the digit bounds
how well the made frames keep it (benchmarks/image_identity.py). This trains a fresh `ImageEncoder` (the
bundled model's size) on moving-digits clips with each objective for the same number of steps and seeds,
and scores each by a linear probe of the latent mean (digit of held-out clips' first frames, chance 0.10):

- `pairs-8`: `identity_loss` as `cond.identity_weight` trains it — first frame against one other frame of
  the same clip, 8 clips per batch (the bundled recipe's batch);
- `pairs-64`: the same with 64 clips per batch (more negatives);
- `frames-8`: every frame of 8 clips, each frame's positives every other frame of its clip (supervised
  contrastive form of the same idea, 128 latents per batch);
- `caption-8`: the first frame's latent against the clip's caption (a bag of learned word vectors):
  CLIP-style, what the caption says about a clip the image has to say too;
- `caption-8-fixed`: as `cond.caption_weight` trains it: the image's pooled vector (the encoder's linear
  map of the latent to the network's width, 64) against word vectors of that width that stay at their random
  start (the text side gets no gradient from the term);
- `caption+frames-8`: `caption-8-fixed` plus `frames-8`.

The diffusion loss that also reaches the encoder in a real run is absent here: this ranks objectives, it
does not predict a model's probe. Writes JSON and markdown.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.linear_model import LogisticRegression

from kinema.data.datasets import MovingDigits, MovingDigitsConfig
from kinema.models.encoders import ImageEncoder, identity_loss


def _clips(split: str, seed: int, n: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    data = MovingDigits(MovingDigitsConfig(size=32, num_frames=16, max_digits=1, split=split, seed=seed, length=n))
    items = [data[i] for i in range(n)]
    return (torch.stack([it["video"] for it in items]), np.array([int(it["labels"][0, 0]) for it in items]),
            [it["caption"] for it in items])


def _frames_loss(encoder: ImageEncoder, video: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised-contrastive loss over every frame of (B, C, T, H, W): positives are the other frames of a clip."""
    b, t = video.shape[0], video.shape[2]
    z = F.normalize(encoder.mean(rearrange(video, "b c t h w -> (b t) c h w"))[0].float(), dim=-1)  # (B*T, Z)
    logits = z @ z.T / temperature
    self_mask = torch.eye(b * t, dtype=torch.bool)
    logits = logits.masked_fill(self_mask, float("-inf"))
    clip = torch.arange(b).repeat_interleave(t)
    positive = (clip[:, None] == clip[None, :]) & ~self_mask  # (B*T, B*T)
    log_p = logits.log_softmax(-1).masked_fill(~positive, 0.0)
    return -(log_p.sum(-1) / positive.sum(-1)).mean()


class _Words(torch.nn.Module):
    """A caption as the mean of learned word vectors, projected to the image latent's width."""

    def __init__(self, vocab: list[str], width: int):
        super().__init__()
        self.index = {w: i for i, w in enumerate(vocab)}
        self.embed = torch.nn.EmbeddingBag(len(vocab), width, mode="mean")

    def forward(self, captions: list[str]) -> torch.Tensor:
        ids = [torch.tensor([self.index[w] for w in c.split()]) for c in captions]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.embed(torch.cat(ids), offsets)  # (B, width)


def train(objective: str, video: torch.Tensor, captions: list[str], steps: int, seed: int = 0) -> ImageEncoder:
    """A fresh image encoder trained `steps` steps with one objective on clips (N, C, T, H, W)."""
    torch.manual_seed(seed)
    encoder = ImageEncoder(1, 64, 16)
    fixed = objective != "caption-8"  # the text side stays put; the image side maps its latent to the text's width
    vocab = sorted({w for c in captions for w in c.split()})
    words = _Words(vocab, 64 if fixed else 16) if "caption" in objective else None
    params = list(encoder.parameters())
    if words is not None:
        words.requires_grad_(not fixed)
        params += list(words.parameters()) if not fixed else []
    opt = torch.optim.AdamW(params, lr=5e-4)
    g = torch.Generator().manual_seed(seed)
    batch = 64 if objective == "pairs-64" else 8
    for _ in range(steps):
        idx = torch.randint(len(video), (batch,), generator=g)
        clips = video[idx]  # (B, C, T, H, W)
        if objective in ("pairs-8", "pairs-64"):
            other = torch.randint(1, clips.shape[2], (batch,), generator=g)
            loss = identity_loss(encoder, clips[:, :, 0], clips[torch.arange(batch), :, other])
        elif objective == "frames-8":
            loss = _frames_loss(encoder, clips)
        elif "caption" in objective:
            mu = encoder.mean(clips[:, :, 0])[0]
            a = F.normalize(encoder.pool(mu) if fixed else mu, dim=-1)
            b = F.normalize(words([captions[i] for i in idx]), dim=-1)
            logits = a @ b.T / 0.1
            # clips with the same caption are not negatives of each other
            same = torch.tensor([[captions[i] == captions[j] for j in idx] for i in idx])
            logits = logits.masked_fill(same & ~torch.eye(batch, dtype=torch.bool), float("-inf"))
            target = torch.arange(batch)
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            loss = loss + (_frames_loss(encoder, clips) if objective == "caption+frames-8" else 0.0)
        else:
            raise ValueError(f"unknown objective {objective!r}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return encoder.eval()


@torch.no_grad()
def probe(encoder: ImageEncoder, train_clips, y, test_clips, y_t) -> float:
    """Linear-probe accuracy of the latent mean: fit on training clips' first frames, scored on held-out ones."""
    clf = LogisticRegression(max_iter=3000).fit(encoder.mean(train_clips[:, :, 0])[0].numpy(), y)
    return float(clf.score(encoder.mean(test_clips[:, :, 0])[0].numpy(), y_t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--objectives", nargs="+", default=["pairs-8", "pairs-64", "frames-8", "caption-8",
                                                         "caption-8-fixed", "caption+frames-8"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default="benchmarks/results/identity_losses")
    args = ap.parse_args()
    video, _, captions = _clips("train", 7, 4000)
    train_clips, y, _ = _clips("train", 1, 2000)
    test_clips, y_t, _ = _clips("test", 123, 500)
    rows = []
    for objective in args.objectives:
        for seed in args.seeds:
            start = time.process_time()
            encoder = train(objective, video, captions, args.steps, seed)
            rows.append({"objective": objective, "seed": seed, "steps": args.steps,
                         "probe": probe(encoder, train_clips, y, test_clips, y_t),
                         "cpu_s": round(time.process_time() - start, 1)})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Which objective makes the image latent name the digit (image encoder alone)", "",
             f"A fresh `ImageEncoder` (latent 16) per objective, {args.steps} steps of AdamW at 5e-4 on 4,000 "
             "training-split clips; linear probe of the latent mean on 500 held-out clips' first frames (chance 0.10). "
             "`python benchmarks/identity_losses.py`.", "",
             "| objective | seed | digit probe | CPU s |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['objective']} | {r['seed']} | {r['probe']:.3f} | {r['cpu_s']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
