"""Where each stage writes: ``<derived_dir>/<profile>/<folder>/<key>/``, the folder named by
the stage registry (:mod:`neurodiff.registry`) and the key by the parameters that shape its
outputs (:mod:`neurodiff.runs`)."""

from __future__ import annotations

from pathlib import Path

from .. import registry
from ..config import Params
from ..registry import Stage
from ..runs import run_dir

__all__ = [
    "augment_dir",
    "metrics_dir",
    "preprocessed_dir",
    "stage_dir",
    "synthetic_dir",
    "train_dir",
]


def stage_dir(params_or_dir: Params | str | Path, stage: str | Stage) -> Path:
    """The run folder of ``stage`` for ``params``, or the folder given."""
    if isinstance(params_or_dir, Params):
        return run_dir(params_or_dir, stage)
    registry.get(stage)
    return Path(params_or_dir)


def preprocessed_dir(params_or_dir: Params | str | Path) -> Path:
    """The preprocessing run folder of ``params``, or the folder given."""
    return stage_dir(params_or_dir, registry.PREPROCESS)


def train_dir(params_or_dir: Params | str | Path) -> Path:
    """The training run folder of ``params``, or the folder given."""
    return stage_dir(params_or_dir, registry.TRAIN)


def synthetic_dir(params_or_dir: Params | str | Path) -> Path:
    """The synthetic cohort's run folder of ``params``, or the folder given."""
    return stage_dir(params_or_dir, registry.SAMPLE)


def metrics_dir(params_or_dir: Params | str | Path) -> Path:
    """The metrics run folder of ``params``, or the folder given."""
    return stage_dir(params_or_dir, registry.METRICS)


def augment_dir(params_or_dir: Params | str | Path) -> Path:
    """The augmentation experiment's run folder of ``params``, or the folder given."""
    return stage_dir(params_or_dir, registry.AUGMENT)
