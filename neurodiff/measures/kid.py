"""Kernel Inception-style distance (KID) on feature matrices: torchmetrics' polynomial-kernel
MMD^2, and its replicates from the pooled kernel matrix.

KID (Binkowski et al. 2018) is the unbiased MMD^2 with the cubic polynomial kernel
``k(x, y) = (x . y / F + 1)^3`` on ``F`` features. Unlike FID it has no bias in the sample size:
its expectation is the same at n = 64 as at n = 10 000, zero for identical distributions (so it
can be negative). FID's small-sample bias depends on the spectra of both covariances, hence on
the generator: two generators can swap ranks between n = 64 and large n. KID beside FID shows
whether a verdict rests on that bias.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MetricError
from .checks import check_features

__all__ = ["kid", "poly_kernel"]


def kid(real: np.ndarray, synthetic: np.ndarray) -> float:
    """KID of ``(N, F)`` real and ``(N, F)`` synthetic features: torchmetrics' ``poly_mmd``
    (degree 3, gamma 1/F, coef 1, the defaults of ``KernelInceptionDistance``) on the whole sets,
    i.e. one "subset" of all N samples. Equal N (torchmetrics' estimator assumes it)."""
    from torchmetrics.image.kid import poly_mmd

    x, y = check_features(real, synthetic, 2, "KID needs two samples per set")
    if len(x) != len(y):
        raise MetricError(f"KID needs sets of equal size; got {len(x)} real, {len(y)} synthetic")
    x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, y))
    return float(poly_mmd(x, y))


def poly_kernel(features: np.ndarray) -> np.ndarray:
    """The ``(N, N)`` matrix of KID's kernel between pooled ``(N, F)`` features (torchmetrics'
    ``poly_kernel``), for replicates read by :func:`neurodiff.measures.mmd.mmd2_replicates`."""
    from torchmetrics.image.kid import poly_kernel as _poly

    f = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64))
    return _poly(f, f).numpy()
