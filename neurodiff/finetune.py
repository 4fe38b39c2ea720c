"""Short in-memory fits of a diffusion model: chapter 6's pretraining and per-draw fine-tuning.

The training stage (:mod:`neurodiff.train`) trains one model for long, with checkpoints, exact
resume, previews and several processes. Chapter 6 fits many small models instead -- one generator
per draw, fine-tuned on that draw's few subjects -- where none of that applies and the images are
already in memory. This loop uses the same pieces as the stage (MONAI's UNet, scheduler and
inferer through :mod:`neurodiff.model`, the same loss, timestep sampling, label dropout and EMA
rule), so a fine-tuned generator is trained by the recipe of chapter 3; only the bookkeeping
differs.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .conditioning import null_class
from .config import ModelConfig
from .device import autocast, resolve_device, resolve_precision
from .model import (
    build_inferer,
    build_model,
    build_scheduler,
    diffusion_loss,
    loss_weights,
    sample_timesteps,
)

__all__ = ["FitSettings", "ema_avg_fn", "fit_diffusion"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """How one fit runs: ``steps`` AdamW steps of ``batch_size`` images at ``lr`` (linear warm-up
    over ``warmup`` steps, then cosine decay to 0), gradients clipped at ``grad_clip``, EMA of
    decay ``ema_decay`` with warm-up (a short fit's EMA must not keep its start)."""

    steps: int
    lr: float
    batch_size: int = 8
    warmup: int = 20
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    precision: str = "auto"
    device: str = "auto"


def _lr(step: int, s: FitSettings) -> float:
    if s.warmup and step < s.warmup:
        return (step + 1) / s.warmup
    progress = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fit_diffusion(
    cfg: ModelConfig,
    images: np.ndarray,
    labels: np.ndarray | None,
    settings: FitSettings,
    seed: int,
    init: dict[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Fit ``cfg``'s UNet to ``images`` (``(N, 1, *spatial)`` in [-1, 1]) and return its EMA
    weights as a model in ``eval()`` mode on the CPU.

    ``labels`` (``(N,)`` class indices into ``cfg.groups``) are used by a class-conditional model,
    each dropped to "no class" with probability ``cfg.label_dropout``; ``init`` (a state dict) is
    the starting point of a fine-tuning, else the weights are fresh. Every random draw (batches,
    noise, timesteps, dropout) comes from a generator seeded by ``seed``: the same call gives the
    same weights on the same machine.
    """
    from torch.optim.swa_utils import AveragedModel

    device = resolve_device(settings.device)
    dtype = resolve_precision(settings.precision, device, training=True)
    torch.manual_seed(seed)  # the fresh weights of a model without ``init``
    model = build_model(cfg).to(device)
    if init is not None:
        model.load_state_dict(init)
    ema = AveragedModel(
        model, multi_avg_fn=ema_avg_fn(settings.ema_decay, warmup=True), use_buffers=True
    )
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr(s, settings))
    scheduler = build_scheduler(cfg)
    inferer = build_inferer(scheduler)
    x_all = torch.as_tensor(np.asarray(images, dtype=np.float32))
    y_all = None if labels is None or not cfg.groups else torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    n, b = len(x_all), min(settings.batch_size, len(x_all))
    model.train()
    for _ in range(settings.steps):
        idx = torch.randint(0, n, (b,), generator=gen)
        x0 = x_all[idx].to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        ts = sample_timesteps(cfg, b, gen).to(device)
        fn = model
        if y_all is not None:
            y = y_all[idx]
            y = torch.where(torch.rand(b, generator=gen) < cfg.label_dropout, null_class(cfg), y)
            fn = functools.partial(model, class_labels=y.to(device))
        opt.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            prediction = inferer(x0, fn, noise, ts)
        weights = loss_weights(ts, scheduler, cfg.loss_weighting, cfg.snr_gamma)
        loss = diffusion_loss(prediction, x0, noise, ts, scheduler, cfg.loss, weights)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        sched.step()
        ema.update_parameters(model)
    return ema.module.cpu().eval()


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
