"""Maximum Mean Discrepancy: MONAI's linear-kernel MMD on images, an RBF-kernel MMD^2 on features
with a permutation test, bootstrap replicates from a pooled kernel matrix, and the per-site view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import MetricError
from .bootstrap import chunks, subset
from .checks import check_features, check_images, check_pair, sq_dists

__all__ = [
    "MMDTest",
    "median_bandwidth",
    "mmd2_replicates",
    "mmd_linear",
    "mmd_rbf",
    "per_site_mmd",
]


def mmd_linear(real: np.ndarray, synthetic: np.ndarray) -> float:
    """MONAI's MMD: unbiased MMD^2 with a linear kernel on the flattened images.

    Parameters
    ----------
    real, synthetic : np.ndarray
        ``(N, 1, *spatial)`` in [0, 1], same shape (MONAI needs equal N).

    Returns
    -------
    float
        Can be negative: the unbiased estimate of a quantity that is zero for identical
        distributions fluctuates around zero.
    """
    from monai.metrics import MMDMetric

    real = check_images(real, "real", why="MMD needs two samples per set")
    synthetic = check_images(synthetic, "synthetic", why="MMD needs two samples per set")
    check_pair(real, synthetic)
    if len(real) != len(synthetic):
        raise MetricError(
            f"MONAI's MMDMetric needs sets of equal size; got {len(real)} real and "
            f"{len(synthetic)} synthetic (subsample the larger set)"
        )
    dtype = torch.float64 if real.size < 5e7 else torch.float32
    y = torch.from_numpy(real).to(dtype)
    y_pred = torch.from_numpy(synthetic).to(dtype)
    return float(MMDMetric()(y, y_pred))  # MONAI's order: (y, y_pred)


def median_bandwidth(sq_dist: np.ndarray) -> float:
    """Median heuristic: the median off-diagonal pairwise distance of the pooled sample."""
    n = len(sq_dist)
    off = sq_dist[~np.eye(n, dtype=bool)]
    sigma = float(np.sqrt(np.median(off)))
    return sigma if sigma > 0 else 1.0


def _mmd2_from_kernel(k: np.ndarray, m: int) -> float:
    """Unbiased MMD^2 from a pooled kernel matrix whose first ``m`` rows are set X."""
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    n = len(k) - m
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def _unit_codes(units: Any, n: int, name: str) -> np.ndarray:
    """Integer codes of the exchangeable units (subjects) of ``n`` samples; None: one per sample."""
    if units is None:
        return np.arange(n)
    units = np.asarray(units)
    if len(units) != n:
        raise MetricError(f"{len(units)} {name} labels for {n} samples; expected one per sample")
    return np.unique(units.astype(str), return_inverse=True)[1]


def _mmd2_permutations(
    k: np.ndarray,
    m: int,
    n_permutations: int,
    rng: np.random.Generator,
    units: np.ndarray | None = None,
) -> np.ndarray:
    """Unbiased MMD^2 under ``n_permutations`` random relabellings of the pooled sample.

    ``units`` (one integer code per pooled sample) makes whole units change sides together:
    slices of one subject are not independent, so under the null hypothesis it is subjects that
    are exchangeable, not slices. The first set keeps its number of units (so its number of
    samples may vary from one permutation to the next). Without ``units`` every sample is a unit.
    """
    # Hand-written: neither MONAI nor torchmetrics has a two-sample permutation test.
    total = len(k)
    if units is None:
        units = np.arange(total)
    _, codes = np.unique(units, return_inverse=True)
    n_units = codes.max() + 1
    n_first = len(np.unique(codes[:m]))
    if len(np.intersect1d(codes[:m], codes[m:])):
        raise MetricError("a unit (subject) has samples in both sets; units must not be shared")
    kz = k - np.diag(np.diag(k))
    out = np.empty(n_permutations)
    for s in range(0, n_permutations, 256):
        b = min(256, n_permutations - s)
        perm = rng.permuted(np.tile(np.arange(n_units), (b, 1)), axis=1)
        first = np.zeros((b, n_units), dtype=bool)
        np.put_along_axis(first, perm[:, :n_first], True, axis=1)
        a = first[:, codes].astype(float)  # (b, total): sample in the first set
        c = 1.0 - a
        mm = a.sum(1)
        nn = total - mm
        xx = ((a @ kz) * a).sum(1) / np.maximum(mm * (mm - 1), 1)
        yy = ((c @ kz) * c).sum(1) / np.maximum(nn * (nn - 1), 1)
        xy = ((a @ k) * c).sum(1) / np.maximum(mm * nn, 1)
        out[s : s + b] = xx + yy - 2.0 * xy
    return out


@dataclass(frozen=True)
class MMDTest:
    """Result of :func:`mmd_rbf`."""

    value: float
    bandwidth: float
    p_value: float | None


def mmd_rbf(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    bandwidth: float | None = None,
    n_permutations: int = 0,
    seed: int = 0,
    real_units: Any = None,
    synthetic_units: Any = None,
) -> MMDTest:
    """Unbiased MMD^2 with a Gaussian kernel on features, and a permutation-test p-value.

    ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with sigma the median pairwise distance of the
    pooled sample unless ``bandwidth`` is given (Gretton et al. 2012, eq. 3 and sec. 8).
    p = (1 + #{permuted >= observed}) / (1 + n_permutations).

    Parameters
    ----------
    real, synthetic : np.ndarray
        ``(N, F)`` and ``(M, F)`` features, N, M >= 2.
    real_units, synthetic_units : array-like, optional
        The subject of each sample. The permutation test then moves whole subjects between the
        sets: slices of a subject resemble each other more than slices of two subjects, and
        permuting slices would make two groups of real subjects "significantly different" far
        more often than the test's level. Synthetic images are independent draws, each its own
        unit, unless labels are given. The labels of the two sets are kept apart.
    """
    # Hand-written: MONAI's MMDMetric has no kernel choice beyond a mapping of the inputs, and
    # torchmetrics' kernel MMD (inside KID) uses a polynomial kernel on random subsets.
    x, y = check_features(real, synthetic, 2, "unbiased MMD needs two samples per set")
    pooled = np.concatenate([x, y])
    d2 = sq_dists(pooled)
    sigma = median_bandwidth(d2) if bandwidth is None else float(bandwidth)
    k = np.exp(-d2 / (2.0 * sigma**2))
    value = _mmd2_from_kernel(k, len(x))
    p = None
    if n_permutations > 0:
        ux = _unit_codes(real_units, len(x), "real unit")
        uy = _unit_codes(synthetic_units, len(y), "synthetic unit") + ux.max() + 1
        units = np.concatenate([ux, uy])
        perm = _mmd2_permutations(k, len(x), n_permutations, np.random.default_rng(seed), units)
        p = float((1 + np.sum(perm >= value)) / (1 + n_permutations))
    return MMDTest(value, sigma, p)


def mmd2_replicates(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of resample indices into the pooled kernel matrix ``k``.

    Pairs of positions holding the same original sample are left out of the within-set sums
    (they are the bootstrap's copies of the diagonal, which the U-statistic excludes).
    """
    out = np.empty(len(ia))
    n = max(ia.shape[1], ib.shape[1])
    for s in chunks(len(ia), n):
        a, b = ia[s], ib[s]
        terms = []
        for idx in (a, b):
            kk = k[idx[:, :, None], idx[:, None, :]]
            mask = idx[:, :, None] != idx[:, None, :]
            terms.append((kk * mask).sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1))
        kxy = k[a[:, :, None], b[:, None, :]].mean((1, 2))
        out[s] = terms[0] + terms[1] - 2.0 * kxy
    return out


def per_site_mmd(
    real_features: np.ndarray, sites: Any, synthetic_features: np.ndarray, *, seed: int = 0
) -> pd.DataFrame:
    """Feature-space RBF MMD^2 of the synthetic set to each site's real samples.

    Beside it, the baseline: the same site vs an equal number of real samples from the *other*
    sites. A synthetic set closest to one site has learned that site's appearance.

    Returns
    -------
    pd.DataFrame
        Indexed by site: ``n_real``, ``mmd_synthetic``, ``mmd_other_sites``.
    """
    sites = np.asarray(sites).astype(str)
    if len(sites) != len(real_features):
        raise MetricError(f"{len(sites)} site labels for {len(real_features)} real samples")
    rng = np.random.default_rng(seed)
    rows = []
    for site in sorted(set(sites)):
        own = real_features[sites == site]
        others = real_features[sites != site]
        row = {
            "site": site,
            "n_real": len(own),
            "mmd_synthetic": math.nan,
            "mmd_other_sites": math.nan,
        }
        if len(own) >= 2 and len(synthetic_features) >= 2:
            row["mmd_synthetic"] = mmd_rbf(own, synthetic_features).value
        if len(own) >= 2 and len(others) >= 2:
            pick = others[subset(len(others), min(len(others), len(own)), rng)]
            row["mmd_other_sites"] = mmd_rbf(own, pick).value
        rows.append(row)
    return pd.DataFrame(rows).set_index("site")
