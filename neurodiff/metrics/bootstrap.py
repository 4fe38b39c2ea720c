"""Bootstrap helpers: the confidence interval rule, resampled means, index chunks, subsets.

See :mod:`neurodiff.metrics` for why the interval is the bootstrap spread around its median,
placed on the point estimate.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "chunks",
    "percentile_ci",
    "resampled_means",
    "subset",
]


def percentile_ci(
    point: float,
    replicates: np.ndarray,
    bounds: tuple[float | None, float | None] = (None, None),
    level: float = 0.95,
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


def resampled_means(scores: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``b`` bootstrap resamples of per-sample (or per-pair) ``scores``."""
    return scores[rng.integers(0, len(scores), (b, len(scores)))].mean(1)


def chunks(total: int, n: int, budget: int = 2_000_000) -> list[slice]:
    """Slices of ``range(total)`` replicates, each holding about ``budget`` entries of n x n."""
    step = max(1, budget // max(1, n * n))
    return [slice(s, min(total, s + step)) for s in range(0, total, step)]


def subset(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` of ``n_total`` samples, without replacement (all if n >= total)."""
    return np.sort(rng.choice(n_total, size=n, replace=False)) if n < n_total else np.arange(n)
