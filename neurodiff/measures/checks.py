"""Input checks shared by every metric: image sets, feature matrices, pairwise distances."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import MetricError

__all__ = [
    "check_features",
    "check_images",
    "check_pair",
    "gram",
    "sq_dists",
    "subject_labels",
]


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


def check_pair(real: np.ndarray, synthetic: np.ndarray, names=("real", "synthetic")) -> None:
    if real.shape[1:] != synthetic.shape[1:]:
        raise MetricError(
            f"{names[0]} and {names[1]} images differ in shape: "
            f"{real.shape[1:]} vs {synthetic.shape[1:]} (per sample); both sets "
            "must have the same (1, *spatial) shape"
        )


def check_features(
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


def sq_dists(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``x`` and of ``y`` (default ``x``)."""
    # Hand-written rather than scipy.spatial.distance.cdist(x, y, "sqeuclidean"): the Gram form
    # is one BLAS product (cdist loops in C, several times slower for wide features), and the
    # bootstrap replicates reuse the same Gram matrices, so value and replicates match exactly.
    y = x if y is None else y
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def gram(x: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``x x^T`` of flattened samples in float64, accumulated over voxel chunks (3D-safe)."""
    flat = x.reshape(len(x), -1)
    g = np.zeros((len(x), len(x)))
    for s in range(0, flat.shape[1], chunk):
        c = flat[:, s : s + chunk].astype(np.float64)
        g += c @ c.T
    return g


def subject_labels(labels: Any, n: int, name: str, prefix: str) -> np.ndarray:
    """Subject labels as strings (checked for length); without labels one subject per sample."""
    if labels is None:
        return np.array([f"{prefix}{i}" for i in range(n)])
    labels = np.asarray(labels).astype(str)
    if len(labels) != n:
        raise MetricError(
            f"argument {name!r} must give one subject per image: {len(labels)} labels for "
            f"{n} images"
        )
    return np.char.add(prefix, labels)
