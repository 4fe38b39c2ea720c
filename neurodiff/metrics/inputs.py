"""The inputs of stage 5: a run's real splits and synthetic set, of one group, in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import load_split, load_synthetic
from ..errors import MetricError
from ..intensity import to_unit_range

__all__ = ["load_inputs", "reference_group"]


def reference_group(params: Mapping[str, Any]) -> str | None:
    """The group whose realism the report measures: the first of a class-conditional model's
    ``groups`` (the healthy controls, as the paper measured healthy subjects); None for an
    unconditional model (every image)."""
    groups = list(params["groups"])
    return groups[0] if groups else None


def load_inputs(params: Mapping[str, Any], group: str | None | bool = True) -> dict[str, Any]:
    """The stage's inputs in [0, 1]: test and train splits (with their index tables) and the
    synthetic set, of one group.

    ``group``: ``True`` (default) = :func:`reference_group`; a name = that group's real and
    synthetic images; ``None`` = every image. The preprocessed splits are stored in [-1, 1] and
    mapped here with ``(x + 1) / 2``; the synthetic set is already in [0, 1].
    """
    if group is True:
        group = reference_group(params)
    out: dict[str, Any] = {}
    for split in ("test", "train"):
        images, index = load_split(params, split, group=group)
        images = np.asarray(images, dtype=np.float32)
        if images.size and (images.min() < -1 - 1e-3 or images.max() > 1 + 1e-3):
            raise MetricError(
                f"preprocessed {split} split must lie in [-1, 1]; found "
                f"[{images.min():.3g}, {images.max():.3g}]"
            )
        out[split] = to_unit_range(images)
        out[f"{split}_index"] = index
    out["synthetic"] = np.asarray(load_synthetic(params, group=group), dtype=np.float32)
    return out


def _index_column(inputs: dict[str, Any], split: str, column: str) -> np.ndarray | None:
    """Column ``column`` of a split's index table, one value per image (None when missing)."""
    index = inputs[f"{split}_index"]
    if isinstance(index, pd.DataFrame) and column in index and len(index) == len(inputs[split]):
        return index[column].to_numpy()
    return None
