"""Uncertainty of the experiment: paired bootstrap over test subjects and draws, and the
"worth N real subjects" read-off.

Two sources of chance move an arm's AUROC: *which* real subjects were drawn for training (the
draws) and *which* subjects happen to form the test set. Each bootstrap replicate resamples both
-- the draws with replacement, and the test subjects with replacement within each class -- and
applies the same resample to every arm, so that a gain over arm A is measured on paired data
(Efron & Tibshirani 1993, ch. 16). Replicates are weighted means of the per-draw pair matrices
(:func:`.classify.pair_matrix`): written here because no library bootstraps a Mann-Whitney AUROC
over two crossed factors, and this way 1000 replicates of every arm cost one ``einsum``. Their
intervals follow the study's one rule for them,
:func:`neurodiff.measures.intervals.percentile_interval`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_aurocs", "real_curve", "worth"]


def bootstrap_aurocs(
    pairs: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of every arm, averaged over draws: the estimate and ``n_boot`` replicates.

    ``pairs``: ``(arms, draws, n_pos, n_neg)`` pair matrices (one draw for an arm that does not
    depend on the draw is repeated). Returns ``(arms,)`` and ``(arms, n_boot)``.
    """
    _, n_draws, n_pos, n_neg = pairs.shape
    estimate = pairs.mean(axis=(1, 2, 3))
    wp = np.stack(
        [np.bincount(rng.integers(0, n_pos, n_pos), minlength=n_pos) for _ in range(n_boot)]
    )
    wn = np.stack(
        [np.bincount(rng.integers(0, n_neg, n_neg), minlength=n_neg) for _ in range(n_boot)]
    )
    wd = np.stack(
        [np.bincount(rng.integers(0, n_draws, n_draws), minlength=n_draws) for _ in range(n_boot)]
    )
    per = np.einsum("adpq,bp,bq->adb", pairs, wp.astype(float), wn.astype(float))
    per /= (wp.sum(1) * wn.sum(1))[None, None, :]
    reps = np.einsum("adb,bd->ab", per, wd.astype(float)) / n_draws
    return estimate, reps


def real_curve(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The AUROC reached with ``k`` real subjects per class, from ``(k, auroc)`` points of arms A
    and E: sorted by ``k`` (points at the same ``k`` averaged) and made non-decreasing (the best
    seen at ``k`` or fewer), so that it can be inverted."""
    ks = sorted({k for k, _ in points})
    values = np.array([np.mean([v for k2, v in points if k2 == k]) for k in ks])
    return np.asarray(ks, dtype=float), np.maximum.accumulate(values)


def worth(value: float, n: int, ks: np.ndarray, curve: np.ndarray) -> tuple[float, str]:
    """How many real subjects per class the AUROC ``value`` reached with ``n`` real subjects
    (plus synthetic images) is worth, beyond those ``n``: ``(extra subjects, how)``.

    ``how`` is ``"interpolated"`` (inside the curve), ``"at least"`` (above the curve's top:
    the extra subjects are at least the curve's last ``k`` minus ``n``) or ``"none"`` (no better
    than ``n`` real subjects alone: 0).
    """
    base = float(np.interp(n, ks, curve))
    if value <= base:
        return 0.0, "none"
    if value > curve[-1]:
        return float(ks[-1] - n), "at least"
    i = int(np.searchsorted(curve, value, side="left"))
    i = max(i, 1)
    k0, k1, v0, v1 = ks[i - 1], ks[i], curve[i - 1], curve[i]
    k = k1 if v1 == v0 else k0 + (value - v0) * (k1 - k0) / (v1 - v0)
    return max(float(k - n), 0.0), "interpolated"
