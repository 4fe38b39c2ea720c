"""The readers and writers of the metrics and augmentation stages' outputs: ``metrics.json``,
``by_group.json``, and the augmentation experiment's tables, scores and draws.

A file added to a finished run (``by_group.json``) is added to its ``run.json`` by its writer
(:func:`neurodiff.runs.note_outputs`); the others are listed when the stage records its run.
The readers refuse files of another output format (the registry's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Params
from ..errors import DataError
from ..io import atomic_dir, atomic_write_json
from ..registry import AUGMENT, METRICS, Stage
from ..runs import note_outputs, read_run
from .folders import augment_dir, metrics_dir

__all__ = [
    "AUGMENT_TABLES",
    "AugmentFiles",
    "load_augment",
    "load_by_group",
    "load_metrics_json",
    "write_augment",
    "write_by_group",
    "write_metrics_json",
]

#: The tables of the augmentation experiment, each written as ``<name>.tsv``.
AUGMENT_TABLES = ("table", "worth", "classifier_check", "atrophy")


def load_metrics_json(params_or_dir: Params | str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of a run as a dict, or None when the metrics were not computed yet."""
    path = metrics_dir(params_or_dir) / "metrics.json"
    if not path.is_file():
        return None
    return _checked(json.loads(path.read_text()), path, METRICS)


def _checked(data: dict[str, Any], path: Path, stage: Stage) -> dict[str, Any]:
    """``data`` read from ``path`` if it carries ``stage``'s output format; DataError if not."""
    found = data.get("format") if isinstance(data, dict) else None
    if found != stage.format:
        raise DataError(
            f"{path} holds format {found!r}, expected {stage.format!r} (written by another "
            f"version of neurodiff); run `neurodiff {stage.name}` again",
            path=path,
        )
    return data


def write_metrics_json(params: Params, payload: dict[str, Any]) -> Path:
    """Write ``metrics.json`` (a JSON-able dict) atomically; return its path."""
    path = metrics_dir(params) / "metrics.json"
    atomic_write_json(path, payload)
    note_outputs(path.parent)
    return path


def load_by_group(params_or_dir: Params | str | Path) -> dict[str, Any] | None:
    """``by_group.json`` of a run (``params_hash``, ``rows``), or None when not computed yet."""
    path = metrics_dir(params_or_dir) / "by_group.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_by_group(params: Params, payload: dict[str, Any]) -> Path:
    """Write ``by_group.json`` beside ``metrics.json``; return its path."""
    path = metrics_dir(params) / "by_group.json"
    atomic_write_json(path, payload)
    note_outputs(path.parent)
    return path


@dataclass
class AugmentFiles:
    """The augmentation experiment's outputs as read back from its run folder."""

    info: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    scores: dict[str, np.ndarray] = field(repr=False)
    draws: Any = field(default=None, repr=False)
    out_dir: Path = Path()


def write_augment(
    params: Params,
    info: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    scores: dict[str, np.ndarray],
    draws: Any,
) -> Path:
    """Write the experiment's folder at once (a temporary folder, then renamed): ``augment.json``
    (``info``), one ``<name>.tsv`` per table of :data:`AUGMENT_TABLES`, ``scores.npz`` and
    ``draws.json``. The caller records the run (``run.json``) afterwards."""
    out_dir = augment_dir(params)
    with atomic_dir(out_dir) as tmp:
        np.savez_compressed(tmp / "scores.npz", **scores)
        (tmp / "draws.json").write_text(json.dumps(draws, indent=1) + "\n")
        for name in AUGMENT_TABLES:
            tables[name].to_csv(tmp / f"{name}.tsv", sep="\t", index=False)
        atomic_write_json(tmp / "augment.json", info)
    return out_dir


def load_augment(params_or_dir: Params | str | Path) -> AugmentFiles | None:
    """The experiment's outputs, or None when the run is missing or incomplete."""
    out_dir = augment_dir(params_or_dir)
    if not (read_run(out_dir).complete and (out_dir / "augment.json").is_file()):
        return None
    with np.load(out_dir / "scores.npz") as raw:
        scores = {k: raw[k] for k in raw.files}
    info_path = out_dir / "augment.json"
    return AugmentFiles(
        info=_checked(json.loads(info_path.read_text()), info_path, AUGMENT),
        tables={n: pd.read_csv(out_dir / f"{n}.tsv", sep="\t") for n in AUGMENT_TABLES},
        scores=scores,
        draws=json.loads((out_dir / "draws.json").read_text()),
        out_dir=out_dir,
    )
