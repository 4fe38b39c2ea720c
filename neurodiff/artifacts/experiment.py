"""The readers and writers of chapter 6's experiment: its resumable work files and its outputs.

A run folder of the augmentation stage holds

* ``work/`` -- what a killed run continues from: the pretrained and the pool generator's weights
  (``*.pt``, read with ``weights_only=True``), the pool generator's samples, and one record per
  finished draw (``<name>.npz`` scores and images, then ``<name>.json``, written last: a draw
  without its ``.json`` did not finish and is computed again);
* the outputs -- ``augment.json`` (written last) and one ``<name>.tsv`` per table of
  :data:`AUGMENT_TABLES`.

Every file is written under a temporary name and renamed. The reader refuses an ``augment.json``
of another output format (the registry's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import Params
from ..errors import CheckpointError, DataError
from ..io import atomic_path, atomic_write_json
from ..registry import AUGMENT
from ..runs import read_run
from .folders import augment_dir

__all__ = [
    "AUGMENT_TABLES",
    "AugmentFiles",
    "augment_work_dir",
    "check_work_source",
    "load_augment",
    "load_work_arrays",
    "load_work_record",
    "load_work_weights",
    "write_augment",
    "write_work_arrays",
    "write_work_record",
    "write_work_weights",
]

#: The tables of the augmentation experiment, each written as ``<name>.tsv``.
AUGMENT_TABLES = (
    "pools",
    "table",
    "gains",
    "worth",
    "curve",
    "tuning",
    "memorisation",
)


def augment_work_dir(params_or_dir: Params | str | Path) -> Path:
    """``<augment run folder>/work``: the resumable state of a run."""
    return augment_dir(params_or_dir) / "work"


def check_work_source(params: Params, fingerprint: str) -> None:
    """Keep ``work/`` only if it was made from the same inputs (``fingerprint``, e.g. of the
    pools' table and images): a pools cohort rewritten at the same path must not reuse weights or
    draws made from the old one. Stale work files are removed; the fingerprint is recorded."""
    import logging

    work = augment_work_dir(params)
    marker = work / "source.json"
    if marker.is_file() and json.loads(marker.read_text()).get("fingerprint") != fingerprint:
        logging.getLogger(__name__).warning(
            "the work in %s was made from other inputs: computing it again", work
        )
        for f in work.iterdir():
            if f.is_file():
                f.unlink()
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"fingerprint": fingerprint})


def write_work_arrays(params: Params, name: str, arrays: dict[str, np.ndarray]) -> Path:
    """``work/<name>.npz`` (compressed), written atomically."""
    path = augment_work_dir(params) / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_work_arrays(params_or_dir: Params | str | Path, name: str) -> dict[str, np.ndarray] | None:
    """``work/<name>.npz`` as a dict, or None when it is missing."""
    path = augment_work_dir(params_or_dir) / f"{name}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path) as raw:
            return {k: raw[k] for k in raw.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); delete it to compute it again") from None


def write_work_record(params: Params, name: str, record: dict[str, Any]) -> Path:
    """``work/<name>.json``: a finished unit of work (written after its arrays)."""
    path = augment_work_dir(params) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, record)


def load_work_record(params_or_dir: Params | str | Path, name: str) -> dict[str, Any] | None:
    """``work/<name>.json``, or None when that unit has not finished."""
    path = augment_work_dir(params_or_dir) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}); delete it to compute it again"
        ) from None


def write_work_weights(params: Params, name: str, state: dict[str, torch.Tensor]) -> Path:
    """``work/<name>.pt``: a generator's weights (a plain state dict), written atomically."""
    path = augment_work_dir(params) / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_work_weights(params_or_dir: Params | str | Path, name: str) -> dict | None:
    """``work/<name>.pt`` loaded with ``weights_only=True``, or None when it is missing."""
    path = augment_work_dir(params_or_dir) / f"{name}.pt"
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise CheckpointError(
            f"{path} cannot be read ({type(exc).__name__}); delete it to compute it again",
            path=path,
        ) from None


@dataclass
class AugmentFiles:
    """The augmentation experiment's outputs as read back from its run folder."""

    info: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    out_dir: Path


def write_augment(params: Params, info: dict[str, Any], tables: dict[str, pd.DataFrame]) -> Path:
    """The tables of :data:`AUGMENT_TABLES` and then ``augment.json``, each atomically (the work
    files stay). The caller records the run (``run.json``) afterwards."""
    out_dir = augment_dir(params)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in AUGMENT_TABLES:
        with atomic_path(out_dir / f"{name}.tsv") as tmp:
            tables[name].to_csv(tmp, sep="\t", index=False)
    atomic_write_json(out_dir / "augment.json", info)
    return out_dir


def load_augment(params_or_dir: Params | str | Path) -> AugmentFiles | None:
    """The experiment's outputs, or None when the run is missing or incomplete."""
    out_dir = augment_dir(params_or_dir)
    info_path = out_dir / "augment.json"
    if not (read_run(out_dir).complete and info_path.is_file()):
        return None
    info = json.loads(info_path.read_text())
    if info.get("format") != AUGMENT.format:
        raise DataError(
            f"{info_path} has format {info.get('format')!r}; this version reads "
            f"{AUGMENT.format!r}. Run `neurodiff augment` again"
        )
    tables = {n: pd.read_csv(out_dir / f"{n}.tsv", sep="\t") for n in AUGMENT_TABLES}
    return AugmentFiles(info=info, tables=tables, out_dir=out_dir)
