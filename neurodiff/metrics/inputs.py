"""The inputs of stage 5: a run's real splits and synthetic set, of one group, in [0, 1]."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import load_split, load_synthetic
from ..errors import MetricError
from ..intensity import to_unit_range

__all__ = ["MetricsInputs", "SplitLabels", "load_inputs", "reference_group"]

_SPLITS = ("test", "train")


@dataclass(frozen=True)
class SplitLabels:
    """What is known of the images of one real split: the site, the subject and the group of
    each image (array-like, one per image, or None) and the split's index table (None without
    one)."""

    sites: Any = None
    subjects: Any = None
    index: pd.DataFrame | None = None
    groups: Any = None


@dataclass(frozen=True)
class MetricsInputs:
    """The images one evaluation measures, in [0, 1]: the real ``test`` and ``train`` splits
    (with their index tables, one row per image) and the ``synthetic`` set, of ``group`` (None:
    every image)."""

    test: np.ndarray
    train: np.ndarray
    synthetic: np.ndarray
    test_index: pd.DataFrame | None = None
    train_index: pd.DataFrame | None = None
    group: str | None = None

    def labels(self, split: str) -> SplitLabels:
        """The sites, subjects, groups and index table of a real split."""
        return SplitLabels(
            sites=_index_column(self, split, "site"),
            subjects=_index_column(self, split, "subject"),
            index=_split(self, split)[1],
            groups=_index_column(self, split, "group"),
        )

    def n_subjects(self, split: str) -> int:
        """Distinct subjects of a real split (from its index table)."""
        return len(set(_split(self, split)[1]["subject"]))


def reference_group(params: Mapping[str, Any]) -> str | None:
    """The group whose realism the report measures: the first of a class-conditional model's
    ``groups`` (the healthy controls, as the paper measured healthy subjects); None for an
    unconditional model (every image)."""
    groups = list(params["groups"])
    return groups[0] if groups else None


def load_inputs(params: Mapping[str, Any], group: str | None | bool = True) -> MetricsInputs:
    """The stage's inputs in [0, 1]: test and train splits (with their index tables) and the
    synthetic set, of one group.

    ``group``: ``True`` (default) = :func:`reference_group`; a name = that group's real and
    synthetic images; ``None`` = every image. The preprocessed splits are stored in [-1, 1] and
    mapped here with ``(x + 1) / 2``; the synthetic set is already in [0, 1].
    """
    if group is True:
        group = reference_group(params)
    images: dict[str, np.ndarray] = {}
    index: dict[str, Any] = {}
    for split in _SPLITS:
        x, index[split] = load_split(params, split, group=group)
        x = np.asarray(x, dtype=np.float32)
        if x.size and (x.min() < -1 - 1e-3 or x.max() > 1 + 1e-3):
            raise MetricError(
                f"preprocessed {split} split must lie in [-1, 1]; found "
                f"[{x.min():.3g}, {x.max():.3g}]"
            )
        images[split] = to_unit_range(x)
    return MetricsInputs(
        test=images["test"],
        train=images["train"],
        synthetic=np.asarray(load_synthetic(params, group=group), dtype=np.float32),
        test_index=index["test"],
        train_index=index["train"],
        group=group,
    )


def _split(inputs: MetricsInputs, split: str) -> tuple[np.ndarray, Any]:
    """A real split's images and index table."""
    if split == "test":
        return inputs.test, inputs.test_index
    if split == "train":
        return inputs.train, inputs.train_index
    raise ValueError(f"split must be one of {_SPLITS}; got {split!r}")


def _index_column(inputs: MetricsInputs, split: str, column: str) -> np.ndarray | None:
    """Column ``column`` of a split's index table, one value per image (None when missing)."""
    images, index = _split(inputs, split)
    if isinstance(index, pd.DataFrame) and column in index and len(index) == len(images):
        return index[column].to_numpy()
    return None
