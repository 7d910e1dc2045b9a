"""Small dataclasses shared by every package: what a denoiser returns and what conditions it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

PredictionType = Literal["eps", "v", "x0"]
PREDICTION_TYPES = ("eps", "v", "x0")


@dataclass
class Prediction:
    """A denoiser's answer at (x_t, t): the clean video, the noise, and optionally the learned variance.

    `var_frac` is the improved-DDPM interpolation weight v in [0, 1] between log beta (v=1) and
    the log posterior variance (v=0); samplers turn it into a variance for whichever step they take.
    """

    x0: torch.Tensor  # (B, C, T, H, W)
    eps: torch.Tensor  # (B, C, T, H, W)
    var_frac: Optional[torch.Tensor] = None  # (B, C, T, H, W) in [0, 1], or None for fixed variance


@dataclass
class Cond:
    """Conditions: tokens for cross-attention, a pooled vector and frame-aligned vectors (FiLM); any may be absent.

    A dropped condition (classifier-free guidance) has its tokens masked out and its vectors zeroed,
    which the network treats exactly like an absent one.
    """

    tokens: Optional[torch.Tensor] = None  # (B, L, D)
    mask: Optional[torch.Tensor] = None  # (B, L) bool, True = real token
    pooled: Optional[torch.Tensor] = None  # (B, D)
    per_frame: Optional[torch.Tensor] = None  # (B, T, D), vector t belongs to frame t (e.g. audio)
    maps: Optional[torch.Tensor] = None  # (B, M, T, H, W) maps laid beside the input frames (e.g. a path's heatmap)

    def drop(self, keep: torch.Tensor) -> "Cond":
        """This condition with the batch items where `keep` (B,) is False removed (masked, zeroed)."""
        keep = keep.bool()
        mask = None if self.tokens is None else self._mask() & keep[:, None]
        zero = lambda v: None if v is None else v * keep.to(v.dtype).reshape(-1, *[1] * (v.ndim - 1))  # noqa: E731
        return Cond(tokens=self.tokens, mask=mask, pooled=zero(self.pooled), per_frame=zero(self.per_frame),
                    maps=zero(self.maps))

    def _mask(self) -> torch.Tensor:
        if self.mask is not None:
            return self.mask.bool()
        return torch.ones(self.tokens.shape[:2], dtype=torch.bool, device=self.tokens.device)

    @staticmethod
    def cat(parts: list["Cond"]) -> "Cond":
        """One Cond from several: tokens concatenated along L, pooled and per-frame vectors and maps summed."""
        tokened = [p for p in parts if p.tokens is not None]
        tokens = torch.cat([p.tokens for p in tokened], dim=1) if tokened else None
        mask = torch.cat([p._mask() for p in tokened], dim=1) if tokened else None

        def total(name):
            vs = [getattr(p, name) for p in parts if getattr(p, name) is not None]
            return sum(vs[1:], vs[0]) if vs else None

        return Cond(tokens=tokens, mask=mask, pooled=total("pooled"), per_frame=total("per_frame"), maps=total("maps"))

    @staticmethod
    def stack(conds: list[Optional["Cond"]], batch: int) -> Optional["Cond"]:
        """Several conditions of `batch` items each, as one of len(conds) * batch items (None: no condition).

        Absent parts become what the network treats exactly like absence: masked-out tokens (shorter
        token lists are padded the same way) and zero vectors. All absent gives None.
        """
        present = [c for c in conds if c is not None]

        def parts(name: str) -> list[torch.Tensor]:
            return [getattr(c, name) for c in present if getattr(c, name) is not None]

        def filled(name: str) -> Optional[torch.Tensor]:
            ref = parts(name)
            if not ref:
                return None
            zeros = ref[0].new_zeros(batch, *ref[0].shape[1:])
            return torch.cat([zeros if c is None or getattr(c, name) is None else getattr(c, name) for c in conds])

        if not present:
            return None
        tokens = mask = None
        if parts("tokens"):
            ref = parts("tokens")[0]
            length = max(t.shape[1] for t in parts("tokens"))
            tokens = ref.new_zeros(len(conds) * batch, length, ref.shape[2])
            mask = torch.zeros(len(conds) * batch, length, dtype=torch.bool, device=ref.device)
            for i, c in enumerate(conds):
                if c is not None and c.tokens is not None:
                    tokens[i * batch:(i + 1) * batch, :c.tokens.shape[1]] = c.tokens
                    mask[i * batch:(i + 1) * batch, :c.tokens.shape[1]] = c._mask()
        return Cond(tokens=tokens, mask=mask, pooled=filled("pooled"), per_frame=filled("per_frame"),
                    maps=filled("maps"))


@dataclass
class FrameMask:
    """Which frames are given: `mask` (B, T) with 1 = known, and their pixels `frames` (B, C, T, H, W)."""

    mask: torch.Tensor  # (B, T) float in {0, 1}
    frames: torch.Tensor  # (B, C, T, H, W), zeros where unknown
