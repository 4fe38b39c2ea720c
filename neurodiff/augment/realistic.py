"""Arm B: realistic classical augmentation, the comparator a reviewer expects at its best.

The variation a preprocessed slice really has between scanners and subjects -- intensity scale
and contrast, a residual bias field, noise, small differences of shape -- and nothing it never
has (after registration, no shifts of several millimetres or flips). All of it is MONAI's random
transforms; two strengths are offered and the validation pool picks one (:data:`STRENGTHS`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STRENGTHS", "realistic_copies"]

#: The strengths the validation pool chooses from: (bias-field coefficient range, noise SD,
#: gamma range, intensity scale, elastic magnitude in pixels).
STRENGTHS: dict[str, tuple[float, float, tuple[float, float], float, tuple[float, float]]] = {
    "mild": (0.1, 0.02, (0.9, 1.1), 0.05, (0.5, 1.0)),
    "strong": (0.25, 0.05, (0.75, 1.3), 0.12, (1.0, 2.0)),
}


def _transform(strength: str, seed: int, dims: int):
    from monai.transforms import (
        Compose,
        Rand2DElastic,
        Rand3DElastic,
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandScaleIntensity,
    )

    bias, noise, gamma, scale, elastic = STRENGTHS[strength]
    t = Compose(
        [
            # in [0, 1] for the bias field and gamma, which assume non-negative intensities
            RandBiasField(coeff_range=(0.0, bias), degree=3, prob=1.0),
            RandAdjustContrast(gamma=gamma, prob=1.0),
            RandScaleIntensity(factors=scale, prob=1.0),
            Rand2DElastic(
                spacing=(12, 12), magnitude_range=elastic, prob=1.0, padding_mode="border"
            )
            if dims == 2
            else Rand3DElastic(
                sigma_range=(4, 6), magnitude_range=elastic, prob=1.0, padding_mode="border"
            ),
            RandGaussianNoise(std=noise, prob=1.0),
        ]
    )
    t.set_random_state(seed=seed)
    return t


def realistic_copies(
    images: np.ndarray, labels: np.ndarray, m: int, strength: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` augmented copies per class of ``images`` (``(N, 1, *spatial)`` in [-1, 1]; sources
    drawn with replacement within each class): ``(copies, labels)``, copies in [-1, 1]."""
    if strength not in STRENGTHS:
        raise ValueError(f"unknown strength {strength!r}; expected one of {list(STRENGTHS)}")
    rng = np.random.default_rng(seed)
    sources = np.concatenate([rng.choice(np.flatnonzero(labels == k), m) for k in (0, 1)])
    t = _transform(strength, int(rng.integers(2**31)), np.asarray(images).ndim - 2)
    out = np.empty((len(sources), *np.asarray(images).shape[1:]), dtype=np.float32)
    for i, s in enumerate(sources):
        x01 = (np.asarray(images[s], dtype=np.float32) + 1.0) / 2.0
        y = np.asarray(t(x01), dtype=np.float32)
        out[i] = np.clip(y * 2.0 - 1.0, -1.0, 1.0)
    return out, np.repeat([0, 1], m)
