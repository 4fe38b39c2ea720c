"""Bootstrap helpers: resample indices (by sample, or by subject where subjects exist), resampled
means, index chunks, subsets (the interval rules are in :mod:`.intervals`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MetricError

__all__ = [
    "chunks",
    "resample_indices",
    "resampled_means",
    "subset",
]


def resample_indices(n: int, b: int, rng: np.random.Generator, units: Any = None) -> np.ndarray:
    """``(b, n)`` bootstrap indices into ``n`` samples.

    Without ``units`` every sample is drawn independently (with replacement): right for
    independent samples, such as synthetic images. With ``units`` (the subject of each sample),
    the resampling follows the samples' structure: the subjects are drawn with replacement, and
    their samples, shuffled, fill the ``n`` places (cut when they hold more, repeated in turn
    when they hold fewer). Slices of one subject resemble each other, so resampling slices alone
    would treat a dozen brains as dozens and make the interval too narrow (Davison and Hinkley
    1997, sec. 3.8: resample the clusters, keep their members). With one sample per subject both
    ways are the same.
    """
    if units is None:
        return rng.integers(0, n, (b, n))
    codes = np.unique(np.asarray(units).astype(str), return_inverse=True)[1]
    if len(codes) != n:
        raise MetricError(f"{len(codes)} unit labels for {n} samples; expected one per sample")
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    k = len(members)
    out = np.empty((b, n), dtype=np.intp)
    for r in range(b):
        drawn = np.concatenate([members[c] for c in rng.integers(0, k, k)])
        out[r] = np.resize(rng.permutation(drawn), n)
    return out


def resampled_means(
    scores: np.ndarray, b: int, rng: np.random.Generator, units: Any = None
) -> np.ndarray:
    """Means of ``b`` bootstrap resamples of per-sample (or per-pair) ``scores``; ``units``: the
    subject of each score, resampled as in :func:`resample_indices`."""
    return scores[resample_indices(len(scores), b, rng, units)].mean(1)


def chunks(total: int, n: int, budget: int = 2_000_000) -> list[slice]:
    """Slices of ``range(total)`` replicates, each holding about ``budget`` entries of n x n."""
    step = max(1, budget // max(1, n * n))
    return [slice(s, min(total, s + step)) for s in range(0, total, step)]


def subset(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` of ``n_total`` samples, without replacement (all if n >= total)."""
    return np.sort(rng.choice(n_total, size=n, replace=False)) if n < n_total else np.arange(n)
