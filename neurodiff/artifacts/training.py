"""The readers and writers of the training stage's loss log, previews and ``config.json``
(checkpoints have their own module, :mod:`neurodiff.checkpoints`: atomic save, ``weights_only``
load, rotation, resume)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Params
from ..errors import DataError
from ..io import atomic_write_json, atomic_write_text
from .folders import train_dir

__all__ = [
    "LOSS_COLUMNS",
    "clear_previews",
    "loss_log_path",
    "preview_images",
    "preview_path",
    "read_loss_log",
    "read_loss_rows",
    "write_loss_rows",
    "write_train_config",
]

#: The columns of ``loss.csv``.
LOSS_COLUMNS = ("step", "loss", "lr", "grad_norm", "seconds")

_PREVIEW_RE = re.compile(r"step-(\d+)")


def preview_path(params_or_dir: Params | str | Path, step: int) -> Path:
    """``previews/step-XXXXXXX.png`` of a training run: the preview grid saved at ``step``."""
    return train_dir(params_or_dir) / "previews" / f"step-{step:07d}.png"


def clear_previews(params_or_dir: Params | str | Path) -> None:
    """Delete the preview grids of a training run (a fresh start keeps none of an older one)."""
    for old in (train_dir(params_or_dir) / "previews").glob("step-*.png"):
        old.unlink()


def write_train_config(params_or_dir: Params | str | Path, record: dict) -> Path:
    """``config.json`` of a training run: parameters, configs, device and cost, atomically."""
    path = train_dir(params_or_dir) / "config.json"
    atomic_write_json(path, record)
    return path


def loss_log_path(params_or_dir: Params | str | Path) -> Path:
    """``loss.csv`` of a training run."""
    return train_dir(params_or_dir) / "loss.csv"


def read_loss_log(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``loss.csv`` of a training folder as a DataFrame (step, loss, lr, grad_norm, seconds)."""
    path = loss_log_path(params_or_dir)
    if not path.is_file():
        raise DataError(f"no loss log {str(path)!r}; train first", path=path)
    return pd.read_csv(path)


def preview_images(params_or_dir: Params | str | Path) -> list[tuple[int, np.ndarray]]:
    """The preview grids saved during training, oldest first: ``(step, RGBA array)`` pairs."""
    import matplotlib.image

    out = []
    for f in sorted(train_dir(params_or_dir).joinpath("previews").glob("step-*.png")):
        m = _PREVIEW_RE.search(f.name)
        out.append((int(m.group(1)) if m else -1, matplotlib.image.imread(f)))
    return out


def read_loss_rows(params_or_dir: Params | str | Path, up_to_step: int) -> list[dict[str, float]]:
    """The rows of ``loss.csv`` up to ``up_to_step`` (those a resumed run keeps), as floats."""
    path = loss_log_path(params_or_dir)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [
            {k: float(v) for k, v in row.items()}
            for row in csv.DictReader(fh)
            if row.get("step") and int(float(row["step"])) <= up_to_step
        ]


def write_loss_rows(params_or_dir: Params | str | Path, rows: list[dict[str, float]]) -> None:
    """``loss.csv`` from its rows, atomically."""
    lines = [",".join(LOSS_COLUMNS)]
    for r in rows:
        lines.append(
            f"{int(r['step'])},{r['loss']:.6g},{r['lr']:.6g},{r['grad_norm']:.6g},"
            f"{r['seconds']:.4f}"
        )
    atomic_write_text(loss_log_path(params_or_dir), "\n".join(lines) + "\n")
