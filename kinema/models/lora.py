"""Low-rank adapters (LoRA, Hu et al. 2021) on the UNet's linear and convolution layers.

An adapter adds `scale * alpha / rank * up(down(x))` to a layer's output, with `down` a layer of the
same kind (a convolution keeps its kernel, stride and padding) into `rank` channels and `up` a
1-wide map back, zero-initialised: a fresh adapter changes nothing. The update lives beside the
layer (`layer.lora[name]`, called from a forward hook), so the base weights keep their state-dict
keys and stay frozen; `merge` folds an adapter into the base weight for sampling speed.

Why not `peft`: kinema's convolutions are its own `Conv3d` subclass (oneDNN routing, GEMM weight
gradients) and the adapter has to keep those kernels, sit in Accelerate / DDP / EMA like any other
parameter and travel as safetensors; the module below is all of it, with no extra dependency.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from ..config import LORA_TARGETS
from .kernels import Conv3d
from .layers import CrossAttention, ResBlock, SpatialAttention, TemporalAttention

# which layers each target name covers (attribute names inside the blocks)
TARGETS = {
    "attention": ((SpatialAttention, ("qkv", "proj")), (TemporalAttention, ("qkv", "proj")),
                  (CrossAttention, ("q", "kv", "proj"))),
    "conv": ((ResBlock, ("conv1", "conv2")),),  # the per-frame 3x3 convolutions
    "temporal": ((ResBlock, ("time1", "time2")),),  # the convolutions across frames
    "film": ((ResBlock, ("film",)),),  # the step / condition modulation
}
assert tuple(TARGETS) == LORA_TARGETS, "finetune.lora_targets and the layers they name must agree"


class LoRA(nn.Module):
    """One low-rank update of one layer: (the layer's input) -> the update of its output."""

    def __init__(self, layer: nn.Module, rank: int, alpha: float):
        super().__init__()
        if isinstance(layer, nn.Linear):
            self.down = nn.Linear(layer.in_features, rank, bias=False)
            self.up = nn.Linear(rank, layer.out_features, bias=False)
        elif isinstance(layer, nn.Conv3d):
            if layer.groups != 1:
                raise ValueError(f"LoRA needs an ungrouped convolution, got groups={layer.groups}")
            self.down = Conv3d(layer.in_channels, rank, layer.kernel_size, stride=layer.stride,
                               padding=layer.padding, dilation=layer.dilation, bias=False)
            self.up = Conv3d(rank, layer.out_channels, 1, bias=False)
        else:
            raise TypeError(f"LoRA adapts nn.Linear and nn.Conv3d layers, got {type(layer).__name__}")
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.rank, self.alpha = rank, alpha
        self.scale = 1.0  # the user's adapter scale; the update is scale * alpha / rank * up(down(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The update of the layer's output for input x."""
        return self.up(self.down(x)) * (self.scale * self.alpha / self.rank)

    def delta_weight(self) -> torch.Tensor:
        """The update as a weight of the layer's shape: scale * alpha / rank * up @ down."""
        up = self.up.weight.reshape(self.up.weight.shape[0], self.rank)  # (out, r)
        down = self.down.weight  # (r, in) or (r, in, kt, kh, kw)
        delta = torch.einsum("or,r...->o...", up.float(), down.float())
        return delta * (self.scale * self.alpha / self.rank)


def _apply_adapters(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the layer's output plus every adapter's update (a scale 0 adapter is skipped)."""
    for lora in layer.lora.values():
        if lora.scale != 0:
            output = output + lora(inputs[0]).to(output.dtype)
    return output


def target_layers(model: nn.Module, targets: Iterable[str]) -> dict[str, nn.Module]:
    """{qualified name: layer} of the layers `targets` ("attention", "conv", "temporal", "film") name in `model`."""
    targets = tuple(targets)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown or not targets:
        raise ValueError(f"LoRA targets {unknown or list(targets)} are not known; choose from {sorted(TARGETS)}")
    kinds = [kind for t in targets for kind in TARGETS[t]]
    found = {}
    for name, module in model.named_modules():
        for cls, attrs in kinds:
            if isinstance(module, cls):
                for attr in attrs:
                    found[f"{name}.{attr}" if name else attr] = getattr(module, attr)
    return found


def add_adapter(model: nn.Module, name: str, *, rank: int, alpha: float | None = None,
                targets: Iterable[str] = ("attention", "conv", "film")) -> list[str]:
    """Give every target layer of `model` an adapter `name` (zero update); returns the adapted layers' names."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    if not name.isidentifier():
        raise ValueError(f"adapter name must be an identifier, got {name!r}")
    layers = target_layers(model, targets)
    for layer in layers.values():
        if not hasattr(layer, "lora"):
            layer.lora = nn.ModuleDict()
            layer.register_forward_hook(_apply_adapters)
        if name in layer.lora:
            raise ValueError(f"the model already has an adapter named {name!r}")
        param = next(layer.parameters())
        layer.lora[name] = LoRA(layer, rank, float(alpha or rank)).to(param.device)
    return list(layers)


def adapters(model: nn.Module) -> dict[str, dict[str, LoRA]]:
    """{adapter name: {layer name: LoRA}} of every adapter in `model`."""
    out: dict[str, dict[str, LoRA]] = {}
    for layer_name, module in model.named_modules():
        if isinstance(getattr(module, "lora", None), nn.ModuleDict):
            for name, lora in module.lora.items():
                out.setdefault(name, {})[layer_name] = lora
    return out


def set_scale(model: nn.Module, name: str, scale: float) -> None:
    """Set adapter `name`'s scale (0 switches it off, 1 is as trained)."""
    found = adapters(model).get(name)
    if not found:
        raise ValueError(f"no adapter named {name!r} (the model has {sorted(adapters(model)) or 'none'})")
    for lora in found.values():
        lora.scale = float(scale)


@torch.no_grad()
def merge(model: nn.Module, name: str) -> None:
    """Fold adapter `name` into the base weights at its current scale and remove it (faster sampling)."""
    found = adapters(model).get(name)
    if not found:
        raise ValueError(f"no adapter named {name!r} (the model has {sorted(adapters(model)) or 'none'})")
    modules = dict(model.named_modules())
    for layer_name, lora in found.items():
        layer = modules[layer_name]
        layer.weight.add_(lora.delta_weight().to(layer.weight.dtype))
        del layer.lora[name]


def adapter_state(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The weights of adapter `name` only: {"<layer>.lora.<name>.down.weight": ..., ...}."""
    marker = f".lora.{name}."
    return {k: v for k, v in model.state_dict().items() if marker in k}


def freeze_base(model: nn.Module) -> int:
    """Freeze every parameter of `model` but its adapters'; returns the number left trainable."""
    trainable = 0
    for key, p in model.named_parameters():
        p.requires_grad_(".lora." in key)
        trainable += p.numel() if p.requires_grad else 0
    return trainable
