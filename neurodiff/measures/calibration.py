"""The calibration ladder: what each metric says about *real* images degraded in known ways.

"FID 1.7x the real-vs-real value" means little on its own. The ladder computes every set metric
for the real test split against real training images that were blurred, noised, shifted in
intensity or given a grey background haze, with the same features, sizes and bandwidth as the
synthetic comparison -- so a synthetic value can be read as "about as far from real as blurring
by half a pixel". Rung 0 is undegraded real data.

The degradations use MONAI's transforms where one exists (``GaussianSmooth`` for the blur); the
noise, shift and haze are one line each on the [0, 1] images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..features import FeatureExtractor, get_extractor
from .bootstrap import subset
from .checks import check_images, check_pair, sq_dists
from .frechet import fid
from .manifold import prdc_metrics
from .mmd import median_bandwidth, mmd_rbf
from .similarity import diversity

__all__ = [
    "LADDER",
    "LADDER_METRICS",
    "calibration_ladder",
    "degrade",
    "place_on_ladder",
]

#: Metrics on the ladder (the set metrics of stage 5, by their keys in ``metrics.json``).
LADDER_METRICS = (
    "fid",
    "mmd_rbf",
    "precision",
    "recall",
    "density",
    "coverage",
    "ms_ssim_diversity",
)


def _blur(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from monai.transforms import GaussianSmooth

        smooth = GaussianSmooth(sigma=sigma)
        return np.stack([np.asarray(smooth(img)) for img in x]).astype(np.float32)

    return apply


def _noise(sigma: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(x + rng.normal(0.0, sigma, x.shape), 0.0, 1.0).astype(np.float32)

    return apply


def _shift(delta: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(x + delta, 0.0, 1.0).astype(np.float32)

    return apply


def _haze(level: float, background: float = 0.05):
    def apply(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.where(x < background, x + level, x).astype(np.float32)

    return apply


#: name -> degradation of [0, 1] images ``(N, 1, *spatial)`` (seeded by the generator).
LADDER: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "real (undegraded)": lambda x, rng: x,
    "blur sigma 0.5 px": _blur(0.5),
    "blur sigma 1 px": _blur(1.0),
    "noise sigma 0.05": _noise(0.05),
    "noise sigma 0.1": _noise(0.1),
    "intensity shift +0.05": _shift(0.05),
    "background haze +0.1": _haze(0.1),
}


def degrade(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """``images`` in [0, 1] degraded by rung ``name`` of :data:`LADDER`."""
    if name not in LADDER:
        raise KeyError(f"unknown degradation {name!r}; known: {list(LADDER)}")
    return LADDER[name](np.asarray(images, dtype=np.float32), np.random.default_rng(seed))


def calibration_ladder(
    real: np.ndarray,
    train: np.ndarray,
    *,
    extractor: Any = "random",
    n: int | None = None,
    nn_k: int = 5,
    msssim_pairs: int = 100,
    bandwidth: float | None = None,
    seed: int = 0,
    device: Any = "cpu",
) -> pd.DataFrame:
    """Every set metric of the real test images against degraded real training images.

    Parameters
    ----------
    real, train : np.ndarray
        The test and training splits, ``(N, 1, *spatial)`` in [0, 1].
    n : int, optional
        Set size (default: the smaller split, as the synthetic comparison's ``n_subset``).
    bandwidth : float, optional
        The report's RBF bandwidth (``MetricsResult.bandwidth``); default: the median heuristic on
        the undegraded pooled features.

    Returns
    -------
    pandas.DataFrame
        One row per rung of :data:`LADDER` (index ``degradation``), one column per metric of
        :data:`LADDER_METRICS`.
    """
    real = check_images(real, "real (test)")
    train = check_images(train, "train")
    check_pair(real, train, ("real (test)", "train"))
    if isinstance(extractor, str):
        extractor = get_extractor(extractor, seed=seed, device=device)
    assert isinstance(extractor, FeatureExtractor)
    rng = np.random.default_rng(seed)
    n = min(len(real), len(train)) if n is None else min(n, len(real), len(train))
    real_n = real[subset(len(real), n, rng)]
    train_n = train[subset(len(train), n, rng)]
    real_f = extractor(real_n)
    if bandwidth is None:
        pooled = np.concatenate([real_f, extractor(train_n)])
        bandwidth = median_bandwidth(sq_dists(pooled))
    rows = []
    for k, name in enumerate(LADDER):
        images = degrade(train_n, name, seed + k)
        feats = extractor(images)
        prdc = prdc_metrics(real_f, feats, nn_k)
        rows.append(
            {
                "degradation": name,
                "fid": fid(real_f, feats),
                "mmd_rbf": mmd_rbf(real_f, feats, bandwidth=bandwidth).value,
                **prdc,
                "ms_ssim_diversity": diversity(
                    images, msssim_pairs, seed=seed, device=device
                ).mean(),
            }
        )
    table = pd.DataFrame(rows).set_index("degradation")[list(LADDER_METRICS)]
    table.attrs.update(n=n, bandwidth=bandwidth, extractor=extractor.name_for(real.ndim - 2))
    return table


def place_on_ladder(ladder: pd.DataFrame, metric: str, value: float) -> str:
    """The rung whose ``metric`` is nearest to ``value`` (e.g. a synthetic set's FID)."""
    column = ladder[metric].astype(float)
    return str((column - float(value)).abs().idxmin())
