"""A video autoencoder: pixels (B, C, T, H, W) <-> latents (B, Z, 1 + (T - 1) / ft, H / fs, W / fs).

Convolutions are factorised like the UNet's: a 3x3 convolution per frame, then a size-3 convolution
across frames that only looks back (causal: frame t's latent depends on frames <= t, the first frame
is encoded alone, so an image is a one-frame video). Time shrinks after the first frame by grouping
`temporal_factor` frames into one latent frame. The latent is Gaussian (mean, log variance; KL to
N(0, I)) unless `variational` is off, and enters diffusion shifted and scaled per channel by
statistics measured on training data (`measure_latent_stats`), so it has unit variance there.
Decoding runs in chunks of latent frames with enough past latent frames in front that every kept
frame equals the one a whole-clip decode gives: memory stays flat however long the video.
Which pixel frames a latent frame stands for is `latent_frame_span`'s to say, once for all of kinema.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..config import AutoencoderConfig
from .kernels import Conv3d
from .layers import FrameNorm, spatial_conv


class CausalTemporalConv(Conv3d):
    """A size-3 convolution across frames at each pixel that sees frames t-2, t-1, t (the first one repeated)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, (3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> same shape; frame t depends on frames <= t."""
        pad = x[:, :, :1].expand(-1, -1, 2, -1, -1)  # the first frame repeated: a still start
        return super().forward(torch.cat([pad, x], dim=2))


class CausalResBlock(nn.Module):
    """norm -> SiLU -> 3x3 conv -> causal temporal conv, twice, plus the input (projected if widths differ)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(groups, c_in), spatial_conv(c_in, c_out)
        self.time1 = CausalTemporalConv(c_out)
        self.norm2, self.conv2 = FrameNorm(groups, c_out), spatial_conv(c_out, c_out)
        self.time2 = CausalTemporalConv(c_out)
        self.skip = Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.time1(self.conv1(self.norm1(x, silu=True)))
        h = self.time2(self.conv2(self.norm2(h, silu=True)))
        return self.skip(x) + h


class Down(nn.Module):
    """Halve H and W (a stride-2 3x3 convolution per frame), and with `time` > 1 group frames after the first."""

    def __init__(self, channels: int, time: int = 1):
        super().__init__()
        self.conv, self.time = spatial_conv(channels, channels, stride=2), time
        self.mix = Conv3d(channels * time, channels, 1) if time > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.mix is None or x.shape[2] == 1:  # one frame (an image) stays one frame
            return x
        first, rest = x[:, :, :1], x[:, :, 1:]  # (B, C, 1, H, W), (B, C, k * f, H, W)
        rest = self.mix(rearrange(rest, "b c (k f) h w -> b (c f) k h w", f=self.time))  # (B, C, k, H, W)
        return torch.cat([first, rest], dim=2)


class Up(nn.Module):
    """Double H and W (nearest, then a 3x3 convolution), and with `time` > 1 spread each later frame over `time`."""

    def __init__(self, channels: int, time: int = 1):
        super().__init__()
        self.conv, self.time = spatial_conv(channels, channels), time
        self.spread = Conv3d(channels, channels * time, 1) if time > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spread is not None and x.shape[2] > 1:
            first, rest = x[:, :, :1], self.spread(x[:, :, 1:])  # (B, C, 1, ...), (B, C f, k, ...)
            x = torch.cat([first, rearrange(rest, "b (c f) k h w -> b c (k f) h w", f=self.time)], dim=2)
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class VideoAutoencoder(nn.Module):
    """Encoder and decoder of `AutoencoderConfig`, with the latent's measured per-channel shift and scale."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = cfg = config
        widths, g = cfg.widths, cfg.norm_groups
        halvings_in_time = cfg.temporal_factor.bit_length() - 1  # 1 -> 0, 2 -> 1, 4 -> 2
        times = [2 if i < halvings_in_time else 1 for i in range(len(widths) - 1)]  # time shrinks at the top levels
        enc: list[nn.Module] = [Conv3d(cfg.in_channels, widths[0], (1, 3, 3), padding=(0, 1, 1))]
        for i, width in enumerate(widths):
            c_in = widths[max(i - 1, 0)]
            enc += [CausalResBlock(c_in if j == 0 else width, width, g) for j in range(cfg.num_res_blocks)]
            if i < len(widths) - 1:
                enc.append(Down(width, times[i]))
        enc += [CausalResBlock(widths[-1], widths[-1], g), FrameNorm(g, widths[-1]), nn.SiLU(),
                Conv3d(widths[-1], cfg.latent_channels * (2 if cfg.variational else 1), 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [Conv3d(cfg.latent_channels, widths[-1], (1, 3, 3), padding=(0, 1, 1)),
                                CausalResBlock(widths[-1], widths[-1], g)]
        for i in reversed(range(len(widths))):
            c_in = widths[min(i + 1, len(widths) - 1)]
            dec += [CausalResBlock(c_in if j == 0 else widths[i], widths[i], g) for j in range(cfg.num_res_blocks)]
            if i > 0:
                dec.append(Up(widths[i], times[i - 1]))
        dec += [FrameNorm(g, widths[0]), nn.SiLU(), Conv3d(widths[0], cfg.in_channels, (1, 3, 3), padding=(0, 1, 1))]
        self.decoder = nn.Sequential(*dec)
        folded = cfg.in_channels * cfg.spatial_factor ** 2  # a frame's s x s pixel squares as channels
        self.shortcut_in = Conv3d(folded, cfg.latent_channels, 1) if cfg.shortcut else None
        self.shortcut_out = Conv3d(cfg.latent_channels, folded, 1) if cfg.shortcut else None
        if cfg.shortcut:  # the networks start silent: at first the autoencoder is its linear path (`init_shortcut`)
            last_in, last_out = self.encoder[-1], self.decoder[-1]
            for param in (last_in.weight, last_in.bias, last_out.weight, last_out.bias):
                nn.init.zeros_(param)
            if cfg.variational:
                nn.init.constant_(last_in.bias[cfg.latent_channels:], -8.0)  # log variance: noise of std 0.02
        self.register_buffer("latent_shift", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_scale", torch.ones(cfg.latent_channels))

    # ---- shapes ----

    def latent_shape(self, channels: int, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(Z, T', H', W') of the latent of a (C, T, H, W) clip; a ValueError naming what does not fit."""
        return latent_shape(self.config, channels, frames, height, width)

    def describe(self) -> dict:
        """What a model directory records to rebuild this autoencoder: its config."""
        return asdict(self.config)

    @property
    def decoder_context(self) -> int:
        """Past latent frames a chunk needs in front so its frames decode exactly as in a whole-clip decode."""
        convs = sum(isinstance(m, CausalTemporalConv) for m in self.decoder.modules())
        return 2 * convs  # each causal conv reaches two frames further back (an upper bound across up-steps)

    # ---- encode / decode ----

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Video (B, C, T, H, W) in [-1, 1] -> the raw latent's mean and log variance (None if not variational)."""
        self.latent_shape(*x.shape[1:])
        h = self.encoder(x)
        mean, log_var = h.chunk(2, dim=1) if self.config.variational else (h, None)
        if self.shortcut_in is not None:
            s = self.config.spatial_factor
            mean = mean + self.shortcut_in(rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=s, q=s))
        return mean, None if log_var is None else log_var.clamp(-30, 20)

    def decoded(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latent (B, Z, T', H', W') -> video through the decoder (and the linear shortcut), whole."""
        video = self.decoder(raw)
        if self.shortcut_out is None:
            return video
        s = self.config.spatial_factor
        return video + rearrange(self.shortcut_out(raw), "b (c p q) t h w -> b c t (h p) (w q)", p=s, q=s)

    def encode(self, x: torch.Tensor, sample: bool = False, generator: Optional[torch.Generator] = None
               ) -> torch.Tensor:
        """Video (B, C, T, H, W) -> the latent diffusion sees: shifted and scaled per channel (unit variance)."""
        mean, log_var = self.moments(x)
        z = mean
        if sample and log_var is not None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * log_var).exp() * noise
        return (z - self.latent_shift.view(-1, 1, 1, 1)) / self.latent_scale.view(-1, 1, 1, 1)

    def decode(self, z: torch.Tensor, chunk: Optional[int] = None, tile: Optional[int] = None) -> torch.Tensor:
        """Latent (B, Z, T', H', W') as `encode` gives it -> video (B, C, T, H, W); `chunk` latent frames at a time.

        Each chunk is decoded with `decoder_context` latent frames in front and keeps only its own frames,
        which equal a whole-clip decode's (the decoder is causal), so memory stays flat for long videos.
        `tile` (latent positions) also decodes each chunk in overlapping squares (`decode_tiles`), so memory
        stays flat for large frames too.
        """
        raw = z * self.latent_scale.view(-1, 1, 1, 1) + self.latent_shift.view(-1, 1, 1, 1)
        t = raw.shape[2]
        if chunk is None or chunk >= t:
            return self.decode_tiles(raw, tile)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 latent frame, got {chunk}")
        f, ctx, parts = self.config.temporal_factor, self.decoder_context, []
        for start in range(0, t, chunk):
            lo = max(start - ctx, 0)
            out = self.decode_tiles(raw[:, :, lo:start + chunk], tile)
            # the first latent frame of a decode gives 1 frame, every later one f: skip the context's frames
            skip = 0 if lo == start else 1 + (start - lo - 1) * f
            parts.append(out[:, :, skip:])
        return torch.cat(parts, dim=2)

    def decode_tiles(self, raw: torch.Tensor, tile: Optional[int]) -> torch.Tensor:
        """Raw latent (B, Z, T', H', W') -> video, in `tile` x `tile` latent squares (None: whole) that overlap by a
        quarter, each decoded alone and cross-faded linearly into its neighbours over the overlap.

        Convolutions see the same inputs as in a whole-frame decode away from a tile's border (the cross-fade
        hides the border), but the decoder's group norms measure each tile alone: tiles agree with the whole
        decode to the degree a tile's statistics match the frame's (tests/models/test_autoencoder.py).
        """
        h, w = raw.shape[-2:]
        if tile is None or (tile >= h and tile >= w):
            return self.decoded(raw)
        if tile < 2:
            raise ValueError(f"tile must be >= 2 latent positions, got {tile}")
        s, overlap = self.config.spatial_factor, max(tile // 4, 1)
        ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
        out, total = None, raw.new_zeros(h * s, w * s)
        for y0 in ys:
            for x0 in xs:
                piece = self.decoded(raw[..., y0:y0 + tile, x0:x0 + tile])  # (B, C, T, th s, tw s)
                weight = torch.outer(_fade(y0, piece.shape[-2] // s, h, overlap, s, raw),
                                     _fade(x0, piece.shape[-1] // s, w, overlap, s, raw))  # (th s, tw s)
                if out is None:
                    out = piece.new_zeros(*piece.shape[:3], h * s, w * s)
                rows, cols = slice(y0 * s, y0 * s + piece.shape[-2]), slice(x0 * s, x0 * s + piece.shape[-1])
                out[..., rows, cols] += piece * weight
                total[rows, cols] += weight
        return out / total

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None, latent_noise: float = 0.0
                ) -> dict:
        """Training: video -> {"recon": decoded sample, "kl": (B,) KL to N(0, I) per clip (0 if not variational)}.
        latent_noise > 0 adds Gaussian noise of std u * latent_noise * (the batch's per-channel latent std) to the
        latent before decoding, u uniform in [0, 1] per clip: the decoder learns to decode imperfect latents."""
        mean, log_var = self.moments(x)  # (B, Z, t, h, w) each
        z, kl = mean, mean.new_zeros(mean.shape[0])
        if log_var is not None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z, kl = mean + (0.5 * log_var).exp() * noise, gaussian_kl(mean, log_var)
        if latent_noise > 0:
            std = mean.detach().float().transpose(0, 1).flatten(1).std(1).to(z.dtype)  # (Z,) the batch's spread
            u = torch.rand(z.shape[0], 1, 1, 1, 1, generator=generator, device=z.device, dtype=z.dtype)  # (B,)
            eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + latent_noise * u * std.view(-1, 1, 1, 1) * eps
        return {"recon": self.decoded(z), "kl": kl}


def init_shortcut(autoencoder: VideoAutoencoder, clips: torch.Tensor) -> None:
    """Start the linear shortcut at the principal components of `clips`' (N, C, T, H, W) pixel squares: the latent
    mean is then their leading PCA coefficients and the way back the best linear reconstruction from those."""
    cfg = autoencoder.config
    if autoencoder.shortcut_in is None:
        raise ValueError("init_shortcut needs an autoencoder with autoencoder.shortcut true")
    s, z = cfg.spatial_factor, cfg.latent_channels
    patches = rearrange(clips.float(), "n c t (h p) (w q) -> (n t h w) (c p q)", p=s, q=s)  # (P, C s s)
    mean = patches.mean(0)
    _, _, components = torch.linalg.svd(patches - mean, full_matrices=False)  # (C s s, C s s), by variance
    basis = patches.new_zeros(z, patches.shape[1])
    basis[:min(z, len(components))] = components[:z]  # more latent channels than components: the rest start at 0
    with torch.no_grad():
        autoencoder.shortcut_in.weight.copy_(basis.view(*basis.shape, 1, 1, 1))
        autoencoder.shortcut_in.bias.copy_(-(basis @ mean))
        autoencoder.shortcut_out.weight.copy_(basis.T.reshape(*basis.T.shape, 1, 1, 1))
        autoencoder.shortcut_out.bias.copy_(mean)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` positions start on an axis of `size`, overlapping by >= `overlap`, the last at the end."""
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _fade(start: int, length: int, size: int, overlap: int, scale: int, like: torch.Tensor) -> torch.Tensor:
    """A tile's weight along one axis in pixels (length x scale,): 1 inside, rising linearly over the overlap on
    the sides where another tile lies (none at the frame's edges)."""
    n, ramp = length * scale, overlap * scale
    weight = like.new_ones(n)
    rise = (torch.arange(ramp, device=like.device, dtype=like.dtype) + 0.5) / ramp
    if start > 0:
        weight[:ramp] = rise
    if start + length < size:
        weight[n - ramp:] = torch.minimum(weight[n - ramp:], rise.flip(0))
    return weight


class PatchDiscriminator(nn.Module):
    """Per frame: strided convolutions to a grid of real / fake logits, one per patch (B, C, T, H, W) -> (B, T, h, w)."""

    def __init__(self, in_channels: int, width: int = 32, groups: int = 8):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.GroupNorm(groups, 2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, padding=1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b = video.shape[0]
        logits = self.net(rearrange(video, "b c t h w -> (b t) c h w"))
        return rearrange(logits, "(b t) 1 h w -> b t h w", b=b)


def latent_shape(cfg: AutoencoderConfig, channels: int, frames: int, height: int, width: int
                 ) -> tuple[int, int, int, int]:
    """(Z, T', H', W') of the latent of a (C, T, H, W) clip under `cfg`; a ValueError naming what does not fit."""
    if channels != cfg.in_channels:
        raise ValueError(f"this autoencoder takes {cfg.in_channels}-channel video, got {channels} channels")
    if height % cfg.spatial_factor or width % cfg.spatial_factor:
        raise ValueError(f"H and W must be multiples of the spatial factor {cfg.spatial_factor}, got {height} x "
                         f"{width}")
    return cfg.latent_channels, cfg.latent_frames(frames), height // cfg.spatial_factor, width // cfg.spatial_factor


# ---- frames: which pixel frames each latent frame stands for ----


def latent_frame_span(latent_frame: int, temporal_factor: int) -> range:
    """The pixel frames latent frame j stands for: frame 0 for j = 0, frames 1 + (j - 1) f .. j f for j >= 1.

    The one statement of the layout (the encoder reads the first frame alone, then groups f frames);
    every pixel <-> latent frame question in kinema is answered through it.
    """
    if latent_frame < 0 or temporal_factor < 1:
        raise ValueError(f"latent frame {latent_frame} / temporal factor {temporal_factor}: expected j >= 0, f >= 1")
    if latent_frame == 0:
        return range(0, 1)
    return range(1 + (latent_frame - 1) * temporal_factor, 1 + latent_frame * temporal_factor)


def given_latent_frames(given: Iterable[int], temporal_factor: int) -> list[int]:
    """The latent frames (ascending) all of whose pixel frames are in `given` (pixel positions): the given ones."""
    given = set(given)
    out, j, last = [], 0, max(given, default=-1)
    while latent_frame_span(j, temporal_factor).start <= last:
        if set(latent_frame_span(j, temporal_factor)) <= given:
            out.append(j)
        j += 1
    return out


def whole_latent_prefix(frames: int, temporal_factor: int) -> int:
    """The most frames from frame 0 on, at most `frames` (>= 1), that fill whole latent frames: 1 + a multiple of f."""
    return latent_frame_span(given_latent_frames(range(frames), temporal_factor)[-1], temporal_factor).stop


def latent_frame_count(spec, num_frames: int, what: str = "num_frames") -> int:
    """Latent frames of a clip of `num_frames` frames under an autoencoder's spec (`AutoencoderConfig.latent_frames`);
    a ValueError naming `what` and the counts that fit."""
    if spec.temporal_factor == 1:
        return num_frames
    try:
        return spec.latent_frames(num_frames)  # time compresses in kinema's own autoencoders only
    except ValueError as err:
        raise ValueError(f"{what} = {num_frames} does not fit the autoencoder: {err}") from err


def frame_pooling(num_frames: int, temporal_factor: int) -> torch.Tensor:
    """(T', T) weights: row j averages the pixel frames latent frame j stands for (frame-aligned conditions)."""
    spans = []
    while not spans or spans[-1].stop < num_frames:
        spans.append(latent_frame_span(len(spans), temporal_factor))
    if spans[-1].stop != num_frames:
        raise ValueError(f"{num_frames} frames do not fill whole latent frames at temporal factor "
                         f"{temporal_factor}: a clip has 1 + a multiple of {temporal_factor} frames")
    weights = torch.zeros(len(spans), num_frames)
    for j, span in enumerate(spans):
        weights[j, span.start:span.stop] = 1 / len(span)
    return weights


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) summed over every latent element of each item: (B,)."""
    return 0.5 * (mean.square() + log_var.exp() - 1 - log_var).flatten(1).sum(dim=1)


@torch.no_grad()
def measure_latent_stats(autoencoder: VideoAutoencoder, clips: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Set and return the latent's per-channel shift (mean) and scale (std) over `clips` (batches of video)."""
    total = total_sq = None
    count = 0
    for x in clips:
        mean, _ = autoencoder.moments(x)
        per_channel = rearrange(mean.double(), "b z t h w -> z (b t h w)")
        total = per_channel.sum(1) if total is None else total + per_channel.sum(1)
        total_sq = per_channel.square().sum(1) if total_sq is None else total_sq + per_channel.square().sum(1)
        count += per_channel.shape[1]
    if not count:
        raise ValueError("measure_latent_stats needs at least one clip")
    shift = total / count
    scale = (total_sq / count - shift.square()).clamp_min(1e-12).sqrt()
    autoencoder.latent_shift.copy_(shift.float())
    autoencoder.latent_scale.copy_(scale.float())
    return {"shift": autoencoder.latent_shift.clone(), "scale": autoencoder.latent_scale.clone()}


# ---- diffusers autoencoders ----

DIFFUSERS_CLASSES = ("AutoencoderKL", "AutoencoderKLCogVideoX", "AutoencoderKLWan")


@dataclass
class LatentSpec:
    """What kinema reads of a foreign autoencoder: its video channels, latent channels and compression."""

    in_channels: int
    latent_channels: int
    spatial_factor: int
    temporal_factor: int


class DiffusersAutoencoder(nn.Module):
    """A diffusers autoencoder (`AutoencoderKL` per frame, `AutoencoderKLCogVideoX`, `AutoencoderKLWan`) behind
    VideoAutoencoder's interface: video in [-1, 1] <-> latents normalised as diffusers' own pipelines do."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        name = type(vae).__name__
        if name not in DIFFUSERS_CLASSES:
            raise ValueError(f"a diffusers autoencoder of class {name} is not supported; kinema takes "
                             f"{', '.join(DIFFUSERS_CLASSES)}")
        self.vae, self.kind, c = vae, name, vae.config
        if name == "AutoencoderKL":
            spatial, temporal, latent = 2 ** (len(c.block_out_channels) - 1), 1, c.latent_channels
            mean, scale = [c.shift_factor or 0.0] * latent, [1 / c.scaling_factor] * latent
        elif name == "AutoencoderKLCogVideoX":  # time shrinks in the first log2(ratio) of the downsampling blocks
            spatial, latent = 2 ** (len(c.block_out_channels) - 1), c.latent_channels
            temporal = 2 ** min(int(c.temporal_compression_ratio).bit_length() - 1, len(c.block_out_channels) - 1)
            mean, scale = [0.0] * latent, [1 / c.scaling_factor] * latent
        else:
            spatial, temporal, latent = 2 ** (len(c.dim_mult) - 1), 2 ** sum(map(bool, c.temperal_downsample)), c.z_dim
            mean, scale = list(c.latents_mean), list(c.latents_std)
        self.config = LatentSpec(getattr(c, "in_channels", 3), latent, spatial, temporal)
        self.register_buffer("latent_shift", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("latent_scale", torch.tensor(scale, dtype=torch.float32))

    @property
    def per_frame(self) -> bool:
        """Whether the wrapped model is an image autoencoder applied to each frame."""
        return self.kind == "AutoencoderKL"

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video (B, C, T, H, W) -> the raw latent's mean and log variance (B, Z, T', H', W')."""
        b = x.shape[0]
        if self.per_frame:
            dist = self.vae.encode(rearrange(x, "b c t h w -> (b t) c h w")).latent_dist
            return tuple(rearrange(v, "(b t) z h w -> b z t h w", b=b) for v in (dist.mean, dist.logvar))
        dist = self.vae.encode(x).latent_dist
        return dist.mean, dist.logvar

    def encode(self, x: torch.Tensor, sample: bool = False, generator: Optional[torch.Generator] = None
               ) -> torch.Tensor:
        """Video -> the normalised latent diffusion sees (as diffusers' pipelines normalise it)."""
        mean, log_var = self.moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + (0.5 * log_var).exp() * noise
        return (z - self.latent_shift.view(-1, 1, 1, 1)) / self.latent_scale.view(-1, 1, 1, 1)

    def decode(self, z: torch.Tensor, chunk: Optional[int] = None, tile: Optional[int] = None) -> torch.Tensor:
        """Normalised latent -> video (B, C, T, H, W); an image autoencoder decodes `chunk` frames at a time."""
        if tile is not None:
            raise ValueError(f"tile={tile}: a diffusers autoencoder tiles with its own vae.enable_tiling(), "
                             "not kinema's decode tiles")
        raw = z * self.latent_scale.view(-1, 1, 1, 1) + self.latent_shift.view(-1, 1, 1, 1)
        if not self.per_frame:
            return self.vae.decode(raw).sample
        b, t = raw.shape[0], raw.shape[2]
        step = t if chunk is None else max(int(chunk), 1)
        parts = [self.vae.decode(rearrange(raw[:, :, s:s + step], "b z t h w -> (b t) z h w")).sample
                 for s in range(0, t, step)]
        return torch.cat([rearrange(p, "(b t) c h w -> b c t h w", b=b) for p in parts], dim=2)

    def describe(self) -> dict:
        """What a model directory records to rebuild the wrapped model: its class and diffusers config."""
        return {"diffusers": {"class": self.kind, "config": dict(self.vae.config)}}


def load_diffusers_autoencoder(path: str) -> DiffusersAutoencoder:
    """The diffusers autoencoder saved (save_pretrained) at `path`, wrapped; needs `pip install diffusers`."""
    try:
        import diffusers
    except ImportError as err:
        raise RuntimeError("model.autoencoder diffusers:PATH needs diffusers: pip install diffusers") from err
    import json
    from pathlib import Path

    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ValueError(f"diffusers:{path}: no config.json there; save the autoencoder with save_pretrained")
    name = json.loads(config_file.read_text()).get("_class_name")
    if name not in DIFFUSERS_CLASSES:
        raise ValueError(f"diffusers:{path} holds a {name!r}; kinema takes {', '.join(DIFFUSERS_CLASSES)}")
    return DiffusersAutoencoder(getattr(diffusers, name).from_pretrained(path)).eval()


def diffusers_from_record(record: dict) -> DiffusersAutoencoder:
    """A DiffusersAutoencoder rebuilt (weights not loaded) from what `describe` recorded."""
    import diffusers

    cls = getattr(diffusers, record["class"])
    return DiffusersAutoencoder(cls.from_config(record["config"]))
