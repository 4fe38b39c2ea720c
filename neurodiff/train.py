"""Stage 3: train the DDPM (``neurodiff train``, also under ``torchrun`` for several GPUs).

One training step (Ho et al. 2020, Algorithm 1): draw clean images x0 from the training set, a
timestep t ~ U{0..T-1} and noise eps ~ N(0, I) per image, noise the images with the forward process
q(x_t | x_0) (MONAI's ``DiffusionInferer``), let the UNet predict eps (or v, or x0) and take an
optimiser step on the L1/L2 error. Around that loop:

- **optimiser** Adam or AdamW, linear learning-rate warm-up then cosine decay (or constant),
  gradient clipping and gradient accumulation;
- **EMA** of the weights (``torch.optim.swa_utils.AveragedModel``), updated every ``ema_every``
  steps from step ``ema_start``; the EMA weights are what the sampler uses;
- **precision** bf16 autocast on CUDA, and on CPUs with native bf16 arithmetic
  (``precision=auto``); ``fp32`` forces full precision; optional ``torch.compile`` and
  ``channels_last``;
- **checkpoints** every ``checkpoint_every`` steps and at the end, written atomically and rotated
  (``keep_checkpoints``). ``resume=true`` continues from the latest one *exactly*: the data order
  depends only on (seed, epoch) and each step's noise and timesteps only on (seed, step, rank), so
  a run killed and resumed ends with the same weights as an uninterrupted one;
- **outputs** in ``params.stage_dir("train")``: ``checkpoints/step-XXXXXXX.pt``, ``loss.csv``
  (step, loss, lr, grad_norm), ``previews/step-XXXXXXX.png`` (a few DDIM steps from the EMA
  weights) and ``config.json``.

Several processes (``torchrun --nproc_per_node=N -m neurodiff train --profile P``) train with
PyTorch DDP: NCCL on GPUs, gloo on CPU; each process draws its own ``batch_size`` images through a
``DistributedSampler``; rank 0 alone logs, shows the progress bar and writes files. The
**effective batch** of one optimiser step is ``batch_size x world size x grad_accum``.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .config import ModelConfig, Params, TrainConfig
from .device import autocast, resolve_device, resolve_precision
from .errors import CheckpointError, DataError
from .io import atomic_path, atomic_write_json, atomic_write_text
from .model import (
    build_inferer,
    build_model,
    build_scheduler,
    count_parameters,
    diffusion_loss,
    estimate_train_flops,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainResult",
    "TrainState",
    "latest_checkpoint",
    "load_checkpoint",
    "load_ema_model",
    "preview_samples",
    "read_loss_log",
    "run",
    "train",
    "training_precision",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "neurodiff-checkpoint/1"
_CHECKPOINT_KEYS = (
    "format",
    "step",
    "model",
    "ema",
    "optimizer",
    "lr_scheduler",
    "rng",
    "model_config",
    "train_config",
    "params_hash",
)
_CHECKPOINT_RE = re.compile(r"^step-(\d{7,})\.pt$")
#: Number of preview images (2D; volumes: 4, one at a time) and DDIM steps used for them.
PREVIEW_IMAGES = 16
PREVIEW_STEPS = 20
_LOSS_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds")
_FLUSH_EVERY = 10  # steps between loss read-outs (one device sync, one all-reduce under DDP)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


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
            else f"nothing to do: the checkpoint is at step {self.step} already"
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
            f"checkpoint {self.checkpoint}\noutputs in {self.train_dir}"
        )


@dataclass
class TrainState:
    """What a ``callback`` of :func:`train` sees after each optimiser step (on every process)."""

    step: int
    rank: int
    world_size: int
    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_path(train_dir: str | Path, step: int) -> Path:
    """``<train_dir>/checkpoints/step-XXXXXXX.pt``."""
    return Path(train_dir) / "checkpoints" / f"step-{step:07d}.pt"


def _checkpoints(train_dir: str | Path) -> list[tuple[int, Path]]:
    folder = Path(train_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CHECKPOINT_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(train_dir: str | Path) -> Path | None:
    """The checkpoint of the highest step in ``<train_dir>/checkpoints/``, or None if there is none.

    Temporary files of an interrupted write (names starting with a dot) are never returned.
    """
    found = _checkpoints(train_dir)
    return found[-1][1] if found else None


def _config_dict(cfg: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, ModelConfig):
        return cfg.to_dict()
    return ModelConfig.from_params(cfg).to_dict()


def load_checkpoint(
    path: str | Path,
    expected_model_config: ModelConfig | Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Read a training checkpoint safely (``torch.load(..., weights_only=True)``).

    Parameters
    ----------
    path : str or Path
        A ``step-XXXXXXX.pt`` file written by :func:`train`.
    expected_model_config : ModelConfig or mapping, optional
        If given, the checkpoint's model configuration must equal it.
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    dict
        ``format``, ``step``, ``model``, ``ema``, ``optimizer``, ``lr_scheduler``, ``rng``,
        ``model_config``, ``train_config``, ``params_hash`` (see CONTRIBUTING.md).

    Raises
    ------
    CheckpointError
        The file is missing, unreadable (corrupt, truncated, not a checkpoint), of another format,
        or was written for another model configuration (the differing fields are named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read: it is corrupt, truncated "
            f"or not a neurodiff checkpoint ({msg})",
            path=path,
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {found!r}; expected {CHECKPOINT_FORMAT!r}",
            path=path,
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is incomplete: missing {missing}", path=path
        )
    if expected_model_config is not None:
        expected = _config_dict(expected_model_config)
        found_cfg = ckpt["model_config"]
        diffs = [
            f"{k}: checkpoint has {found_cfg.get(k)!r}, expected {v!r}"
            for k, v in expected.items()
            if found_cfg.get(k) != v
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written for another model configuration "
                f"({'; '.join(diffs)}). Use the parameters it was trained with, or start a new "
                "training with resume=false (removes the old checkpoints)",
                path=path,
            )
    return ckpt


def load_ema_model(
    params_or_train_dir: Params | str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelConfig, Path]:
    """The EMA weights of the latest checkpoint in a UNet, ready for sampling.

    Parameters
    ----------
    params_or_train_dir : Params or path
        ``Params``: the checkpoint must match ``params``' model configuration and is looked up in
        ``params.stage_dir("train")``; a path: a train folder or a checkpoint file, whose own
        model configuration is used.
    device : str or torch.device
        Where the model goes (``eval()`` mode).

    Returns
    -------
    (model, model_config, checkpoint_path)
    """
    expected: ModelConfig | None = None
    if isinstance(params_or_train_dir, Params):
        train_dir = params_or_train_dir.stage_dir("train")
        expected = params_or_train_dir.stage(ModelConfig)
        path = latest_checkpoint(train_dir)
    else:
        p = Path(params_or_train_dir)
        train_dir, path = (p.parent.parent, p) if p.suffix == ".pt" else (p, latest_checkpoint(p))
    if path is None:
        raise CheckpointError(
            f"no checkpoint in {str(Path(train_dir) / 'checkpoints')!r}; train "
            "first (`neurodiff train --profile <profile>`)",
            path=train_dir,
        )
    ckpt = load_checkpoint(path, expected_model_config=expected)
    cfg = ModelConfig.from_params(ckpt["model_config"])
    model = build_model(cfg, flash_attention=torch.device(device).type == "cuda")
    try:
        model.load_state_dict(ckpt["ema"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: the EMA weights do not fit the model "
            f"({str(exc).splitlines()[0]})",
            path=path,
        ) from None
    return model.to(device).eval(), cfg, path


# RNG states as tensors (so that weights_only=True loading accepts them).


def _rng_state() -> dict[str, torch.Tensor]:
    # numpy's legacy global RNG is saved (not used by neurodiff) for code that draws from it
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([np_pos, np_has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_gauss], dtype=torch.float64),
        "python_state": torch.tensor(py_state, dtype=torch.int64),
        "python_meta": torch.tensor([py_version], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [math.nan if py_gauss is None else py_gauss], dtype=torch.float64
        ),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda{i}"] = s
    return state


def _set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    pos, has_gauss = (int(v) for v in state["numpy_meta"])
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            pos,
            has_gauss,
            float(state["numpy_gauss"][0]),
        )
    )
    gauss = float(state["python_gauss"][0])
    random.setstate(
        (
            int(state["python_meta"][0]),
            tuple(int(v) for v in state["python_state"]),
            None if math.isnan(gauss) else gauss,
        )
    )
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda{i}" in state:
                torch.cuda.set_rng_state(state[f"cuda{i}"].cpu(), i)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (the legacy global RNG, for third-party code)
    torch.manual_seed(seed)  # also seeds every CUDA device


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


class _ArrayDataset(Dataset):
    """``(N, 1, *spatial)`` images as a Dataset of ``(1, *spatial)`` float32 tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _item_tensor(item: Any) -> torch.Tensor:
    """A dataset item as a tensor: a tensor/array, a MONAI-style ``{"image": ...}``, or a tuple."""
    if isinstance(item, Mapping):
        item = item["image"]
    elif isinstance(item, tuple | list):
        item = item[0]
    return torch.as_tensor(item)


def _collate(items: list[Any]) -> torch.Tensor:
    return torch.stack([_item_tensor(x).float() for x in items])


def _as_dataset(images: Any, cfg: ModelConfig) -> Dataset:
    """Validate training images against the model configuration; return a Dataset."""
    expected = (1,) + (cfg.image_size,) * cfg.spatial_dims
    if isinstance(images, np.ndarray | torch.Tensor):
        arr = torch.as_tensor(images)
        if tuple(arr.shape[1:]) != expected:
            raise DataError(
                f"training images must have shape (N, {', '.join(map(str, expected))}) "
                f"for spatial_dims={cfg.spatial_dims}, image_size={cfg.image_size}; "
                f"got {tuple(arr.shape)}"
            )
        if not arr.is_floating_point():
            raise DataError(f"training images must be floating point in [-1, 1]; got {arr.dtype}")
        arr = arr.float()
        if arr.numel() and not torch.isfinite(arr).all():
            raise DataError("training images contain NaN or infinite values")
        if arr.numel() and (arr.min() < -1.001 or arr.max() > 1.001):
            raise DataError(
                f"training images must be scaled to [-1, 1]; found values in "
                f"[{arr.min().item():.3g}, {arr.max().item():.3g}]"
            )
        return _ArrayDataset(arr)
    if isinstance(images, Dataset):
        if len(images) > 0:  # type: ignore[arg-type]
            shape = tuple(_item_tensor(images[0]).shape)
            if shape != expected:
                raise DataError(
                    f"training dataset items must have shape {expected} for "
                    f"spatial_dims={cfg.spatial_dims}, image_size={cfg.image_size}; "
                    f"got {shape}"
                )
        return images
    raise DataError(
        f"training images must be an array (N, 1, *spatial) or a torch Dataset; "
        f"got {type(images).__name__}"
    )


class _ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch part-way through.

    torch's samplers always start an epoch at its beginning; an exact resume needs to skip the
    batches of the current epoch that were already used. The order itself is the parent's
    (a permutation seeded by seed + epoch), so it is the same before and after a resume.
    """

    skip: int = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def _batches(loader: DataLoader, sampler: _ResumableSampler, batch_size: int, first_micro: int):
    """Endless micro-batches, starting at micro-batch ``first_micro`` of the whole run."""
    per_epoch = sampler.num_samples // batch_size
    epoch, offset = divmod(first_micro, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        sampler.skip = offset * batch_size
        yield from loader
        epoch, offset = epoch + 1, 0


# ---------------------------------------------------------------------------------------------
# Distributed set-up
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_name: str) -> tuple[_Dist, torch.device]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1), pick the device."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return _Dist(), resolve_device(device_name)
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
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def training_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype used for training (None = fp32).

    ``auto``: bf16 on CUDA, and on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), where
    ``benchmarks/train_throughput.py`` measured it about 1.8x faster than fp32 with the same loss;
    fp32 elsewhere (MPS, older CPUs, where bf16 is emulated and slow).
    """
    if precision == "auto" and device.type == "cpu":
        return torch.bfloat16 if _cpu_has_native_bf16() else None
    return resolve_precision(precision, device)


def _cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch or a non-x86 CPU
        return False


def _precision_label(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else "bf16 autocast"


# ---------------------------------------------------------------------------------------------
# Learning rate, noise, previews, loss log
# ---------------------------------------------------------------------------------------------


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """LR multiplier after ``step`` optimiser steps: linear warm-up, then cosine decay to 0 over
    the remaining steps (``lr_schedule=cosine``) or constant."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.train_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _noise_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """Seed of one micro-batch's noise and timesteps: a function of where it is in the run only,
    so that a resumed run draws exactly what the uninterrupted one would have drawn."""
    return (seed * 1_000_003 + step * 1009 + micro * 101 + rank) % (2**63 - 1)


def preview_samples(
    model: nn.Module,
    cfg: ModelConfig,
    n: int = PREVIEW_IMAGES,
    steps: int = PREVIEW_STEPS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A few deterministic DDIM samples (eta = 0) from ``model``, for watching training.

    The same sampler as the synthetic cohort (:func:`neurodiff.sample.generate`), so a preview
    shows what sampling would give at that step. ``model``'s train/eval mode is kept.

    Returns ``(n, 1, *spatial)`` float32 on the CPU, in [-1, 1].
    """
    from .sample import generate

    was_training = model.training
    sample_log = logging.getLogger("neurodiff.sample")
    level = sample_log.level
    sample_log.setLevel(logging.WARNING)  # one line per preview would drown the training log
    try:
        return generate(
            model,
            cfg,
            n,
            sampler="ddim",
            steps=min(steps, cfg.timesteps),
            eta=0.0,
            batch_size=n if cfg.spatial_dims == 2 else 1,
            seed=seed,
            device=torch.device(device),
            precision="fp32" if dtype is None else "bf16",
            progress=False,
        )
    finally:
        sample_log.setLevel(level)
        model.train(was_training)


def _middle_slices(images: torch.Tensor) -> np.ndarray:
    """``(N, 1, *spatial)`` -> ``(N, H, W)``; 3D volumes give their central axial slice."""
    arr = images[:, 0].float().cpu().numpy()
    if arr.ndim == 4:  # (N, X, Y, Z) in RAS: axial = fixed Z, shown with anterior up
        arr = np.rot90(arr[..., arr.shape[-1] // 2], axes=(1, 2))
    return arr


def _save_grid(images: torch.Tensor, path: Path) -> None:
    """Tile images in [-1, 1] into one grey-scale PNG, written atomically."""
    import matplotlib.image

    slices = _middle_slices(images)
    n, h, w = slices.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1), -1.0, dtype=np.float32)
    for i, s in enumerate(slices):
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = s
    with atomic_path(path) as tmp:
        matplotlib.image.imsave(tmp, grid, cmap="gray", vmin=-1, vmax=1, format="png")


def read_loss_log(train_dir: str | Path):
    """``loss.csv`` of a training folder as a DataFrame (step, loss, lr, grad_norm, seconds)."""
    import pandas as pd

    path = Path(train_dir) / "loss.csv"
    if not path.is_file():
        raise DataError(f"no loss log {str(path)!r}; train first", path=path)
    return pd.read_csv(path)


def _read_rows(path: Path, up_to_step: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [
            {k: float(v) for k, v in row.items()}
            for row in csv.DictReader(fh)
            if row.get("step") and int(float(row["step"])) <= up_to_step
        ]


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    lines = [",".join(_LOSS_COLUMNS)]
    for r in rows:
        lines.append(
            f"{int(r['step'])},{r['loss']:.6g},{r['lr']:.6g},{r['grad_norm']:.6g},"
            f"{r['seconds']:.4f}"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _memory_format(model_cfg: ModelConfig, tcfg: TrainConfig) -> torch.memory_format:
    if not tcfg.channels_last:
        return torch.contiguous_format
    return torch.channels_last if model_cfg.spatial_dims == 2 else torch.channels_last_3d


def _rotate(train_dir: Path, keep: int) -> None:
    for _, old in _checkpoints(train_dir)[:-keep]:
        old.unlink(missing_ok=True)


def train(
    params: Params,
    images: Any,
    out_dir: str | Path | None = None,
    *,
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
        Output folder; default ``params.stage_dir("train")``.
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
    train_dir = Path(out_dir) if out_dir is not None else params.stage_dir("train")

    # Cheap checks first: data and checkpoint, before any process group or model exists.
    dataset = _as_dataset(images, mcfg)
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

    dist_info, device = _init_distributed(tcfg.device)
    try:
        return _train(
            params, mcfg, tcfg, dataset, train_dir, ckpt, dist_info, device, progress, callback
        )
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    params: Params,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    dataset: Dataset,
    train_dir: Path,
    ckpt: dict[str, Any] | None,
    dist_info: _Dist,
    device: torch.device,
    progress: bool,
    callback: Callable[[TrainState], None] | None,
) -> TrainResult:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from tqdm.auto import tqdm

    main, rank, world = dist_info.main, dist_info.rank, dist_info.world_size
    dtype = training_precision(tcfg.precision, device)
    precision = _precision_label(dtype)
    fmt = _memory_format(mcfg, tcfg)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")

    if main and not tcfg.resume:  # a fresh start: no stale checkpoint may be mistaken for ours
        for _, old in _checkpoints(train_dir):
            old.unlink()
        for old in (train_dir / "previews").glob("step-*.png"):
            old.unlink()
    _seed_everything(tcfg.seed)

    # Model, EMA, optimiser, LR schedule.
    model = build_model(mcfg, flash_attention=device.type == "cuda")
    model = model.to(device=device, memory_format=fmt)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tcfg.ema_decay), use_buffers=True)
    opt_cls = torch.optim.AdamW if tcfg.optimizer == "adamw" else torch.optim.Adam
    opt_kwargs: dict[str, Any] = {"lr": tcfg.lr, "weight_decay": tcfg.weight_decay}
    if device.type in ("cuda", "cpu"):  # one fused kernel: ~4x faster than foreach on CPU
        opt_kwargs["fused"] = True
    optimizer = opt_cls(model.parameters(), **opt_kwargs)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tcfg))
    scheduler = build_scheduler(mcfg)
    inferer = build_inferer(scheduler)

    start = 0
    if ckpt is not None:
        start = int(ckpt["step"])
        model.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        ema.n_averaged.fill_(int(ckpt.get("ema_updates", 0)))
        optimizer.load_state_dict(ckpt["optimizer"])
        lr_sched.load_state_dict(ckpt["lr_scheduler"])
        _set_rng_state(ckpt["rng"])
        if main:
            changed = [
                k
                for k, v in tcfg.to_dict().items()
                if k not in ("resume",) and ckpt["train_config"].get(k) != v
            ]
            if changed:
                log.warning(
                    "resuming from a checkpoint written with other training parameters: %s",
                    ", ".join(
                        f"{k}={ckpt['train_config'].get(k)!r}->{getattr(tcfg, k)!r}"
                        for k in changed
                    ),
                )

    n_params = count_parameters(model)
    flops_step = estimate_train_flops(mcfg, tcfg.batch_size) * tcfg.grad_accum * world
    effective = tcfg.batch_size * world * tcfg.grad_accum
    summary = {
        "device": str(device),
        "precision": precision,
        "world_size": world,
        "batch_size": tcfg.batch_size,
        "grad_accum": tcfg.grad_accum,
        "effective_batch": effective,
        "parameters": n_params,
        "flops_per_step": flops_step,
        "training_images": len(dataset),  # type: ignore[arg-type]
    }
    if main:
        log.info(
            "training on %s with %s: per-rank batch %d x world size %d x accumulation %d = "
            "effective batch %d; %.2f M parameters, %.1f GFLOP/step; %d training images; "
            "steps %d -> %d",
            device,
            precision,
            tcfg.batch_size,
            world,
            tcfg.grad_accum,
            effective,
            n_params / 1e6,
            flops_step / 1e9,
            len(dataset),  # type: ignore[arg-type]
            start,
            tcfg.train_steps,
        )
        atomic_write_json(
            train_dir / "config.json",
            {
                "params": params.to_dict(),
                "params_hash": params.hash(),
                "model_config": mcfg.to_dict(),
                "model_config_hash": mcfg.hash(),
                "train_config": tcfg.to_dict(),
                "train_config_hash": tcfg.hash(),
                **summary,
            },
        )

    def result(step: int, steps_run: int, loss: float | None, seconds: float) -> TrainResult:
        imgs = steps_run * effective
        return TrainResult(
            train_dir=train_dir,
            checkpoint=latest_checkpoint(train_dir),
            step=step,
            steps_run=steps_run,
            resumed_from=start if ckpt is not None else None,
            final_loss=loss,
            seconds=seconds,
            images_per_second=imgs / seconds if seconds > 0 else 0.0,
            device=str(device),
            precision=precision,
            world_size=world,
            batch_size=tcfg.batch_size,
            grad_accum=tcfg.grad_accum,
            parameters=n_params,
            flops_per_step=flops_step,
        )

    loss_path = train_dir / "loss.csv"
    rows = _read_rows(loss_path, start) if (main and ckpt is not None) else []
    if start >= tcfg.train_steps:
        return result(start, 0, rows[-1]["loss"] if rows else None, 0.0)

    # Data: a seeded, resumable sampler (also with one process) and a seeded loader.
    sampler = _ResumableSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed, drop_last=True
    )
    loader = DataLoader(
        dataset,
        batch_size=tcfg.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=tcfg.num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(tcfg.seed),
    )
    batches = _batches(loader, sampler, tcfg.batch_size, start * tcfg.grad_accum)

    net: nn.Module = model
    if tcfg.compile:
        model.compile()
    if world > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    noise_gen = torch.Generator(device=device)
    shape = (tcfg.batch_size, 1) + (mcfg.image_size,) * mcfg.spatial_dims

    def save_checkpoint(step: int) -> None:
        ema_state = ema.module.state_dict() if int(ema.n_averaged) > 0 else model.state_dict()
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": model.state_dict(),
            "ema": ema_state,
            "ema_updates": int(ema.n_averaged),
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_sched.state_dict(),
            "rng": _rng_state(),
            "model_config": mcfg.to_dict(),
            "train_config": tcfg.to_dict(),
            "params_hash": params.hash(),
            "world_size": world,
        }
        with atomic_path(checkpoint_path(train_dir, step)) as tmp:
            torch.save(state, tmp)
        _rotate(train_dir, tcfg.keep_checkpoints)

    def save_preview(step: int) -> None:
        source = ema.module if int(ema.n_averaged) > 0 else model
        n = PREVIEW_IMAGES if mcfg.spatial_dims == 2 else 4
        images = preview_samples(source, mcfg, n=n, seed=tcfg.seed, device=device, dtype=dtype)
        _save_grid(images, train_dir / "previews" / f"step-{step:07d}.png")

    bar = tqdm(
        total=tcfg.train_steps,
        initial=start,
        desc="train",
        unit="step",
        disable=not (main and progress),
        mininterval=1.0,
        dynamic_ncols=True,
    )
    pending: list[tuple[int, torch.Tensor, float, torch.Tensor, float]] = []
    t_start = time.perf_counter()
    t_offset = rows[-1]["seconds"] if rows else 0.0  # the log's clock continues after a resume
    t_other = 0.0  # seconds spent in checkpoints and previews, not training
    last_loss: float | None = rows[-1]["loss"] if rows else None
    model.train()
    step = start
    while step < tcfg.train_steps:
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(tcfg.grad_accum):
            x0 = next(batches).to(device, non_blocking=True).contiguous(memory_format=fmt)
            noise_gen.manual_seed(_noise_seed(tcfg.seed, step, micro, rank))
            noise = torch.randn(shape, generator=noise_gen, device=device)
            t = torch.randint(
                0, mcfg.timesteps, (tcfg.batch_size,), generator=noise_gen, device=device
            )
            last_micro = micro == tcfg.grad_accum - 1
            sync = net.no_sync() if (world > 1 and not last_micro) else contextlib.nullcontext()
            with sync:
                with autocast(device, dtype):
                    prediction = inferer(x0, net, noise, t)  # x_t ~ q(x_t | x_0), then the UNet
                loss = diffusion_loss(prediction, x0, noise, t, scheduler, mcfg.loss)
                (loss / tcfg.grad_accum).backward()
            step_loss += loss.detach() / tcfg.grad_accum
        if tcfg.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        else:
            grad_norm = torch.zeros((), device=device)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        lr_sched.step()
        step += 1
        if step >= tcfg.ema_start and step % tcfg.ema_every == 0:
            ema.update_parameters(model)
        pending.append(
            (
                step,
                step_loss,
                lr,
                grad_norm.detach(),
                t_offset + time.perf_counter() - t_start - t_other,
            )
        )

        checkpoint_now = step % tcfg.checkpoint_every == 0 or step == tcfg.train_steps
        preview_now = (
            main
            and tcfg.preview_every > 0
            and (step % tcfg.preview_every == 0 or step == tcfg.train_steps)
        )
        if len(pending) >= _FLUSH_EVERY or checkpoint_now or step == tcfg.train_steps:
            values = torch.stack([torch.stack([p[1].float(), p[3].float()]) for p in pending])
            if world > 1:
                dist.all_reduce(values)
                values /= world
            for (s, _, lr_s, _, sec), (lv, gn) in zip(pending, values.tolist()):
                rows.append({"step": s, "loss": lv, "lr": lr_s, "grad_norm": gn, "seconds": sec})
            last_loss = rows[-1]["loss"] if rows else values[-1, 0].item()
            pending.clear()
            bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
        if main and (checkpoint_now or preview_now):
            t0 = time.perf_counter()
            if preview_now:
                save_preview(step)
            if checkpoint_now:
                save_checkpoint(step)
                _write_rows(loss_path, rows)
            t_other += time.perf_counter() - t0
        bar.update(1)
        if callback is not None:
            callback(TrainState(step, rank, world, model, ema.module, optimizer))
    bar.close()
    if main:
        _write_rows(loss_path, rows)
    seconds = time.perf_counter() - t_start - t_other
    return result(step, step - start, last_loss, seconds)


def select_subjects(
    images: np.ndarray, index: pd.DataFrame, n_subjects: int, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """Keep the images of ``n_subjects`` training subjects (all when 0 or more than there are).

    Subjects are drawn with the seed, round-robin over sites so that a small subset still spans
    every site. Images are ``(N, 1, *spatial)``; ``index`` has one row per image with ``subject``
    and ``site`` columns.
    """
    subjects = index.drop_duplicates("subject")[["subject", "site"]]
    if n_subjects <= 0 or n_subjects >= len(subjects):
        return images, index
    rng = np.random.default_rng(seed)
    by_site = [
        list(rng.permutation(group["subject"].to_numpy()))
        for _, group in subjects.groupby("site", sort=True)
    ]
    chosen: list[str] = []
    while len(chosen) < n_subjects:
        for queue in by_site:
            if queue and len(chosen) < n_subjects:
                chosen.append(queue.pop(0))
    keep = index["subject"].isin(chosen).to_numpy()
    log.info("training on %d of %d subjects (%d images)", n_subjects, len(subjects), keep.sum())
    return images[keep], index[keep].reset_index(drop=True)


def run(params: Params) -> TrainResult | None:
    """``neurodiff train``: train on the preprocessed training split of ``params``' profile.

    Under ``torchrun`` only rank 0 returns the result (so that it is printed once); the other
    ranks return None.
    """
    from .preprocess import load_split

    images, index = load_split(params, "train")
    images, _ = select_subjects(images, index, params["train_subjects"], params["seed"])
    result = train(params, images)
    return result if int(os.environ.get("RANK", "0")) == 0 else None
