"""Training: the Trainer, EMA and pickle-free checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .ema import ema_decay, ema_update
from .trainer import Trainer

__all__ = ["Trainer", "load_checkpoint", "save_checkpoint", "ema_decay", "ema_update"]
