"""k-NN manifold metrics: precision, recall, density and coverage (the ``prdc`` package)."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from .checks import check_features

__all__ = [
    "prdc_from_distances",
    "prdc_metrics",
    "prdc_per_sample",
]


def prdc_metrics(real: np.ndarray, synthetic: np.ndarray, nn_k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (``prdc.compute_prdc``, Naeem et al. 2020)."""
    import prdc

    x, y = check_features(
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

    x, y = check_features(
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


def prdc_from_distances(
    d_real: np.ndarray, d_syn: np.ndarray, d_cross: np.ndarray, nn_k: int = 5
) -> dict[str, float]:
    """:func:`prdc_metrics` from precomputed Euclidean distances: within the real set
    ``(N, N)``, within the synthetic set ``(M, M)`` and real-to-synthetic ``(N, M)``.

    The same radii (k-th nearest neighbour, self excluded) and comparisons as the ``prdc``
    package. Hand-written because the package computes the distances on every call: the
    real-vs-real redraws cut blocks from one pooled distance matrix instead.
    """
    r_real = np.partition(d_real, nn_k, axis=1)[:, nn_k]
    r_syn = np.partition(d_syn, nn_k, axis=1)[:, nn_k]
    inside_real = d_cross < r_real[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d_cross < r_syn[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / nn_k),
        "coverage": float((d_cross.min(axis=1) < r_real).mean()),
    }
