"""The training loop of stage 3 (Ho et al. 2020, Algorithm 1) with everything around it.

:class:`Trainer` holds what one run needs -- model, EMA, optimiser, LR schedule, noise scheduler,
data, loss rows -- and has one method per thing the loop does: restore a checkpoint, take an
optimiser step, flush the loss read-outs, save a checkpoint or a preview.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..artifacts import (
    clear_previews,
    preview_path,
    read_loss_rows,
    write_loss_rows,
    write_train_config,
)
from ..checkpoints import (
    CHECKPOINT_FORMAT,
    latest_checkpoint,
    list_checkpoints,
    rng_state,
    rotate_checkpoints,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from ..config import ModelConfig, Params, TrainConfig
from ..device import autocast, precision_label, resolve_precision
from ..model import (
    ClassGuided,
    build_inferer,
    build_model,
    build_scheduler,
    count_parameters,
    diffusion_loss,
    estimate_train_flops,
    loss_weights,
    null_class,
    sample_timesteps,
)
from ..sampling import preview_samples
from ..viz import save_grid
from .augmentation import augmenter
from .data import ResumableSampler, batches, collate
from .helpers import Dist, ema_avg_fn, lr_factor, memory_format, noise_seed

__all__ = ["PREVIEW_IMAGES", "PREVIEW_STEPS", "TrainState", "Trainer"]

log = logging.getLogger(__name__)

#: Number of preview images (2D; volumes: 4, one at a time) and DDIM steps used for them.
PREVIEW_IMAGES = 16
PREVIEW_STEPS = 20
_FLUSH_EVERY = 10  # steps between loss read-outs (one device sync, one all-reduce under DDP)


@dataclass
class TrainState:
    """What a ``callback`` of :func:`neurodiff.train.train` sees after each optimiser step (on
    every process)."""

    step: int
    rank: int
    world_size: int
    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer


class Trainer:
    """One training run: built from the configs, optionally restored, then :meth:`fit`."""

    def __init__(
        self,
        params: Params,
        mcfg: ModelConfig,
        tcfg: TrainConfig,
        dataset: Dataset,
        train_dir: Path,
        dist_info: Dist,
        device: torch.device,
    ) -> None:
        from torch.optim.swa_utils import AveragedModel

        self.params, self.mcfg, self.tcfg = params, mcfg, tcfg
        self.dataset, self.train_dir, self.dist, self.device = dataset, train_dir, dist_info, device
        self.dtype = resolve_precision(tcfg.precision, device, training=True)
        self.fmt = memory_format(mcfg, tcfg)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")
        if dist_info.main and not tcfg.resume:  # a fresh start: no stale checkpoint may remain
            for _, old in list_checkpoints(train_dir):
                old.unlink()
            clear_previews(train_dir)
        seed_everything(tcfg.generator_rng_seed)
        flash = {"on": True, "off": False}.get(tcfg.flash_attention, device.type == "cuda")
        self.model = build_model(mcfg, flash_attention=flash)
        self.model = self.model.to(device=device, memory_format=self.fmt)
        self.ema = AveragedModel(
            self.model, multi_avg_fn=ema_avg_fn(tcfg.ema_decay, tcfg.ema_warmup), use_buffers=True
        )
        opt_cls = torch.optim.AdamW if tcfg.optimizer == "adamw" else torch.optim.Adam
        opt_kwargs: dict[str, Any] = {"lr": tcfg.lr, "weight_decay": tcfg.weight_decay}
        if tcfg.fused_optimizer and device.type in ("cuda", "cpu"):  # ~4x faster on CPU
            opt_kwargs["fused"] = True
        self.optimizer = opt_cls(self.model.parameters(), **opt_kwargs)
        self.lr_sched = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, tcfg)
        )
        self.scheduler = build_scheduler(mcfg)
        self.inferer = build_inferer(self.scheduler)
        self.augment = augmenter(tcfg.train_augment, mcfg.spatial_dims, mcfg.image_size)
        self.start = 0
        self.resumed = False
        self.rows: list[dict[str, float]] = []
        self.n_params = count_parameters(self.model)
        world = dist_info.world_size
        self.flops_step = estimate_train_flops(mcfg, tcfg.batch_size) * tcfg.grad_accum * world
        self.effective_batch = tcfg.batch_size * world * tcfg.grad_accum

    # -- state ---------------------------------------------------------------------------------

    def restore(self, ckpt: dict[str, Any] | None) -> None:
        """Continue from ``ckpt`` (weights, EMA, optimiser, LR schedule, RNG, loss rows)."""
        if ckpt is None:
            return
        self.start, self.resumed = int(ckpt["step"]), True
        self.model.load_state_dict(ckpt["model"])
        self.ema.module.load_state_dict(ckpt["ema"])
        self.ema.n_averaged.fill_(int(ckpt.get("ema_updates", 0)))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.lr_sched.load_state_dict(ckpt["lr_scheduler"])
        set_rng_state(ckpt["rng"])
        written_by = int(ckpt.get("world_size", self.dist.world_size))
        if written_by != self.dist.world_size and self.dist.main:
            log.warning(
                "resuming at step %d a checkpoint written by %d process(es) with %d: weights, EMA, "
                "optimiser and schedule continue exactly; the effective batch is now %d and the "
                "order of the data differs from a run that was never interrupted",
                self.start,
                written_by,
                self.dist.world_size,
                self.effective_batch,
            )
        if self.dist.main:
            self.rows = read_loss_rows(self.train_dir, self.start)
            changed = [
                k
                for k, v in self.tcfg.to_dict().items()
                if k not in ("resume",) and ckpt["train_config"].get(k) != v
            ]
            if changed:
                log.warning(
                    "resuming from a checkpoint written with other training parameters: %s",
                    ", ".join(
                        f"{k}={ckpt['train_config'].get(k)!r}->{getattr(self.tcfg, k)!r}"
                        for k in changed
                    ),
                )

    def summary(self) -> dict[str, Any]:
        """Device, precision, batch sizes and cost, as logged and written to ``config.json``."""
        return {
            "device": str(self.device),
            "precision": precision_label(self.dtype),
            "world_size": self.dist.world_size,
            "batch_size": self.tcfg.batch_size,
            "grad_accum": self.tcfg.grad_accum,
            "effective_batch": self.effective_batch,
            "parameters": self.n_params,
            "flops_per_step": self.flops_step,
            "training_images": len(self.dataset),  # type: ignore[arg-type]
        }

    def announce(self) -> None:
        """The banner line (effective batch, device, cost) and ``config.json`` (main process)."""
        if not self.dist.main:
            return
        t, s = self.tcfg, self.summary()
        log.info(
            "training on %s with %s: per-rank batch %d x world size %d x accumulation %d = "
            "effective batch %d; %.2f M parameters, %.1f GFLOP/step; %d training images; "
            "steps %d -> %d",
            self.device,
            s["precision"],
            t.batch_size,
            s["world_size"],
            t.grad_accum,
            s["effective_batch"],
            self.n_params / 1e6,
            self.flops_step / 1e9,
            s["training_images"],
            self.start,
            t.train_steps,
        )
        write_train_config(
            self.train_dir,
            {
                "params": self.params.to_dict(),
                "params_hash": self.params.hash(),
                "model_config": self.mcfg.to_dict(),
                "model_config_hash": self.mcfg.hash(),
                "train_config": t.to_dict(),
                "train_config_hash": t.hash(),
                **s,
            },
        )

    # -- outputs -------------------------------------------------------------------------------

    def save_checkpoint(self, step: int) -> None:
        """A checkpoint of everything an exact resume needs, then rotation."""
        ema, model = self.ema, self.model
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": model.state_dict(),
            "ema": ema.module.state_dict() if int(ema.n_averaged) > 0 else model.state_dict(),
            "ema_updates": int(ema.n_averaged),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_sched.state_dict(),
            "rng": rng_state(),
            "model_config": self.mcfg.to_dict(),
            "train_config": self.tcfg.to_dict(),
            "params_hash": self.params.hash(),
            "world_size": self.dist.world_size,
        }
        save_checkpoint(self.train_dir, step, state)
        rotate_checkpoints(self.train_dir, self.tcfg.keep_checkpoints)

    def save_preview(self, step: int) -> None:
        """A grid of a few DDIM samples from the EMA weights (the raw weights before any EMA);
        a class-conditional model's rows go through its groups in turn, from the same noise."""
        source = self.ema.module if int(self.ema.n_averaged) > 0 else self.model
        n = PREVIEW_IMAGES if self.mcfg.spatial_dims == 2 else 4
        groups = self.mcfg.groups
        models = [ClassGuided(source, i, null_class(self.mcfg)) for i in range(len(groups))] or [
            source
        ]
        per = max(1, n // len(models))
        images = torch.cat(
            [
                preview_samples(
                    m,
                    self.mcfg,
                    n=per,
                    steps=PREVIEW_STEPS,
                    seed=self.tcfg.generator_rng_seed,
                    device=self.device,
                    dtype=self.dtype,
                )
                for m in models
            ]
        )
        n = len(images)
        path = preview_path(self.train_dir, step)
        save_grid(images, path, value_range=(-1.0, 1.0), ncols=4 if n == 16 else None)

    def latest(self) -> Path | None:
        return latest_checkpoint(self.train_dir)

    # -- the loop ------------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        t, d = self.tcfg, self.dist
        sampler = ResumableSampler(
            self.dataset,
            num_replicas=d.world_size,
            rank=d.rank,
            shuffle=True,
            seed=t.generator_rng_seed,
            drop_last=True,
        )
        loader = DataLoader(
            self.dataset,
            batch_size=t.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=t.num_workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(t.generator_rng_seed),
        )
        return batches(loader, sampler, t.batch_size, self.start * t.grad_accum)

    def _step(self, net: nn.Module, data, noise_gen: torch.Generator, step: int):
        """One optimiser step over ``grad_accum`` micro-batches.

        Returns ``(loss, lr, grad norm, live)``: ``live`` holds the last micro-batch's tensors,
        which :meth:`fit` keeps until the next step has allocated its own (see there).
        """
        t, mcfg, device, world = self.tcfg, self.mcfg, self.device, self.dist.world_size
        shape = (t.batch_size, 1) + (mcfg.image_size,) * mcfg.spatial_dims
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(t.grad_accum):
            batch = next(data)
            x0, labels = batch if isinstance(batch, tuple) else (batch, None)
            x0 = x0.to(device, non_blocking=True).contiguous(memory_format=self.fmt)
            noise_gen.manual_seed(noise_seed(t.generator_rng_seed, step, micro, self.dist.rank))
            noise = torch.randn(shape, generator=noise_gen, device=device)
            ts = sample_timesteps(mcfg, t.batch_size, noise_gen, device)
            model_fn = net
            if mcfg.groups and labels is not None:  # drawn last: an unconditional run is as before
                labels = labels.to(device)
                drop = torch.rand(t.batch_size, generator=noise_gen, device=device)
                labels = torch.where(drop < mcfg.label_dropout, null_class(mcfg), labels)
                model_fn = functools.partial(net, class_labels=labels)
            if self.augment is not None:  # drawn after everything else: none changes nothing
                x0 = self.augment(x0, noise_gen).contiguous(memory_format=self.fmt)
            last_micro = micro == t.grad_accum - 1
            sync = net.no_sync() if (world > 1 and not last_micro) else contextlib.nullcontext()
            with sync:
                with autocast(device, self.dtype):
                    prediction = self.inferer(x0, model_fn, noise, ts)  # x_t ~ q(x_t|x_0), UNet
                weights = loss_weights(ts, self.scheduler, mcfg.loss_weighting, mcfg.snr_gamma)
                loss = diffusion_loss(prediction, x0, noise, ts, self.scheduler, mcfg.loss, weights)
                (loss / t.grad_accum).backward()
            step_loss += loss.detach() / t.grad_accum
        if t.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        else:
            grad_norm = torch.zeros((), device=device)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.lr_sched.step()
        return step_loss, lr, grad_norm.detach(), (x0, noise, ts, prediction, loss)

    def _flush(self, pending: list) -> float:
        """Read out the pending losses (one sync; averaged over ranks) into the loss rows."""
        import torch.distributed as dist

        values = torch.stack([torch.stack([p[1].float(), p[3].float()]) for p in pending])
        if self.dist.world_size > 1:
            dist.all_reduce(values)
            values /= self.dist.world_size
        for (s, _, lr_s, _, sec), (lv, gn) in zip(pending, values.tolist()):
            self.rows.append({"step": s, "loss": lv, "lr": lr_s, "grad_norm": gn, "seconds": sec})
        pending.clear()
        return self.rows[-1]["loss"] if self.rows else values[-1, 0].item()

    def fit(
        self, progress: bool, callback: Callable[[TrainState], None] | None
    ) -> tuple[int, float | None, float]:
        """Train from :attr:`start` to ``train_steps``; returns (step, last loss, seconds)."""
        steps = self.iterate(progress, callback)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def iterate(self, progress: bool = False, callback: Callable[[TrainState], None] | None = None):
        """:meth:`fit` one optimiser step at a time: a generator that yields the step number
        after each step and returns ``(step, last loss, seconds)``, so that a caller can train
        several models in turn (``benchmarks/recipes.py``)."""
        from torch.nn.parallel import DistributedDataParallel
        from tqdm.auto import tqdm

        t, main = self.tcfg, self.dist.main
        data = self._loader()
        net: nn.Module = self.model
        if t.compile:
            self.model.compile()
        if self.dist.world_size > 1:
            net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        noise_gen = torch.Generator(device=self.device)
        bar = tqdm(
            total=t.train_steps,
            initial=self.start,
            desc="train",
            unit="step",
            disable=not (main and progress),
            mininterval=1.0,
            dynamic_ncols=True,
        )
        pending: list[tuple[int, torch.Tensor, float, torch.Tensor, float]] = []
        t_start = time.perf_counter()
        t_offset = self.rows[-1]["seconds"] if self.rows else 0.0  # the log's clock continues
        t_other = 0.0  # seconds spent in checkpoints and previews, not training
        last_loss: float | None = self.rows[-1]["loss"] if self.rows else None
        self.model.train()
        step = self.start
        live = None
        while step < t.train_steps:
            # The previous step's batch tensors stay alive until this step has allocated its own
            # (``live``): freed any earlier, glibc hands their large blocks back to the system
            # and every step page-faults fresh memory in again -- 1.3x slower on the demo
            # (benchmarks/train_throughput.py), the same numbers.
            loss, lr, grad_norm, live = self._step(net, data, noise_gen, step)
            step += 1
            if step >= t.ema_start and step % t.ema_every == 0:
                self.ema.update_parameters(self.model)
            elapsed = t_offset + time.perf_counter() - t_start - t_other
            pending.append((step, loss, lr, grad_norm, elapsed))
            last = step == t.train_steps
            checkpoint_now = step % t.checkpoint_every == 0 or last
            preview_now = main and t.preview_every > 0 and (step % t.preview_every == 0 or last)
            if len(pending) >= _FLUSH_EVERY or checkpoint_now or last:
                last_loss = self._flush(pending)
                bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
            if main and (checkpoint_now or preview_now):
                t0 = time.perf_counter()
                if preview_now:
                    self.save_preview(step)
                if checkpoint_now:
                    self.save_checkpoint(step)
                    write_loss_rows(self.train_dir, self.rows)
                t_other += time.perf_counter() - t0
            bar.update(1)
            if callback is not None:
                callback(
                    TrainState(
                        step,
                        self.dist.rank,
                        self.dist.world_size,
                        self.model,
                        self.ema.module,
                        self.optimizer,
                    )
                )
            yield step
        bar.close()
        if main:
            write_loss_rows(self.train_dir, self.rows)
        return step, last_loss, time.perf_counter() - t_start - t_other
