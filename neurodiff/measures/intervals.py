"""The interval rules, one home for every interval the study reports.

- :func:`percentile_ci` -- a metric's bootstrap 95 % CI: the replicates' spread around their
  median, placed on the point estimate. Resampling with replacement leaves ~63 % unique samples,
  which shifts sample-size-biased statistics such as FID upward (at n = 64 the bootstrap
  distribution can lie entirely above the estimate), so the plain percentile interval would not
  contain the estimate. It describes the sampling variability at the given n; it does not remove
  the estimator's own small-sample bias, which the real-vs-real baseline at equal n shares.
- :func:`percentile_interval` -- the plain percentile interval of replicates whose centre is the
  estimate (paired-bootstrap AUROCs and their gains, bootstrap differences of means).
- :func:`real_range` -- the central share of real-vs-real redraws ("the real-vs-real range").

Used by the metrics stage (chapter 5), the sampler table (chapter 4) and the augmentation
experiment (chapter 6). numpy's percentiles are the library here: no maintained package puts a
bootstrap distribution's spread on a point estimate.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LEVEL", "RANGE_LEVEL", "percentile_ci", "percentile_interval", "real_range"]

#: The level of every confidence interval.
LEVEL = 0.95
#: The central share of the redraws that makes "the real-vs-real range".
RANGE_LEVEL = 0.95


def percentile_ci(
    point: float,
    replicates: np.ndarray,
    bounds: tuple[float | None, float | None] = (None, None),
    level: float = LEVEL,
) -> tuple[float, float]:
    """95 % CI: the bootstrap distribution's spread around its median, placed on ``point``.

    ``[point + q_lo - q50, point + q_hi - q50]`` clipped to ``bounds``; see the module docstring
    for why the plain percentile interval is not used.
    """
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2 * 100
    q_lo, q_mid, q_hi = np.percentile(r, [a, 50, 100 - a])
    lo, hi = point + (q_lo - q_mid), point + (q_hi - q_mid)
    if bounds[0] is not None:
        lo, hi = max(lo, bounds[0]), max(hi, bounds[0])
    if bounds[1] is not None:
        lo, hi = min(lo, bounds[1]), min(hi, bounds[1])
    return (float(lo), float(hi))


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The plain percentile interval ``(q_lo, q_hi)`` of ``replicates`` (NaN when empty)."""
    r = np.asarray(replicates, dtype=float)
    if r.size == 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    lo, hi = np.quantile(r, [a, 1 - a])
    return float(lo), float(hi)


def real_range(values: np.ndarray, level: float = RANGE_LEVEL) -> tuple[float, float]:
    """The central ``level`` share of the redraws' values: ``(low, high)`` percentiles."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(np.asarray(values, dtype=float), [tail, 100.0 - tail])
    return float(lo), float(hi)
