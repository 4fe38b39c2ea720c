"""Intensity pieces of stage 2's per-scan pipeline: normalisation inside the brain, the QC
comparisons (NCC, Dice) and the samples behind the before/after histograms."""

from __future__ import annotations

import math

import numpy as np

from ..config import PreprocessConfig

__all__ = [
    "HIST_SAMPLES",
    "MIN_MASK_VOXELS",
    "dice",
    "ncc",
    "normalise",
    "sample_pair",
    "slice_correlations",
]

#: Fewest brain-mask voxels whose intensities set the scale (below: the whole image does).
MIN_MASK_VOXELS = 100

#: Intensity samples kept per subject for the before/after histograms.
HIST_SAMPLES = 2000


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson r) of ``a`` and ``b`` inside ``mask``; NaN if flat."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask) > 0
        a, b = a[m], b[m]
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (NaN when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else float("nan")


def sample_pair(before: np.ndarray, after: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """The same random head voxels before and after normalisation.

    Head = above 10 % of the normalised range, which leaves out the background noise.
    """
    idx = np.flatnonzero(after.ravel() > 0.1)
    if idx.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=min(HIST_SAMPLES, idx.size), replace=False)
    return before.ravel()[pick].astype(np.float32), after.ravel()[pick].astype(np.float32)


def normalise(
    d: dict, cfg: PreprocessConfig, brain: np.ndarray | None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Step 7: intensities to [0, 1]; returns the data, the volume before and after.

    With a brain mask the percentiles (or min and max) are taken inside it, so the same brain
    gets the same scale whatever surrounds it (a skull, a neck, another field of view, an
    intensity offset); the stripped background, below the low bound, clips to 0. MONAI's
    ``ScaleIntensityRange*`` transforms have no mask argument, so the bounds are computed here
    and applied with ``ScaleIntensityRanged``.
    """
    from monai.transforms import (
        ScaleIntensityd,
        ScaleIntensityRanged,
        ScaleIntensityRangePercentilesd,
    )

    before = np.asarray(d["image"][0], dtype=np.float32).copy()
    if float(before.max() - before.min()) <= 0:
        return d, before, np.zeros_like(before)
    # a mask of a handful of voxels (a failed stripping) would set the scale: whole image then
    inside = before[brain] if brain is not None and brain.sum() >= MIN_MASK_VOXELS else None
    if inside is not None:
        lo, hi = (
            np.percentile(inside, cfg.clip_percentiles)
            if cfg.normalise == "percentile"
            else (inside.min(), inside.max())
        )
        lo = float(lo)  # inside the brain: an intensity offset of the scanner does not count
        norm = ScaleIntensityRanged(
            keys="image", a_min=lo, a_max=max(float(hi), lo + 1e-6), b_min=0.0, b_max=1.0, clip=True
        )
    elif cfg.normalise == "percentile":
        lo, hi = cfg.clip_percentiles
        norm = ScaleIntensityRangePercentilesd(
            keys="image", lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True
        )
    else:
        norm = ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)
    d = norm(d)
    return d, before, np.clip(np.asarray(d["image"][0], dtype=np.float32), 0.0, 1.0)


def slice_correlations(a: np.ndarray, b: np.ndarray, inside: bool = False) -> list[float]:
    """Pearson r of two preprocessed volumes (in [0, 1]), per axial slice with brain (above
    0.02) in >= 10 % of its pixels in either: over the whole slice, or inside both brains only;
    NaN where a slice is flat (no brain in one). How the same brain in two presentations is
    compared (``benchmarks/skull_strip.py``, ``tests/test_real_scans.py``)."""
    both = (a > 0.02) & (b > 0.02)
    either = (a > 0.02) | (b > 0.02)
    out = []
    for z in range(a.shape[2]):
        if either[:, :, z].mean() >= 0.10:
            m = both[:, :, z] if inside else np.ones_like(both[:, :, z])
            x, y = a[:, :, z][m], b[:, :, z][m]
            ok = m.sum() > 2 and x.std() > 0 and y.std() > 0
            out.append(float(np.corrcoef(x, y)[0, 1]) if ok else float("nan"))
    return out
