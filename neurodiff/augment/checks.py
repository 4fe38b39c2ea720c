"""Does the conditioning work? Two checks of the synthetic groups against the real ones.

1. **A classifier trained on real data only** (every training subject of both groups, the
   classifier of :mod:`.classify`) labels synthetic images: synthetic patients should be called
   patients and synthetic controls controls, about as often as real test images are.
2. **An atrophy proxy**: the share of dark (CSF-like) pixels in the central half of the image --
   where the ventricles and the frontal lobes lie -- below the 20th percentile of that region in
   real control training images. The simulated bvFTD pattern enlarges the ventricles and turns
   frontal grey matter into CSF signal, so real patients show more; synthetic patients should
   show the same shift. The proxy depends on the slice level, so images are compared level by
   level: a synthetic image takes the level of its nearest training image (pixel distance).
   Crude by design (one threshold, no segmentation): it reads a group shift, not a subject.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..measures.intervals import percentile_interval
from .classify import auroc, features, fit_score
from .data import ExperimentData

__all__ = ["atrophy_proxy", "classifier_check", "dark_fraction", "nearest_level"]


def _centre(images: np.ndarray) -> np.ndarray:
    """The central half of every spatial axis, flattened per image."""
    images = np.asarray(images)
    box = tuple(slice(n // 4, n - n // 4) for n in images.shape[2:])
    return images[(slice(None), slice(None), *box)].reshape(len(images), -1)


def dark_fraction(images: np.ndarray, threshold: float) -> np.ndarray:
    """Share of central-half pixels darker than ``threshold``, per image."""
    return (_centre(np.asarray(images)) < threshold).mean(axis=1)


def nearest_level(images: np.ndarray, reference: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The slice level of each image's nearest reference image (Euclidean pixel distance, in
    float64; a tie goes to the first reference)."""
    from sklearn.metrics import pairwise_distances_argmin

    a = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    # The same nearest image as argmin over |a|^2 - 2 a.b + |b|^2 (exact ties: the first, in
    # both); only two distances equal to within that expansion's rounding may go either way.
    return np.asarray(levels)[pairwise_distances_argmin(a, b)]


def classifier_check(data: ExperimentData, c: float) -> pd.DataFrame:
    """One row per image set (real test controls/patients, synthetic controls/patients): the
    share labelled as its own group by a classifier trained on every real training image, and
    the slice-level AUROC of each pair of sets (real test; synthetic)."""
    x_train = features(data.train)
    sets = {
        ("real test", 0): data.test[data.test_y == 0],
        ("real test", 1): data.test[data.test_y == 1],
        ("synthetic", 0): data.synthetic[0],
        ("synthetic", 1): data.synthetic[1],
    }
    names = list(sets)
    scores = fit_score(x_train, data.train_y, features(np.concatenate(list(sets.values()))), c)
    bounds = np.cumsum([0] + [len(v) for v in sets.values()])
    rows = []
    by_set = {k: scores[bounds[i] : bounds[i + 1]] for i, k in enumerate(names)}
    for (source, label), s in by_set.items():
        own = (s > 0) if label == 1 else (s <= 0)
        pair = np.concatenate([by_set[(source, 0)], by_set[(source, 1)]])
        y = np.r_[np.zeros(len(by_set[(source, 0)])), np.ones(len(by_set[(source, 1)]))]
        rows.append(
            {
                "images": source,
                "group": data.groups[label],
                "n": len(s),
                "labelled as own group": float(own.mean()),
                "slice AUROC (patients vs controls)": auroc(pair, y),
            }
        )
    return pd.DataFrame(rows)


def atrophy_proxy(data: ExperimentData, seed: int = 0, n_boot: int = 1000) -> pd.DataFrame:
    """Dark-pixel share by group, real and synthetic, level by level; and the patient - control
    difference averaged over levels with a bootstrap 95 % interval (real: over subjects;
    synthetic: over images). Columns: ``images, group, level, mean``; the summary rows have
    ``level = "all levels"`` and carry ``difference`` and its interval."""
    controls = data.train[data.train_y == 0]
    threshold = float(np.quantile(_centre(controls), 0.2))
    real = np.concatenate([data.train, data.test])
    real_y = np.concatenate([data.train_y, data.test_y])
    real_subject = np.concatenate([data.train_subject, data.test_subject])
    level_of_test = nearest_level(data.test, data.train, data.train_slice)  # same levels
    real_level = np.concatenate([data.train_slice, level_of_test])
    syn = np.concatenate([data.synthetic[0], data.synthetic[1]])
    syn_y = np.r_[np.zeros(len(data.synthetic[0])), np.ones(len(data.synthetic[1]))].astype(int)
    syn_level = nearest_level(syn, data.train, data.train_slice)
    frames = {
        "real": (dark_fraction(real, threshold), real_y, real_level, real_subject),
        "synthetic": (
            dark_fraction(syn, threshold),
            syn_y,
            syn_level,
            np.array([f"s{i}" for i in range(len(syn))]),
        ),
    }
    rows = []
    rng = np.random.default_rng(seed)
    for source, (value, y, level, unit) in frames.items():
        table = pd.DataFrame({"value": value, "y": y, "level": level, "unit": unit})
        for (lev, label), g in table.groupby(["level", "y"]):
            rows.append(
                {
                    "images": source,
                    "group": data.groups[label],
                    "level": int(lev),
                    "mean": float(g["value"].mean()),
                    "n": len(g),
                }
            )
        diff, reps = _level_matched_difference(table, rng, n_boot)
        lo, hi = percentile_interval(reps)  # NaN without replicates
        rows.append(
            {
                "images": source,
                "group": f"{data.groups[1]} - {data.groups[0]}",
                "level": "all levels",
                "mean": diff,
                "n": len(table),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    out = pd.DataFrame(rows)
    out.attrs["threshold"] = threshold
    return out


def _level_matched_difference(
    table: pd.DataFrame, rng: np.random.Generator, n_boot: int
) -> tuple[float, np.ndarray]:
    """Mean over levels (present in both groups) of patient mean - control mean; replicates
    resample the units (subjects or images) within each group (weighted sums, no loops over
    replicates)."""
    levels = np.sort(table["level"].unique())
    col = np.searchsorted(levels, table["level"].to_numpy())
    parts = []
    for k in (0, 1):
        t = table[table["y"] == k]
        units, row = np.unique(t["unit"].to_numpy(), return_inverse=True)
        c = np.searchsorted(levels, t["level"].to_numpy())
        total = np.zeros((len(units), len(levels)))
        count = np.zeros_like(total)
        np.add.at(total, (row, c), t["value"].to_numpy())
        np.add.at(count, (row, c), 1.0)
        w = np.stack(
            [np.ones(len(units))]
            + [
                np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))
                for _ in range(n_boot)
            ]
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            parts.append((w @ total) / (w @ count))
    del col
    diff = parts[1] - parts[0]  # (1 + n_boot, levels), NaN where a group misses a level
    shared = np.isfinite(diff[0])
    if not shared.any():
        return float("nan"), np.array([])
    reps = np.nanmean(diff[1:, shared], axis=1)
    return float(diff[0, shared].mean()), reps[np.isfinite(reps)]
