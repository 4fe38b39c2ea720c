"""Small pieces of the training loop: process group, learning-rate factor, noise seeds, memory
format (the loss log is read and written by :mod:`neurodiff.artifacts`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..config import ModelConfig, TrainConfig
from ..device import resolve_device

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


def ema_avg_fn(decay: float, warmup: bool = False):
    """The EMA update for ``torch.optim.swa_utils.AveragedModel(multi_avg_fn=...)``.

    Without warm-up: torch's own ``get_ema_multi_avg_fn(decay)``. With warm-up, the n-th update
    uses ``min(decay, (1 + n) / (10 + n))`` (the schedule of TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``): early updates follow the fast-changing weights
    closely, so a short run's EMA does not keep its untrained start. Hand-written: torch's EMA
    helper has a fixed decay only.
    """
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    if not warmup:
        return get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(ema_params, current_params, num_averaged) -> None:
        n = int(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, current_params, 1.0 - d)
        else:
            for p_ema, p_model in zip(ema_params, current_params, strict=True):
                p_ema.copy_(p_ema * d + p_model * (1.0 - d))

    return update


def noise_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Seed of one micro-batch's noise and timesteps: a function of where it is in the run only,
    so that a resumed run draws exactly what the uninterrupted one would have drawn."""
    return (seed * 1_000_003 + step * 1009 + micro * 101 + rank) % (2**63 - 1)


def memory_format(model_cfg: ModelConfig, tcfg: TrainConfig) -> torch.memory_format:
    """``channels_last`` (3D: ``channels_last_3d``) when asked for, else contiguous."""
    if not tcfg.channels_last:
        return torch.contiguous_format
    return torch.channels_last if model_cfg.spatial_dims == 2 else torch.channels_last_3d
