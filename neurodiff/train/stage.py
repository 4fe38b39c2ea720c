"""Stage 3 itself: :func:`train` (arrays or a Dataset in, checkpoints out) and :func:`run`."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import artifacts
from ..checkpoints import latest_checkpoint, load_checkpoint
from ..config import ModelConfig, Params, TrainConfig
from ..errors import DataError
from ..io import shown_path
from ..model import class_labels
from ..registry import TRAIN
from ..runs import record_run
from .data import as_dataset, select_subjects
from .helpers import init_distributed
from .loop import Trainer, TrainState

__all__ = ["TrainResult", "run", "train"]


@dataclass
class TrainResult:
    """What one call of :func:`train` did."""

    train_dir: Path
    checkpoint: Path | None
    step: int
    steps_run: int
    resumed_from: int | None
    final_loss: float | None
    seconds: float
    images_per_second: float
    device: str
    precision: str
    world_size: int
    batch_size: int
    grad_accum: int
    parameters: int
    flops_per_step: int

    @property
    def effective_batch(self) -> int:
        """Images per optimiser step: per-rank batch x ranks x accumulation."""
        return self.batch_size * self.world_size * self.grad_accum

    def __str__(self) -> str:
        what = (
            f"trained {self.steps_run} steps ({self.step} in total)"
            if self.steps_run
            else f"reused the finished run of these parameters (step {self.step})"
        )
        if self.resumed_from is not None and self.steps_run:
            what += f", resumed from step {self.resumed_from}"
        loss = f"; final loss {self.final_loss:.4f}" if self.final_loss is not None else ""
        speed = (
            f"; {self.seconds:.0f} s, {self.images_per_second:.1f} images/s"
            if self.steps_run
            else ""
        )
        return (
            f"{what}{loss}{speed}\n"
            f"device {self.device}, {self.precision}, effective batch {self.effective_batch} "
            f"({self.batch_size} per rank x {self.world_size} rank(s) x {self.grad_accum} "
            f"accumulation), {self.parameters / 1e6:.2f} M parameters, "
            f"{self.flops_per_step / 1e9:.1f} GFLOP/step\n"
            f"checkpoint {shown_path(self.checkpoint)}\noutputs in {shown_path(self.train_dir)}"
        )


def train(
    params: Params,
    images: Any,
    out_dir: str | Path | None = None,
    *,
    labels: Any = None,
    progress: bool = True,
    callback: Callable[[TrainState], None] | None = None,
) -> TrainResult:
    """Train the diffusion model of ``params`` on ``images``.

    Parameters
    ----------
    params : Params
        The run's parameters (:class:`~neurodiff.config.ModelConfig` and
        :class:`~neurodiff.config.TrainConfig` fields are used).
    images : ndarray, Tensor or torch Dataset
        ``(N, 1, *spatial)`` float32 in [-1, 1], or a Dataset of ``(1, *spatial)`` items (tensors
        or ``{"image": tensor}`` dicts, e.g. a MONAI ``CacheDataset``).
    out_dir : path, optional
        Output folder; default :func:`neurodiff.artifacts.train_dir` of ``params``.
    labels : array of int, optional
        A class-conditional model's (``groups``) class label per image
        (:func:`neurodiff.model.class_labels`); not needed when the dataset items carry them.
    progress : bool
        Show a tqdm bar (main process only).
    callback : callable, optional
        Called on every process as ``callback(state)`` (a :class:`TrainState`) after every
        optimiser step, e.g. to stop early by raising, or to inspect the weights.

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        The images do not fit the model configuration, or there are fewer than one batch.
    CheckpointError
        ``resume`` is on and the latest checkpoint is corrupt or from another model configuration.
    """
    mcfg: ModelConfig = params.stage(ModelConfig)
    tcfg: TrainConfig = params.stage(TrainConfig)
    train_dir = Path(out_dir) if out_dir is not None else artifacts.train_dir(params)

    # Cheap checks first: data and checkpoint, before any process group or model exists.
    dataset = as_dataset(images, mcfg, labels)
    n_images = len(dataset)  # type: ignore[arg-type]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if n_images // max(world, 1) < tcfg.batch_size:
        raise DataError(
            f"the training set has {n_images} images, fewer than one batch: "
            f"batch_size={tcfg.batch_size} per process x {world} process(es) needs at "
            f"least {tcfg.batch_size * world}; lower batch_size or add data"
        )
    ckpt = None
    if tcfg.resume:
        latest = latest_checkpoint(train_dir)
        if latest is not None:
            ckpt = load_checkpoint(latest, expected_model_config=mcfg)

    dist_info, device = init_distributed(tcfg.device)
    keyed = out_dir is None and dist_info.main  # the run folder of these parameters: record it
    try:
        trainer = Trainer(params, mcfg, tcfg, dataset, train_dir, dist_info, device)
        trainer.restore(ckpt)
        trainer.announce()
        if trainer.start >= tcfg.train_steps:
            last = trainer.rows[-1]["loss"] if trainer.rows else None
            return _result(trainer, trainer.start, last, 0.0)
        if keyed:
            record_run(params, TRAIN, complete=False)
        step, loss, seconds = trainer.fit(progress, callback)
        if keyed:
            record_run(params, TRAIN, complete=step >= tcfg.train_steps)
        return _result(trainer, step, loss, seconds)
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _result(trainer: Trainer, step: int, loss: float | None, seconds: float) -> TrainResult:
    steps_run = step - trainer.start
    images = steps_run * trainer.effective_batch
    s = trainer.summary()
    return TrainResult(
        train_dir=trainer.train_dir,
        checkpoint=trainer.latest(),
        step=step,
        steps_run=steps_run,
        resumed_from=trainer.start if trainer.resumed else None,
        final_loss=loss,
        seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        device=s["device"],
        precision=s["precision"],
        world_size=s["world_size"],
        batch_size=s["batch_size"],
        grad_accum=s["grad_accum"],
        parameters=s["parameters"],
        flops_per_step=s["flops_per_step"],
    )


def run(params: Params) -> TrainResult | None:
    """``neurodiff train``: train on the preprocessed training split of ``params``' profile.

    Under ``torchrun`` only rank 0 returns the result (so that it is printed once); the other
    ranks return None.
    """
    images, index = artifacts.load_split(params, "train")
    images, index = select_subjects(images, index, params.train_subjects, params.seed)
    mcfg: ModelConfig = params.stage(ModelConfig)
    labels = None
    if mcfg.groups:
        source = str(artifacts.preprocessed_dir(params) / "train_index.tsv")
        labels = class_labels(index, mcfg, source)
    result = train(params, images, labels=labels)
    return result if int(os.environ.get("RANK", "0")) == 0 else None
