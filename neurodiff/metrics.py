"""Stage 5: realism, diversity and memorisation of the synthetic cohort, against real-vs-real.

A metric value for synthetic data means something only beside the same value for two *real*
samples of the same size, with an uncertainty, and with the feature space named. Every metric
here is therefore reported as

* ``value`` -- real (the held-out **test** split) vs synthetic, with a bootstrap 95 % CI;
* ``baseline`` -- real vs real: the same test samples vs an equally large subset of the
  **training** split (different subjects), with its own CI;
* ``extractor`` -- the feature space (``pixels`` for image-space metrics).

All functions take ``(real, synthetic)`` in that order; images are ``(N, 1, *spatial)`` float
arrays in [0, 1], features ``(N, F)``.

Metrics
-------
``mmd_linear``
    MONAI :class:`~monai.metrics.MMDMetric` on the images themselves: the unbiased MMD^2 estimate
    with a linear kernel (Gretton et al. 2012, eq. 3), i.e. the squared distance between the mean
    images minus a finite-sample correction. The most likely reading of the paper's "MMD = 0.036".
    Pitfalls: it only compares mean images (two sets with the same mean but different variety
    score 0); it grows with the number of voxels, so values at different image sizes are not
    comparable; being unbiased, it is **negative** when the sets are closer than chance.
``mmd_rbf``
    MMD^2 (unbiased) on features with a Gaussian kernel, bandwidth by the median heuristic
    (sigma = median pairwise distance of the pooled sample), and a permutation-test p-value
    (H0: both sets come from one distribution). Sees every moment, not only the mean.
``fid``
    Frechet distance between Gaussians fitted to the features (MONAI
    :class:`~monai.metrics.FIDMetric`). Biased upward at small n and scaled by the extractor --
    only the comparison with the baseline at equal n carries meaning.
``ms_ssim_diversity``
    Mean MS-SSIM (MONAI :class:`~monai.metrics.MultiScaleSSIMMetric`) over random pairs *within*
    the synthetic set; the baseline is the same within the real training subset. Lower = more
    diverse; a value far above the baseline means mode collapse, far below means noise.
    Kernel size and number of scales follow the image size: see :func:`ms_ssim_settings`.
``precision``, ``recall``, ``density``, ``coverage``
    k-NN manifold metrics (Kynkaanniemi et al. 2019; Naeem et al. 2020) from the ``prdc``
    package: fidelity (precision, density: are synthetic samples inside the real manifold?) and
    diversity (recall, coverage: is the real manifold covered?).
``memorised_fraction``, ``nn_distance``, ``nn_ssim``
    Memorisation audit (:func:`memorisation_audit`): each synthetic sample's nearest *training*
    sample in feature space; the fraction of synthetic samples closer to a training sample than
    99 % of real test samples are; the median nearest distance; the mean SSIM to the nearest
    training sample. Baselines come from the test samples' own nearest training samples.

Uncertainty
-----------
Bootstrap with ``n_bootstrap`` resamples, on cached features and kernel matrices (never by
re-extracting). Each set is resampled with replacement, independently. MMD and FID replicates
are computed from the pooled Gram matrices (duplicated samples are excluded from the within-set
U-statistic pairs, which would otherwise bias MMD upward). Metrics that are means over samples or
pairs (precision, density / recall, coverage / MS-SSIM / audit) resample their per-sample scores
with the k-NN manifolds held fixed, so their CIs are conditional on the manifolds.

Resampling with replacement leaves ~63 % unique samples, which shifts sample-size-biased
statistics such as FID upward (at n = 64 the bootstrap distribution can lie entirely above the
estimate). The reported 95 % CI is therefore the 2.5-97.5 % spread of the bootstrap distribution
around its median, placed on the point estimate: ``[v + q2.5 - q50, v + q97.5 - q50]``, clipped
to the metric's range. It describes the sampling variability at the given n; it does not remove
the estimator's own small-sample bias, which the baseline at equal n shares.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .errors import MetricError

__all__ = [
    "METRICS",
    "PAPER_RESULTS",
    "MemorisationAudit",
    "MetricValue",
    "MetricsResult",
    "check_images",
    "comparison_table",
    "diversity",
    "evaluate",
    "fid",
    "interpret",
    "load_inputs",
    "memorisation_audit",
    "mmd_linear",
    "mmd_rbf",
    "ms_ssim",
    "ms_ssim_settings",
    "per_site_mmd",
    "percentile_ci",
    "prdc_metrics",
    "prdc_per_sample",
    "run",
    "ssim",
]

log = logging.getLogger(__name__)

# name -> (label, which way is better, lower bound, upper bound)
METRICS: dict[str, tuple[str, str, float | None, float | None]] = {
    "mmd_linear": ("MMD (linear kernel, images; MONAI)", "lower", None, None),
    "mmd_rbf": ("MMD^2 (RBF kernel, features)", "lower", None, None),
    "fid": ("FID (features)", "lower", 0.0, None),
    "ms_ssim_diversity": ("MS-SSIM within set (diversity)", "close to baseline", 0.0, 1.0),
    "precision": ("precision", "higher", 0.0, 1.0),
    "recall": ("recall", "higher", 0.0, 1.0),
    "density": ("density", "higher (about 1)", 0.0, None),
    "coverage": ("coverage", "higher", 0.0, 1.0),
    "memorised_fraction": (
        "memorised fraction (closer to train than 99% of test)",
        "lower",
        0.0,
        1.0,
    ),
    "nn_distance": ("median distance to nearest training sample", "close to baseline", 0.0, None),
    "nn_ssim": ("mean SSIM to nearest training sample", "close to baseline", -1.0, 1.0),
}

PAPER_RESULTS: dict[str, str] = {
    "mmd_linear": "0.036 (kernel, features and image size not reported)",
    "mmd_rbf": "0.036 (kernel, features and image size not reported)",
    "fid": "'suboptimal' (no value reported)",
    "ms_ssim_diversity": "'suboptimal' (no value reported)",
}
"""What the paper (Basile et al. 2024, CEUR Vol-3880 paper 24) reports, by metric."""

# Wang et al. 2003 MS-SSIM weights for 5 scales (also MONAI's default).
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_MS_SSIM_MIN_KERNEL = 3
_MS_SSIM_MAX_KERNEL = 11
_AUDIT_QUANTILE = 0.01
_PIXELS = "pixels"


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def check_images(images: Any, name: str, *, min_samples: int = 2, why: str = "") -> np.ndarray:
    """Validate one image set; return it as a float32 array.

    Parameters
    ----------
    images : array-like
        ``(N, 1, H, W)`` or ``(N, 1, H, W, D)``, finite, in [0, 1].
    name : str
        How the set is named in messages (``"synthetic"``, ``"real (test)"``).
    min_samples : int
        Fewest samples accepted; ``why`` says which metric needs them.

    Raises
    ------
    MetricError
        Wrong type or shape, too few samples, NaN/inf, values outside [0, 1].
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise MetricError(
            f"{name} images must be a numpy array (N, 1, H, W[, D]); got {type(images).__name__}"
        )
    if images.ndim not in (4, 5) or images.shape[1] != 1:
        raise MetricError(
            f"{name} images must have shape (N, 1, H, W) or (N, 1, H, W, D); got {images.shape}"
        )
    if len(images) < min_samples:
        need = f" ({why})" if why else ""
        raise MetricError(
            f"{name} set has {len(images)} samples; the metrics need at least {min_samples}{need}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise MetricError(f"{name} images must be floating point in [0, 1]; got {images.dtype}")
    finite = np.isfinite(images)
    if not finite.all():
        bad = np.unique(np.nonzero(~finite.reshape(len(images), -1))[0])
        raise MetricError(
            f"{name} images contain NaN or inf values in {len(bad)} sample(s), "
            f"first at index {int(bad[0])}"
        )
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise MetricError(f"{name} images must lie in [0, 1]; found values in [{lo:.3g}, {hi:.3g}]")
    return np.ascontiguousarray(np.clip(images, 0.0, 1.0), dtype=np.float32)


def _check_pair(real: np.ndarray, synthetic: np.ndarray, names=("real", "synthetic")) -> None:
    if real.shape[1:] != synthetic.shape[1:]:
        raise MetricError(
            f"{names[0]} and {names[1]} images differ in shape: "
            f"{real.shape[1:]} vs {synthetic.shape[1:]} (per sample); both sets "
            "must have the same (1, *spatial) shape"
        )


def _check_features(
    real: Any, synthetic: Any, min_samples: int = 2, why: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for x, name in ((real, "real"), (synthetic, "synthetic")):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise MetricError(f"{name} features must be a 2D array (N, F); got shape {x.shape}")
        if len(x) < min_samples:
            need = f" ({why})" if why else ""
            raise MetricError(
                f"{name} features have {len(x)} samples; at least {min_samples} needed{need}"
            )
        if not np.isfinite(x).all():
            raise MetricError(f"{name} features contain NaN or inf values")
        out.append(x)
    if out[0].shape[1] != out[1].shape[1]:
        raise MetricError(
            f"real and synthetic features differ in length: {out[0].shape[1]} vs "
            f"{out[1].shape[1]}; compute both with the same extractor"
        )
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------


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
    _check_pair(real, synthetic)
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


def _sq_dists(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    y = x if y is None else y
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def _mmd2_from_kernel(k: np.ndarray, m: int) -> float:
    """Unbiased MMD^2 from a pooled kernel matrix whose first ``m`` rows are set X."""
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    n = len(k) - m
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * kxy.mean())


def _mmd2_permutations(
    k: np.ndarray, m: int, n_permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Unbiased MMD^2 under ``n_permutations`` random relabellings of the pooled sample."""
    # Hand-written: neither MONAI nor torchmetrics has a two-sample permutation test.
    total = len(k)
    n = total - m
    kz = k - np.diag(np.diag(k))
    out = np.empty(n_permutations)
    for s in range(0, n_permutations, 256):
        b = min(256, n_permutations - s)
        perm = rng.permuted(np.tile(np.arange(total), (b, 1)), axis=1)
        a = np.zeros((b, total))
        np.put_along_axis(a, perm[:, :m], 1.0, axis=1)
        c = 1.0 - a
        ak = a @ kz
        xx = (ak * a).sum(1) / (m * (m - 1))
        yy = ((c @ kz) * c).sum(1) / (n * (n - 1))
        xy = ((a @ k) * c).sum(1) / (m * n)
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
) -> MMDTest:
    """Unbiased MMD^2 with a Gaussian kernel on features, and a permutation-test p-value.

    ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))`` with sigma the median pairwise distance of the
    pooled sample unless ``bandwidth`` is given (Gretton et al. 2012, eq. 3 and sec. 8).
    p = (1 + #{permuted >= observed}) / (1 + n_permutations).

    Parameters
    ----------
    real, synthetic : np.ndarray
        ``(N, F)`` and ``(M, F)`` features, N, M >= 2.
    """
    # Hand-written: MONAI's MMDMetric has no kernel choice beyond a mapping of the inputs, and
    # torchmetrics' kernel MMD (inside KID) uses a polynomial kernel on random subsets.
    x, y = _check_features(real, synthetic, 2, "unbiased MMD needs two samples per set")
    pooled = np.concatenate([x, y])
    d2 = _sq_dists(pooled)
    sigma = median_bandwidth(d2) if bandwidth is None else float(bandwidth)
    k = np.exp(-d2 / (2.0 * sigma**2))
    value = _mmd2_from_kernel(k, len(x))
    p = None
    if n_permutations > 0:
        perm = _mmd2_permutations(k, len(x), n_permutations, np.random.default_rng(seed))
        p = float((1 + np.sum(perm >= value)) / (1 + n_permutations))
    return MMDTest(value, sigma, p)


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to ``(N, F)`` real and synthetic features.

    ``|mu_r - mu_s|^2 + tr(S_r + S_s - 2 (S_r S_s)^(1/2))`` via MONAI's ``FIDMetric``.
    """
    from monai.metrics import FIDMetric

    x, y = _check_features(real, synthetic, 2, "FID needs two samples per set for a covariance")
    # With fewer samples than features the covariances are singular: scipy warns that the square
    # root "might be inaccurate" (it agrees with the exact form below to ~1e-7 relative here) and
    # MONAI prints when it regularises. If MONAI gives up (large imaginary part) or returns a
    # non-finite value, the exact nuclear-norm form of _fid_replicates is used instead.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(FIDMetric()(torch.from_numpy(y), torch.from_numpy(x)))  # (y_pred, y)
        except ValueError:
            value = math.nan
    if not math.isfinite(value):
        pooled = np.concatenate([x, y])
        idx_x, idx_y = np.arange(len(x))[None], np.arange(len(x), len(pooled))[None]
        value = float(_fid_replicates(pooled @ pooled.T, idx_x, idx_y)[0])
    return value


def _fid_replicates(g: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """FID for each row of resample indices, from the pooled linear Gram matrix ``g``.

    With centred feature matrices A (n x F) and B (m x F), the non-zero eigenvalues of
    S_a S_b equal the squared singular values of A B^T / sqrt((n-1)(m-1)), so
    ``tr (S_a S_b)^(1/2)`` is the nuclear norm of the n x m cross matrix. Everything is read from
    ``g = F F^T``: no F x F square root per replicate, which is what makes 200 replicates cheap.
    (MONAI's and torchmetrics' FID take one pair of feature sets per call.)
    """
    out = np.empty(len(ia))
    n, m = ia.shape[1], ib.shape[1]
    for s in _chunks(len(ia), max(n, m)):
        a, b = ia[s], ib[s]
        gaa = g[a[:, :, None], a[:, None, :]]
        gbb = g[b[:, :, None], b[:, None, :]]
        gab = g[a[:, :, None], b[:, None, :]]
        mean_term = gaa.mean((1, 2)) + gbb.mean((1, 2)) - 2.0 * gab.mean((1, 2))
        tr_a = (np.trace(gaa, axis1=1, axis2=2) - gaa.sum((1, 2)) / n) / (n - 1)
        tr_b = (np.trace(gbb, axis1=1, axis2=2) - gbb.sum((1, 2)) / m) / (m - 1)
        c = (
            gab
            - gab.mean(2, keepdims=True)
            - gab.mean(1, keepdims=True)
            + gab.mean((1, 2), keepdims=True)
        )
        nuc = torch.linalg.svdvals(torch.from_numpy(c)).sum(-1).numpy()
        out[s] = mean_term + tr_a + tr_b - 2.0 * nuc / math.sqrt((n - 1) * (m - 1))
    return out


def _chunks(total: int, n: int, budget: int = 2_000_000) -> list[slice]:
    step = max(1, budget // max(1, n * n))
    return [slice(s, min(total, s + step)) for s in range(0, total, step)]


def _mmd2_replicates(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for each row of resample indices into the pooled kernel matrix ``k``.

    Pairs of positions holding the same original sample are left out of the within-set sums
    (they are the bootstrap's copies of the diagonal, which the U-statistic excludes).
    """
    out = np.empty(len(ia))
    n = max(ia.shape[1], ib.shape[1])
    for s in _chunks(len(ia), n):
        a, b = ia[s], ib[s]
        terms = []
        for idx in (a, b):
            kk = k[idx[:, :, None], idx[:, None, :]]
            mask = idx[:, :, None] != idx[:, None, :]
            terms.append((kk * mask).sum((1, 2)) / np.maximum(mask.sum((1, 2)), 1))
        kxy = k[a[:, :, None], b[:, None, :]].mean((1, 2))
        out[s] = terms[0] + terms[1] - 2.0 * kxy
    return out


# --------------------------------------------------------------------------------------------
# MS-SSIM and SSIM
# --------------------------------------------------------------------------------------------


def ms_ssim_settings(spatial_shape: tuple[int, ...]) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights of MS-SSIM for images of ``spatial_shape``.

    Rule: the most scales (at most 5, Wang et al. 2003) whose coarsest image still holds a
    kernel of at least 3 pixels, then the largest kernel (at most 11) that fits. MONAI checks
    ``side // (n_scales - 1)^2 >= kernel`` and the image halves at each scale, so a side fits
    ``n`` scales with kernel ``k`` when ``side // max((n-1)^2, 2^(n-1)) >= k``. The weights are
    the first ``n`` of Wang et al.'s five, renormalised to sum to 1.

    Examples: 64^2 -> 5 scales, kernel 4 (as in MONAI's realism tutorial); 128^3 -> 5 scales,
    kernel 8; 32^2 -> 4 scales, kernel 3; 16^2 -> 3 scales, kernel 4.
    """
    side = int(min(spatial_shape))
    for n in range(len(_MS_SSIM_WEIGHTS), 0, -1):
        div = max((n - 1) ** 2, 2 ** (n - 1), 1)
        k = min(_MS_SSIM_MAX_KERNEL, side // div)
        if k >= _MS_SSIM_MIN_KERNEL:
            w = np.asarray(_MS_SSIM_WEIGHTS[:n])
            return k, tuple(float(v) for v in w / w.sum())
    raise MetricError(
        f"images of side {side} are too small for (MS-)SSIM; at least "
        f"{_MS_SSIM_MIN_KERNEL} pixels per side are needed"
    )


def _pairwise(
    metric_factory, a: np.ndarray, b: np.ndarray, device: torch.device | str, batch: int
) -> np.ndarray:
    metric = metric_factory()
    out = []
    with torch.inference_mode():
        for s in range(0, len(a), batch):
            x = torch.from_numpy(np.ascontiguousarray(a[s : s + batch])).to(device)
            y = torch.from_numpy(np.ascontiguousarray(b[s : s + batch])).to(device)
            out.append(metric(y_pred=x, y=y).reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def ms_ssim(
    a: np.ndarray, b: np.ndarray, *, device: torch.device | str = "cpu", batch: int = 32
) -> np.ndarray:
    """MS-SSIM of each pair ``(a[i], b[i])`` (MONAI), with :func:`ms_ssim_settings`.

    Parameters
    ----------
    a, b : np.ndarray
        ``(P, 1, *spatial)`` in [0, 1].

    Returns
    -------
    np.ndarray
        ``(P,)``; 1 for identical images.
    """
    from monai.metrics import MultiScaleSSIMMetric

    a = check_images(a, "first", min_samples=1)
    b = check_images(b, "second", min_samples=1)
    _check_pair(a, b, ("first", "second"))
    kernel, weights = ms_ssim_settings(a.shape[2:])
    dims = a.ndim - 2
    return _pairwise(
        lambda: MultiScaleSSIMMetric(dims, data_range=1.0, kernel_size=kernel, weights=weights),
        a,
        b,
        device,
        batch,
    )


def ssim(
    a: np.ndarray, b: np.ndarray, *, device: torch.device | str = "cpu", batch: int = 32
) -> np.ndarray:
    """SSIM of each pair ``(a[i], b[i])`` (MONAI), window ``min(11, max(3, side // 4))``."""
    from monai.metrics import SSIMMetric

    a = check_images(a, "first", min_samples=1)
    b = check_images(b, "second", min_samples=1)
    _check_pair(a, b, ("first", "second"))
    win = min(11, max(3, min(a.shape[2:]) // 4))
    dims = a.ndim - 2
    return _pairwise(lambda: SSIMMetric(dims, data_range=1.0, win_size=win), a, b, device, batch)


def _random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n_pairs, n(n-1)/2)`` distinct unordered pairs ``(i, j)``, i < j."""
    i, j = np.triu_indices(n, k=1)
    picks = np.sort(rng.choice(len(i), size=min(n_pairs, len(i)), replace=False))
    return np.stack([i[picks], j[picks]], axis=1)


def diversity(
    images: np.ndarray, n_pairs: int = 100, *, seed: int = 0, device: torch.device | str = "cpu"
) -> np.ndarray:
    """MS-SSIM of ``n_pairs`` random distinct pairs within one set (their mean = diversity).

    Lower = more diverse. Note for 2D slices: two slices of one subject are more alike than two
    subjects, so a real set with several slices per subject looks slightly less diverse.

    Returns
    -------
    np.ndarray
        ``(P,)`` per-pair MS-SSIM, ``P = min(n_pairs, N(N-1)/2)``.
    """
    images = check_images(images, "diversity", why="MS-SSIM diversity needs a pair")
    pairs = _random_pairs(len(images), n_pairs, np.random.default_rng(seed))
    return ms_ssim(images[pairs[:, 0]], images[pairs[:, 1]], device=device)


# --------------------------------------------------------------------------------------------
# Precision / recall / density / coverage
# --------------------------------------------------------------------------------------------


def prdc_metrics(real: np.ndarray, synthetic: np.ndarray, nn_k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (``prdc.compute_prdc``, Naeem et al. 2020)."""
    import prdc

    x, y = _check_features(
        real, synthetic, nn_k + 1, f"k-NN manifolds with nn_k={nn_k} need nn_k + 1"
    )
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        out = prdc.compute_prdc(real_features=x, fake_features=y, nearest_k=nn_k)
    return {k: float(v) for k, v in out.items()}


def prdc_per_sample(
    real: np.ndarray, synthetic: np.ndarray, nn_k: int = 5
) -> dict[str, np.ndarray]:
    """Per-sample terms whose means are :func:`prdc_metrics` (for the bootstrap).

    ``precision`` and ``density`` are per synthetic sample, ``recall`` and ``coverage`` per real
    sample; built from prdc's own k-NN radii and distances.
    """
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    x, y = _check_features(
        real, synthetic, nn_k + 1, f"k-NN manifolds with nn_k={nn_k} need nn_k + 1"
    )
    r_real = compute_nearest_neighbour_distances(x, nn_k)
    r_syn = compute_nearest_neighbour_distances(y, nn_k)
    d = compute_pairwise_distance(x, y)
    inside_real = d < r_real[:, None]
    return {
        "precision": inside_real.any(axis=0).astype(float),
        "density": inside_real.sum(axis=0) / nn_k,
        "recall": (d < r_syn[None, :]).any(axis=1).astype(float),
        "coverage": (d.min(axis=1) < r_real).astype(float),
    }


# --------------------------------------------------------------------------------------------
# Memorisation audit
# --------------------------------------------------------------------------------------------


@dataclass
class MemorisationAudit:
    """Nearest training samples of the synthetic and of the real test samples.

    Attributes
    ----------
    syn_distance, syn_nearest, syn_ssim : np.ndarray
        Per synthetic sample: feature distance to, index of, and SSIM with its nearest training
        sample.
    test_distance, test_nearest, test_ssim : np.ndarray
        The same for each real test sample (the reference: how close unseen real data come).
    threshold : float
        The 1 % quantile of ``test_distance``.
    flagged : np.ndarray of bool
        Synthetic samples closer than ``threshold``.
    """

    syn_distance: np.ndarray
    syn_nearest: np.ndarray
    syn_ssim: np.ndarray
    test_distance: np.ndarray
    test_nearest: np.ndarray
    test_ssim: np.ndarray
    threshold: float
    quantile: float = _AUDIT_QUANTILE
    flagged: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.flagged = self.syn_distance < self.threshold

    @property
    def fraction(self) -> float:
        """Fraction of synthetic samples closer to a training sample than 99 % of test samples."""
        return float(self.flagged.mean())

    def closest(self, k: int = 6) -> pd.DataFrame:
        """The ``k`` synthetic samples closest to a training sample, closest first."""
        order = np.argsort(self.syn_distance, kind="stable")[:k]
        return pd.DataFrame(
            {
                "synthetic": order,
                "train": self.syn_nearest[order],
                "distance": self.syn_distance[order],
                "ssim": self.syn_ssim[order],
                "flagged": self.flagged[order],
            }
        )

    def loo_test_flags(self) -> np.ndarray:
        """Real baseline: is each test sample below the 1 % quantile of the *other* test samples?"""
        d = self.test_distance
        return np.array([d[i] < np.quantile(np.delete(d, i), self.quantile) for i in range(len(d))])


def memorisation_audit(
    train: np.ndarray,
    test: np.ndarray,
    synthetic: np.ndarray,
    train_features: np.ndarray,
    test_features: np.ndarray,
    synthetic_features: np.ndarray,
    *,
    quantile: float = _AUDIT_QUANTILE,
    device: torch.device | str = "cpu",
) -> MemorisationAudit:
    """Does the model reproduce its training samples?

    Each synthetic sample is matched to its nearest training sample in feature space (Euclidean),
    and so is each real test sample. A synthetic sample closer to a training sample than 99 % of
    the test samples are (``quantile`` = 0.01) is flagged: real unseen data almost never come
    that close, so such a sample is likely a copy.

    Parameters
    ----------
    train, test, synthetic : np.ndarray
        Images ``(N, 1, *spatial)`` in [0, 1] (for the SSIM of the matched pairs).
    train_features, test_features, synthetic_features : np.ndarray
        ``(N, F)`` features of the same images, in the same order.
    """
    train_features, synthetic_features = _check_features(train_features, synthetic_features, 1)
    test_features, _ = _check_features(
        test_features, train_features, 2, "the audit's threshold needs two test samples"
    )
    for img, f, name in (
        (train, train_features, "train"),
        (test, test_features, "test"),
        (synthetic, synthetic_features, "synthetic"),
    ):
        if len(img) != len(f):
            raise MetricError(f"{name}: {len(img)} images but {len(f)} feature vectors")
    d_syn = np.sqrt(_sq_dists(synthetic_features, train_features))
    d_test = np.sqrt(_sq_dists(test_features, train_features))
    nn_syn, nn_test = d_syn.argmin(1), d_test.argmin(1)
    dist_syn = d_syn[np.arange(len(nn_syn)), nn_syn]
    dist_test = d_test[np.arange(len(nn_test)), nn_test]
    return MemorisationAudit(
        syn_distance=dist_syn,
        syn_nearest=nn_syn,
        syn_ssim=ssim(synthetic, train[nn_syn], device=device),
        test_distance=dist_test,
        test_nearest=nn_test,
        test_ssim=ssim(test, train[nn_test], device=device),
        threshold=float(np.quantile(dist_test, quantile)),
        quantile=quantile,
    )


def _audit_fraction_replicates(
    audit: MemorisationAudit, i_syn: np.ndarray, i_test: np.ndarray
) -> np.ndarray:
    thr = np.quantile(audit.test_distance[i_test], audit.quantile, axis=1)
    return (audit.syn_distance[i_syn] < thr[:, None]).mean(1)


# --------------------------------------------------------------------------------------------
# Bootstrap CIs
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Result containers
# --------------------------------------------------------------------------------------------


@dataclass
class MetricValue:
    """One metric: synthetic vs real, and real vs real, each with a 95 % CI."""

    name: str
    value: float
    ci: tuple[float, float]
    baseline: float
    baseline_ci: tuple[float, float]
    extractor: str
    n_real: int
    n_synthetic: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return METRICS[self.name][0]

    @property
    def better(self) -> str:
        return METRICS[self.name][1]

    def to_dict(self, params_hash: str | None = None) -> dict[str, Any]:
        d = {
            "label": self.label,
            "value": self.value,
            "ci": list(self.ci),
            "baseline": self.baseline,
            "baseline_ci": list(self.baseline_ci),
            "better": self.better,
            "extractor": self.extractor,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            **self.extra,
        }
        if params_hash is not None:
            d["params_hash"] = params_hash
        return d


@dataclass
class MetricsData:
    """Arrays kept for the figures (not written to disk).

    Images ``(N, 1, *spatial)`` in [0, 1]; features ``(N, F)``; ``*_sites`` per sample or None;
    ``subset`` holds the indices of the equal-size subsets used for the set-level metrics.
    """

    real: np.ndarray
    synthetic: np.ndarray
    train: np.ndarray
    features: dict[str, np.ndarray]
    subset: dict[str, np.ndarray]
    real_sites: np.ndarray | None = None
    train_sites: np.ndarray | None = None
    train_index: pd.DataFrame | None = None


@dataclass
class MetricsResult:
    """All metrics of one run; ``str()`` is a table, :meth:`to_dict` the JSON written to disk."""

    metrics: dict[str, MetricValue]
    extractor: str
    n_subset: int
    n_real: int
    n_synthetic: int
    n_train: int
    n_bootstrap: int
    ms_ssim_kernel: int
    ms_ssim_weights: tuple[float, ...]
    audit: MemorisationAudit
    per_site: pd.DataFrame | None = None
    params_hash: str | None = None
    config: dict[str, Any] | None = None
    path: Path | None = None
    data: MetricsData | None = field(default=None, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per metric: value [CI], baseline [CI], which way is better, features, n."""
        rows = []
        for m in self.metrics.values():
            rows.append(
                {
                    "metric": m.name,
                    "synthetic vs real": _with_ci(m.value, m.ci),
                    "real vs real": _with_ci(m.baseline, m.baseline_ci),
                    "better": m.better,
                    "features": m.extractor,
                    "n real/synth": f"{m.n_real}/{m.n_synthetic}",
                }
            )
        return pd.DataFrame(rows).set_index("metric")

    def __str__(self) -> str:
        with pd.option_context(
            "display.width", 200, "display.max_colwidth", 60, "display.max_columns", None
        ):
            body = self.table().to_string()
        where = f"\nwritten to {self.path}" if self.path else ""
        return (
            f"metrics: synthetic vs real test, baseline real train vs real test, on "
            f"equal-size subsets of {self.n_subset} (of {self.n_synthetic} synthetic, "
            f"{self.n_real} test, {self.n_train} train; the memorisation audit uses all); "
            f"features: {self.extractor}; 95% CIs from {self.n_bootstrap} bootstrap "
            f"resamples\n"
            f"{body}\n{int(self.audit.flagged.sum())} synthetic sample(s) flagged as "
            f"possible copies of training samples{where}"
        )

    def to_dict(self) -> dict[str, Any]:
        closest = self.audit.closest(10)
        index = self.data.train_index if self.data is not None else None
        if isinstance(index, pd.DataFrame) and len(index) == self.n_train:
            for col in ("subject", "site", "slice"):
                if col in index:
                    closest[f"train_{col}"] = index[col].to_numpy()[closest["train"].to_numpy()]
        d: dict[str, Any] = {
            "format": "neurodiff-metrics/1",
            "params_hash": self.params_hash,
            "extractor": self.extractor,
            "n_subset": self.n_subset,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_train": self.n_train,
            "baseline": "real test subset vs an equal-size subset of the training split",
            "bootstrap": {
                "n": self.n_bootstrap,
                "level": 0.95,
                "interval": "bootstrap spread around its median, on the estimate",
            },
            "ms_ssim": {
                "kernel_size": self.ms_ssim_kernel,
                "scales": len(self.ms_ssim_weights),
                "weights": list(self.ms_ssim_weights),
            },
            "metrics": {k: m.to_dict(self.params_hash) for k, m in self.metrics.items()},
            "memorisation": {
                "quantile": self.audit.quantile,
                "threshold": self.audit.threshold,
                "n_flagged": int(self.audit.flagged.sum()),
                "flagged": [int(i) for i in np.flatnonzero(self.audit.flagged)],
                "closest": closest.astype({"flagged": bool}).to_dict(orient="records"),
            },
        }
        if self.per_site is not None:
            d["per_site"] = self.per_site.reset_index().to_dict(orient="records")
        if self.config is not None:
            d["config"] = self.config
        return d


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


# --------------------------------------------------------------------------------------------
# Everything together
# --------------------------------------------------------------------------------------------


def _subset(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_total, size=n, replace=False)) if n < n_total else np.arange(n)


def _entry(
    name: str,
    value: float,
    reps: np.ndarray,
    baseline: float,
    base_reps: np.ndarray,
    extractor: str,
    n_real: int,
    n_syn: int,
    **extra: Any,
) -> MetricValue:
    bounds = METRICS[name][2:]
    return MetricValue(
        name,
        float(value),
        percentile_ci(value, reps, bounds),
        float(baseline),
        percentile_ci(baseline, base_reps, bounds),
        extractor,
        n_real,
        n_syn,
        {k: v for k, v in extra.items() if v is not None},
    )


def _gram(x: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``x x^T`` of flattened samples in float64, accumulated over voxel chunks (3D-safe)."""
    flat = x.reshape(len(x), -1)
    g = np.zeros((len(x), len(x)))
    for s in range(0, flat.shape[1], chunk):
        c = flat[:, s : s + chunk].astype(np.float64)
        g += c @ c.T
    return g


def evaluate(
    real: np.ndarray,
    synthetic: np.ndarray,
    train: np.ndarray,
    *,
    extractor: Any = "random",
    n_bootstrap: int = 200,
    n_permutations: int = 200,
    msssim_pairs: int = 100,
    nn_k: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    real_sites: Any = None,
    train_sites: Any = None,
) -> MetricsResult:
    """All metrics, baselines and CIs from arrays.

    Parameters
    ----------
    real : np.ndarray
        Held-out real images (the test split), ``(N, 1, *spatial)`` in [0, 1].
    synthetic : np.ndarray
        Generated images, same per-sample shape, in [0, 1].
    train : np.ndarray
        The model's training images, same shape, in [0, 1]: the real-vs-real baseline and the
        reference of the memorisation audit.
    extractor : str or FeatureExtractor
        ``random`` | ``random3d`` | ``inception`` | ``medicalnet:<path>`` (see
        :mod:`neurodiff.features`).
    real_sites, train_sites : array-like, optional
        Site of each real / training sample, for the per-site view.

    Notes
    -----
    Set-level metrics compare equal-size sets: ``n = min(N_test, N_synthetic, N_train)`` samples
    are drawn (seeded) from each, so that the synthetic comparison (test vs synthetic) and the
    baseline (test vs train) share their reference and their sizes. The memorisation audit uses
    every sample. Features are extracted once per set.
    """
    from .features import FeatureExtractor, get_extractor

    names = ("real (test)", "synthetic", "train")
    n_min = max(2, nn_k + 1)
    why = (
        f"precision/recall/density/coverage with nn_k={nn_k} need nn_k + 1 = {nn_k + 1}; "
        "MMD, FID and MS-SSIM need 2"
    )
    real, synthetic, train = (
        check_images(x, nm, min_samples=n_min, why=why)
        for x, nm in zip((real, synthetic, train), names)
    )
    _check_pair(real, synthetic, names[:2])
    _check_pair(real, train, (names[0], names[2]))
    kernel, weights = ms_ssim_settings(real.shape[2:])  # fails early for tiny images
    if isinstance(extractor, str):
        extractor = get_extractor(extractor, seed=seed, device=device)
    elif not isinstance(extractor, FeatureExtractor):
        raise MetricError(
            f"extractor must be a name or a FeatureExtractor; got {type(extractor).__name__}"
        )
    image_dims = real.ndim - 2
    extractor.check(image_dims)
    ext_name = extractor.name_for(image_dims)
    log.info(
        "metrics on %s: %d real, %d synthetic, %d train; features %s; %d bootstrap",
        device,
        len(real),
        len(synthetic),
        len(train),
        ext_name,
        n_bootstrap,
    )

    feats = {"real": extractor(real), "synthetic": extractor(synthetic), "train": extractor(train)}
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), len(train))
    sub = {
        k: _subset(len(x), n, rng)
        for k, x in (("real", real), ("synthetic", synthetic), ("train", train))
    }
    images = (real[sub["real"]], synthetic[sub["synthetic"]], train[sub["train"]])
    features = tuple(feats[k][sub[k]] for k in ("real", "synthetic", "train"))
    metrics = _set_metrics(
        images,
        features,
        ext_name,
        n_bootstrap,
        n_permutations,
        msssim_pairs,
        nn_k,
        seed,
        device,
        rng,
    )
    audit = memorisation_audit(
        train, real, synthetic, feats["train"], feats["real"], feats["synthetic"], device=device
    )
    metrics.update(_audit_metrics(audit, ext_name, n_bootstrap, rng))

    data = MetricsData(
        real,
        synthetic,
        train,
        feats,
        sub,
        None if real_sites is None else np.asarray(real_sites),
        None if train_sites is None else np.asarray(train_sites),
    )
    per_site = None
    if data.real_sites is not None and data.train_sites is not None:
        per_site = per_site_mmd(
            np.concatenate([feats["real"], feats["train"]]),
            np.concatenate([data.real_sites, data.train_sites]),
            feats["synthetic"],
            seed=seed,
        )
    return MetricsResult(
        metrics,
        ext_name,
        n,
        len(real),
        len(synthetic),
        len(train),
        n_bootstrap,
        kernel,
        weights,
        audit,
        per_site=per_site,
        data=data,
    )


def _set_metrics(
    images, features, ext_name, b, n_permutations, msssim_pairs, nn_k, seed, device, rng
) -> dict[str, MetricValue]:
    """MMD (images, features), FID, MS-SSIM diversity and PRDC on the equal-size subsets
    ``(real, synthetic, train)``: value = real vs synthetic, baseline = real vs train."""
    r_img, s_img, t_img = images
    r_f, s_f, t_f = features
    n = len(r_img)
    kernel, weights = ms_ssim_settings(r_img.shape[2:])
    # Bootstrap indices into the pooled order [real_n; synthetic_n; train_n].
    ia = rng.integers(0, n, (b, n))
    ib = rng.integers(0, n, (b, n)) + n  # synthetic
    ja = rng.integers(0, n, (b, n))
    jb = rng.integers(0, n, (b, n)) + 2 * n  # train
    metrics: dict[str, MetricValue] = {}

    # MMD, linear kernel on images (MONAI), replicates from the pooled Gram matrix
    g_img = _gram(np.concatenate([r_img, s_img, t_img]))
    metrics["mmd_linear"] = _entry(
        "mmd_linear",
        mmd_linear(r_img, s_img),
        _mmd2_replicates(g_img, ia, ib),
        mmd_linear(r_img, t_img),
        _mmd2_replicates(g_img, ja, jb),
        _PIXELS,
        n,
        n,
    )

    # MMD, RBF kernel on features, bandwidth by the median heuristic of each pooled pair
    pooled_f = np.concatenate([r_f, s_f, t_f])
    d2 = _sq_dists(pooled_f)
    test_s = mmd_rbf(r_f, s_f, n_permutations=n_permutations, seed=seed)
    test_b = mmd_rbf(r_f, t_f, n_permutations=n_permutations, seed=seed + 1)
    metrics["mmd_rbf"] = _entry(
        "mmd_rbf",
        test_s.value,
        _mmd2_replicates(np.exp(-d2 / (2 * test_s.bandwidth**2)), ia, ib),
        test_b.value,
        _mmd2_replicates(np.exp(-d2 / (2 * test_b.bandwidth**2)), ja, jb),
        ext_name,
        n,
        n,
        p_value=test_s.p_value,
        baseline_p_value=test_b.p_value,
        bandwidth=test_s.bandwidth,
        n_permutations=n_permutations,
    )

    # FID (MONAI), replicates from the pooled feature Gram matrix
    g_f = pooled_f @ pooled_f.T
    metrics["fid"] = _entry(
        "fid",
        fid(r_f, s_f),
        _fid_replicates(g_f, ia, ib),
        fid(r_f, t_f),
        _fid_replicates(g_f, ja, jb),
        ext_name,
        n,
        n,
    )

    # MS-SSIM diversity within each set; replicates resample the pairs
    div_s = diversity(s_img, msssim_pairs, seed=seed, device=device)
    div_t = diversity(t_img, msssim_pairs, seed=seed + 1, device=device)
    metrics["ms_ssim_diversity"] = _entry(
        "ms_ssim_diversity",
        div_s.mean(),
        _resampled_means(div_s, b, rng),
        div_t.mean(),
        _resampled_means(div_t, b, rng),
        _PIXELS,
        n,
        n,
        n_pairs=len(div_s),
        kernel_size=kernel,
        scales=len(weights),
    )

    # precision / recall / density / coverage (prdc), replicates resample per-sample terms
    p_s, p_t = prdc_metrics(r_f, s_f, nn_k), prdc_metrics(r_f, t_f, nn_k)
    per_s, per_t = prdc_per_sample(r_f, s_f, nn_k), prdc_per_sample(r_f, t_f, nn_k)
    for key in ("precision", "recall", "density", "coverage"):
        metrics[key] = _entry(
            key,
            p_s[key],
            _resampled_means(per_s[key], b, rng),
            p_t[key],
            _resampled_means(per_t[key], b, rng),
            ext_name,
            n,
            n,
            nn_k=nn_k,
        )

    return metrics


def _audit_metrics(
    audit: MemorisationAudit, ext_name: str, b: int, rng: np.random.Generator
) -> dict[str, MetricValue]:
    """The memorisation audit's three metrics, on every synthetic and test sample."""
    n_s, n_t = len(audit.syn_distance), len(audit.test_distance)
    i_syn = rng.integers(0, n_s, (b, n_s))
    i_test = rng.integers(0, n_t, (b, n_t))
    loo = audit.loo_test_flags().astype(float)
    metrics: dict[str, MetricValue] = {}
    metrics["memorised_fraction"] = _entry(
        "memorised_fraction",
        audit.fraction,
        _audit_fraction_replicates(audit, i_syn, i_test),
        loo.mean(),
        loo[i_test].mean(1),
        ext_name,
        n_t,
        n_s,
        threshold=audit.threshold,
        n_flagged=int(audit.flagged.sum()),
    )
    metrics["nn_distance"] = _entry(
        "nn_distance",
        np.median(audit.syn_distance),
        np.median(audit.syn_distance[i_syn], axis=1),
        np.median(audit.test_distance),
        np.median(audit.test_distance[i_test], axis=1),
        ext_name,
        n_t,
        n_s,
    )
    metrics["nn_ssim"] = _entry(
        "nn_ssim",
        audit.syn_ssim.mean(),
        audit.syn_ssim[i_syn].mean(1),
        audit.test_ssim.mean(),
        audit.test_ssim[i_test].mean(1),
        f"{_PIXELS} (nearest by {ext_name})",
        n_t,
        n_s,
    )
    return metrics


def _resampled_means(scores: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    return scores[rng.integers(0, len(scores), (b, len(scores)))].mean(1)


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
            pick = others[_subset(len(others), min(len(others), len(own)), rng)]
            row["mmd_other_sites"] = mmd_rbf(own, pick).value
        rows.append(row)
    return pd.DataFrame(rows).set_index("site")


def comparison_table(result: MetricsResult) -> pd.DataFrame:
    """Our values next to the real-vs-real baseline and the paper's reported values."""
    rows = []
    for m in result.metrics.values():
        rows.append(
            {
                "metric": m.label,
                "this run (synthetic vs real)": _with_ci(m.value, m.ci),
                "real vs real": _with_ci(m.baseline, m.baseline_ci),
                "paper": PAPER_RESULTS.get(m.name, "not reported"),
                "better": m.better,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


_CLOSE_READINGS = {
    "ms_ssim_diversity": (
        "less diverse than real data (mode collapse?)",
        "more varied than real data (noise or artefacts?)",
    ),
    "nn_distance": (
        "farther from the training data than unseen real data (off the manifold)",
        "closer to the training data than unseen real data (memorisation?)",
    ),
    "nn_ssim": (
        "more alike to training samples than unseen real data (copying?)",
        "less alike to training samples than unseen real data",
    ),
}


def interpret(result: MetricsResult) -> pd.DataFrame:
    """A plain reading of each metric: does its CI overlap the real-vs-real CI, and which way?

    Overlapping CIs read "within real-vs-real variability" -- not "equal": with few samples the
    CIs are wide and a real difference can hide inside them.
    """
    rows = []
    for m in result.metrics.values():
        better = METRICS[m.name][1]
        above = m.ci[0] > m.baseline_ci[1]
        below = m.ci[1] < m.baseline_ci[0]
        if not (above or below):
            reading = "within real-vs-real variability (CIs overlap)"
        elif m.name in _CLOSE_READINGS:
            reading = _CLOSE_READINGS[m.name][0 if above else 1]
        elif better.startswith("higher"):
            reading = (
                "worse than real vs real"
                if below
                else "better than real vs real (check the memorisation audit)"
            )
        elif m.name == "memorised_fraction":
            reading = (
                "more near-copies of training samples than chance"
                if above
                else "fewer near-copies than chance"
            )
        else:
            reading = (
                "worse than real vs real"
                if above
                else "better than real vs real (check the memorisation audit)"
            )
        rows.append(
            {
                "metric": m.name,
                "synthetic vs real": _fmt(m.value),
                "real vs real": _fmt(m.baseline),
                "reading": reading,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


# --------------------------------------------------------------------------------------------
# Stage entry point
# --------------------------------------------------------------------------------------------


def load_inputs(params: Mapping[str, Any]) -> dict[str, Any]:
    """The stage's inputs in [0, 1]: test and train splits (with their index tables) and the
    synthetic set.

    The preprocessed splits are stored in [-1, 1] and mapped here with ``(x + 1) / 2``; the
    synthetic set is already in [0, 1].
    """
    from .preprocess import load_split
    from .sample import load_synthetic

    out: dict[str, Any] = {}
    for split in ("test", "train"):
        images, index = load_split(params, split)
        images = np.asarray(images, dtype=np.float32)
        if images.size and (images.min() < -1 - 1e-3 or images.max() > 1 + 1e-3):
            raise MetricError(
                f"preprocessed {split} split must lie in [-1, 1]; found "
                f"[{images.min():.3g}, {images.max():.3g}]"
            )
        out[split] = np.clip((images + 1.0) / 2.0, 0.0, 1.0)
        out[f"{split}_index"] = index
    out["synthetic"] = np.asarray(load_synthetic(params), dtype=np.float32)
    return out


def run(params: Any) -> MetricsResult:
    """Stage 5: compute every metric and write ``<stage_dir("metrics")>/metrics.json``.

    Real = the held-out **test** split vs the synthetic set. Baseline = the same test samples vs
    an equal-size subset of the **training** split. Why this baseline: train and test hold
    different subjects from the same sites and pipeline, so their distance is what two
    independent real samples of this size show -- the value a perfect generator would reach. Using
    the test set as the reference in both comparisons makes them differ only in the second set.
    Training samples are also what a memorising model would reproduce, which the audit checks.

    The JSON holds, per metric, the value, CI, baseline and its CI, extractor, n_real,
    n_synthetic and the parameters hash; it is written atomically.
    """
    from .config import MetricsConfig
    from .device import resolve_device
    from .features import get_extractor
    from .io import atomic_write_json

    cfg = params.stage(MetricsConfig)
    device = resolve_device(cfg.device)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=device)  # fail early
    inputs = load_inputs(params)
    sites = {}
    for split in ("test", "train"):
        index = inputs[f"{split}_index"]
        sites[split] = (
            index["site"].to_numpy()
            if isinstance(index, pd.DataFrame)
            and "site" in index
            and len(index) == len(inputs[split])
            else None
        )
    result = evaluate(
        inputs["test"],
        inputs["synthetic"],
        inputs["train"],
        extractor=extractor,
        n_bootstrap=cfg.n_bootstrap,
        n_permutations=cfg.n_permutations,
        msssim_pairs=cfg.msssim_pairs,
        nn_k=cfg.nn_k,
        seed=cfg.seed,
        device=device,
        real_sites=sites["test"],
        train_sites=sites["train"],
    )
    result.params_hash = params.hash()
    result.data.train_index = inputs["train_index"]
    result.config = {**cfg.to_dict(), "config_hash": cfg.hash()}
    path = params.stage_dir("metrics") / "metrics.json"
    atomic_write_json(path, _jsonable(result.to_dict()))
    result.path = path
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


#: The report's quality target: synthetic-vs-real at most this many times the real-vs-real value.
QUALITY_TARGET_RATIO = 2.0


def results_markdown(metrics_json: Mapping[str, Any]) -> str:
    """A Markdown summary of ``metrics.json`` for the book's Discussion.

    One row per metric with the synthetic-vs-real value, the real-vs-real baseline, their ratio
    and the paper's figure, then whether the report's quality target (RBF-MMD and FID at most
    :data:`QUALITY_TARGET_RATIO` times their baselines) was reached in this run.
    """
    metrics = metrics_json["metrics"]
    lines = [
        f"Features: `{metrics_json['extractor']}`; {metrics_json['n_synthetic']} synthetic, "
        f"{metrics_json['n_real']} real test and {metrics_json['n_train']} real training "
        f"images; 95 % intervals from {metrics_json['bootstrap']['n']} bootstrap resamples.",
        "",
        "| metric | synthetic vs real | real vs real | ratio | better | paper |",
        "|---|---|---|---:|---|---|",
    ]
    for key, m in metrics.items():
        base = m["baseline"]
        ratio = m["value"] / base if base and np.isfinite(base) and abs(base) > 1e-12 else None
        ratio_s = f"{ratio:.2f}" if ratio is not None else "–"
        paper = PAPER_RESULTS.get(key, "–")
        lines.append(
            f"| {m['label']} | {_with_ci(m['value'], tuple(m['ci']))} | "
            f"{_with_ci(base, tuple(m['baseline_ci']))} | {ratio_s} | {m['better']} | {paper} |"
        )
    verdicts = []
    for key in ("mmd_rbf", "fid"):
        if key not in metrics:
            continue
        m = metrics[key]
        limit = QUALITY_TARGET_RATIO * max(m["baseline"], 0.0)
        ok = m["value"] <= limit
        verdicts.append(
            f"- **{m['label']}**: {_fmt(m['value'])} against a real-vs-real baseline of "
            f"{_fmt(m['baseline'])} — the target (at most {QUALITY_TARGET_RATIO:g}× the baseline, "
            f"{_fmt(limit)}) is **{'reached' if ok else 'not reached'}**."
        )
    memo = metrics_json.get("memorisation", {})
    if memo:
        verdicts.append(
            f"- **Memorisation audit**: {memo['n_flagged']} of {metrics_json['n_synthetic']} "
            "synthetic samples are closer to a training image than 99 % of real test images are."
        )
    return "\n".join(lines + ["", *verdicts, ""])
