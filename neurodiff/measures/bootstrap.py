"""Bootstrap helpers: resampled means, index chunks, subsets (the interval rules are in
:mod:`.intervals`)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "chunks",
    "resampled_means",
    "subset",
]


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
