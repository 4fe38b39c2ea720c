"""The calibration ladder of a run: :func:`neurodiff.measures.calibration_ladder` with the run's
images, extractor, set size, bandwidth, seed and device, and the tissue-fraction gaps of each
rung (the run's tissue model on the degraded images)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..device import resolve_device
from ..measures.bootstrap import subset
from ..measures.calibration import LADDER, calibration_ladder, degrade
from ..measures.plausibility import level_gap
from .anatomy import TISSUE_METRICS, TissueData

__all__ = ["calibration_for"]


def calibration_for(result: Any, params: Any) -> pd.DataFrame:
    """:func:`calibration_ladder` for a run's ``MetricsResult`` (its test and training images,
    set size and bandwidth) with the run's extractor, k, MS-SSIM pairs, seed and device; with the
    run's tissue data, one more column per tissue (:func:`_tissue_rungs`)."""
    table = calibration_ladder(
        result.data.real,
        result.data.train,
        extractor=params.extractor,
        n=result.n_subset,
        nn_k=params.nn_k,
        msssim_pairs=params.msssim_pairs,
        bandwidth=result.bandwidth,
        seed=params.seed,
        device=resolve_device(params.device),
    )
    tissue = result.data.tissue
    if tissue is None:
        return table
    attrs = dict(table.attrs)
    table = table.join(_tissue_rungs(result.data, tissue, table.attrs["n"], params.seed))
    table.attrs.update(attrs)
    return table


def _tissue_rungs(data: Any, tissue: TissueData, n: int, seed: int) -> pd.DataFrame:
    """Each tissue's gap at matched levels between the real test subset and each rung's
    degraded training subset: the ladder's subsets and degradations (the same draws of the same
    seed as :func:`calibration_ladder`), classified by the run's tissue model, the training
    images placed at levels as in the real-vs-real range."""
    rng = np.random.default_rng(seed)
    real = subset(len(data.real), n, rng)
    train = subset(len(data.train), n, rng)
    rows = {}
    for k, name in enumerate(LADDER):
        fractions = tissue.model.fractions(degrade(data.train[train], name, seed + k), name)
        gaps = level_gap(
            tissue.fractions.real[real],
            tissue.levels.real[real],
            fractions,
            tissue.placed.train[train],
        )
        rows[name] = dict(zip(TISSUE_METRICS.values(), gaps))
    return pd.DataFrame.from_dict(rows, orient="index")
