"""Frechet Inception-style distance on feature matrices (MONAI ``FIDMetric``) and its replicates."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
import torch

from .bootstrap import chunks
from .checks import check_features

__all__ = [
    "fid",
    "fid_replicates",
]


def fid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to ``(N, F)`` real and synthetic features.

    ``|mu_r - mu_s|^2 + tr(S_r + S_s - 2 (S_r S_s)^(1/2))`` via MONAI's ``FIDMetric``.
    """
    from monai.metrics import FIDMetric

    x, y = check_features(real, synthetic, 2, "FID needs two samples per set for a covariance")
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
        value = float(fid_replicates(pooled @ pooled.T, idx_x, idx_y)[0])
    return value


def fid_replicates(g: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """FID for each row of resample indices, from the pooled linear Gram matrix ``g``.

    With centred feature matrices A (n x F) and B (m x F), the non-zero eigenvalues of
    S_a S_b equal the squared singular values of A B^T / sqrt((n-1)(m-1)), so
    ``tr (S_a S_b)^(1/2)`` is the nuclear norm of the n x m cross matrix. Everything is read from
    ``g = F F^T``: no F x F square root per replicate, which is what makes 200 replicates cheap.
    (MONAI's and torchmetrics' FID take one pair of feature sets per call.)
    """
    out = np.empty(len(ia))
    n, m = ia.shape[1], ib.shape[1]
    for s in chunks(len(ia), max(n, m)):
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
