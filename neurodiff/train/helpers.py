"""Small pieces of the training loop: process group, learning-rate factor, noise seeds, memory
format (the loss log is read and written by :mod:`neurodiff.artifacts`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..config import ModelConfig, TrainConfig
from ..device import resolve_device
from ..finetune import ema_avg_fn  # the one EMA rule, shared with chapter 6's fits

__all__ = [
    "Dist",
    "ema_avg_fn",
    "init_distributed",
    "lr_factor",
    "memory_format",
    "noise_seed",
]


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, local rank, whether it owns the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), pick the device."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Dist(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend, device_id=device if device.type == "cuda" else None
        )
        owns = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """LR multiplier after ``step`` optimiser steps: linear warm-up, then cosine decay to 0 over
    the remaining steps (``lr_schedule=cosine``) or constant."""
    # Written out rather than taken from a library: MONAI's WarmupCosineSchedule starts the
    # warm-up at a factor of 0 (its first step does not train) and torch's
    # SequentialLR(LinearLR, CosineAnnealingLR) updates the factor recursively, so neither gives
    # this closed form step for step -- and a different factor would change every trained model.
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.train_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def noise_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Seed of one micro-batch's noise and timesteps: a function of where it is in the run only,
    so that a resumed run draws exactly what the uninterrupted one would have drawn."""
    return (seed * 1_000_003 + step * 1009 + micro * 101 + rank) % (2**63 - 1)


def memory_format(model_cfg: ModelConfig, tcfg: TrainConfig) -> torch.memory_format:
    """``channels_last`` (3D: ``channels_last_3d``) when asked for, else contiguous."""
    if not tcfg.channels_last:
        return torch.contiguous_format
    return torch.channels_last if model_cfg.spatial_dims == 2 else torch.channels_last_3d
