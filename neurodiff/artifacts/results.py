"""The readers and writers of the metrics stage's outputs: ``metrics.json`` and
``by_group.json`` (the augmentation experiment's are in :mod:`.experiment`).

A file added to a finished run (``by_group.json``) is added to its ``run.json`` by its writer
(:func:`neurodiff.runs.note_outputs`); the others are listed when the stage records its run.
The readers refuse files of another output format (the registry's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Params
from ..errors import DataError
from ..io import atomic_write_json
from ..registry import METRICS, Stage
from ..runs import note_outputs
from .folders import metrics_dir

__all__ = [
    "load_by_group",
    "load_metrics_json",
    "write_by_group",
    "write_metrics_json",
]


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
