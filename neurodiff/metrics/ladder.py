"""The calibration ladder of a run: :func:`neurodiff.measures.calibration_ladder` with the run's
images, extractor, set size, bandwidth, seed and device."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..device import resolve_device
from ..measures.calibration import calibration_ladder

__all__ = ["calibration_for"]


def calibration_for(result: Any, params: Any) -> pd.DataFrame:
    """:func:`calibration_ladder` for a run's ``MetricsResult`` (its test and training images,
    set size and bandwidth) with the run's extractor, k, MS-SSIM pairs, seed and device."""
    return calibration_ladder(
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
