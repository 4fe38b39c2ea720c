"""The synthetic-vs-real MMD test, calibrated on real-vs-real redraws of the same layout.

Chapter 5 compares real test *subjects*, each a cluster of alike slices, with *single* synthetic
images, each its own draw. Under the null hypothesis (the model draws from the distribution of
real slices) the two sides are still not exchangeable: a real subject's slices move together, a
synthetic image moves alone. A permutation test that swaps whole units between the sides (a
subject's slices against one synthetic image) mixes sets of very different make-up, and its
permutation distribution has nothing to do with the statistic's null distribution: simulated at
chapter 5's layout (12 subjects against 64 single images) it almost never rejects (size ~ 0 %
at a nominal 5 %). Permuting slices as if independent errs the other way.

The test here compares like with like instead. Its null distribution is the same statistic
between two groups of *real* data in the same layout, drawn many times from the pooled real
subjects (test and training splits) by :func:`~.redraws.redraw_singles`: a first group with the
test split's subjects per site (stratified as the split), subsampled to the comparison's ``n``
slices, against ``m`` single slices, one from each of ``m`` other subjects, whose mix of sites
varies as an independent sample's does. One slice of a random subject is, under the null, what
a synthetic image is: a draw from the distribution of real slices. The observed statistic is the
unbiased RBF MMD^2 between the real test subset and ``m`` of the synthetic images;

    p = (1 + #{redrawn >= observed}) / (1 + R).

Both carry the same within-subject clustering on the real side and the same independence on the
other, so the clustering's effect on the statistic (its bias and its spread) is shared and
cancels in the comparison. The price: ``m`` is at most half the subjects outside the test group
(the others' mix of sites must be free to vary), so the synthetic side counts fewer images than
the synthetic set holds (18 of 64 at the demo's 48 healthy subjects). The test is Monte Carlo,
not exact: the redraws share one pool of subjects; ``tests/test_layout_test.py`` measures its
size at chapter 5's layout (within 2-8 % at a nominal 5 %) and its power.

Hand-written: no library calibrates a two-sample test on grouped redraws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MetricError
from .checks import check_features, sq_dists
from .mmd import mmd2_replicates
from .redraws import first_counts, redraw_singles

__all__ = ["LayoutTest", "calibrated_mmd_test"]


@dataclass(frozen=True)
class LayoutTest:
    """Result of :func:`calibrated_mmd_test`: the observed MMD^2 (``statistic``), its p-value,
    the layout (``n_real`` slices of ``n_real_subjects`` subjects against ``n_single`` single
    images) and the ``null`` statistics of the ``n_redraws`` real-vs-real redraws."""

    statistic: float
    p_value: float
    n_real: int
    n_real_subjects: int
    n_single: int
    n_redraws: int
    null: np.ndarray = field(repr=False)

    @property
    def description(self) -> str:
        """The test in words (for ``metrics.json`` and the book)."""
        return (
            f"RBF MMD^2 of {self.n_real} real test slices ({self.n_real_subjects} subjects) vs "
            f"{self.n_single} synthetic images, against {self.n_redraws} real-vs-real redraws "
            f"of the same layout (the test split's subjects per site vs {self.n_single} single "
            "slices of other real subjects)"
        )


def calibrated_mmd_test(
    real_features: np.ndarray,
    real_subjects: Any,
    observed: np.ndarray,
    in_first: Any,
    synthetic_features: np.ndarray,
    *,
    bandwidth: float,
    n_redraws: int,
    seed: int = 0,
    strata: Any = None,
) -> LayoutTest:
    """The synthetic-vs-real MMD test calibrated on real-vs-real redraws (see the module's
    docstring for the design and why).

    Parameters
    ----------
    real_features : np.ndarray
        ``(N, F)`` features of the pooled real samples (test split, then training split).
    real_subjects : array-like
        The subject of each pooled real sample.
    observed : np.ndarray
        Indices into the pool of the real side of the comparison (the test subset).
    in_first : array-like of bool
        Whether each pooled sample is in the test split: the redraws' first group takes as many
        subjects per stratum.
    synthetic_features : np.ndarray
        ``(M, F)`` features of the synthetic images of the comparison.
    bandwidth : float
        The report's RBF bandwidth (fixed: chosen on real features only).
    n_redraws : int
        Real-vs-real redraws of the null distribution (R >= 19 for p = 0.05 to be reachable).
    strata : array-like, optional
        The stratum (site, site/group) of each pooled sample; None: unstratified.
    """
    x, y = check_features(real_features, synthetic_features, 2, "the MMD test needs two")
    if n_redraws < 1:
        raise MetricError(f"the calibrated MMD test needs n_redraws >= 1; got {n_redraws}")
    observed = np.asarray(observed, dtype=np.intp)
    rng = np.random.default_rng(seed)
    counts = first_counts(real_subjects, in_first, strata)
    ia, ib = redraw_singles(
        real_subjects, counts, len(observed), len(y), n_redraws, rng, strata=strata
    )
    n, m = ia.shape[1], ib.shape[1]
    obs_real = observed if n == len(observed) else rng.choice(observed, n, replace=False)
    obs_syn = len(x) + rng.choice(len(y), m, replace=False)
    d2 = sq_dists(np.concatenate([x, y]))
    kernel = np.exp(-d2 / (2.0 * float(bandwidth) ** 2))  # Gretton et al. 2012, eq. 3 kernel
    statistic = float(mmd2_replicates(kernel, obs_real[None], obs_syn[None])[0])
    null = mmd2_replicates(kernel, ia, ib)
    p = float((1 + np.sum(null >= statistic)) / (1 + n_redraws))
    n_subjects = len(np.unique(np.asarray(real_subjects).astype(str)[obs_real]))
    return LayoutTest(statistic, p, n, n_subjects, m, n_redraws, null)
