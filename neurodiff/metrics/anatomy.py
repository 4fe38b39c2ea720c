"""Is it anatomy? The tissue fractions of a run at matched slice levels, with their interval and
real-vs-real range, from the pure functions of :mod:`neurodiff.measures.plausibility`
(``csf_fraction_gap``, ``gm_fraction_gap``, ``wm_fraction_gap``; ``metrics.json``), and the
levels every image is compared at (:class:`Levels`; also those of the group difference map,
:mod:`.difference`).

Value: real test vs synthetic, with a bootstrap 95 % CI (real images resampled by subject,
synthetic ones one by one). Real vs real: the same quantity between two groups of real subjects
redrawn ``n_redraws`` times, stratified by site (and group) as the split is; without redraws,
the test split against the training split with a bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..measures.bootstrap import resample_indices
from ..measures.checks import sq_dists, subject_labels
from ..measures.intervals import real_range
from ..measures.plausibility import (
    TISSUES,
    TissueModel,
    fit_tissue_model,
    level_gap,
    level_gap_replicates,
    nearest_levels,
)
from ..measures.redraws import RedrawnBaseline, first_counts, redraw_indices
from .entries import PIXELS, EvalSettings, Sets, metric_value
from .inputs import MetricsInputs, SplitLabels
from .results import MetricValue

__all__ = [
    "TISSUE_METRICS",
    "Levels",
    "TissueData",
    "group_levels",
    "place_levels",
    "redrawn_range",
    "split_levels",
    "tissue_metrics",
]

#: The key in ``metrics.json`` of each tissue's gap at matched levels.
TISSUE_METRICS = {t: f"{t}_fraction_gap" for t in TISSUES}
#: The feature space named in the tissue entries.
_TISSUE_SPACE = f"{PIXELS} (3-class tissue model)"


@dataclass(frozen=True)
class Levels:
    """The level of every image of one comparison's sets (real test, synthetic, training).

    ``levels``: real images at their slice, synthetic ones at the slice of their nearest
    training image in feature space (the memorisation audit's neighbour; synthetic images carry
    no slice position). ``placed``: real images placed the way a synthetic one is, at the slice
    of their nearest image of *another subject* among the pooled real images (synthetic: as
    ``levels``). A real image compared in the synthetic set's role takes its ``placed`` level,
    so that a real-vs-real range holds the error of the placement too.
    """

    levels: Sets[np.ndarray]
    placed: Sets[np.ndarray]


@dataclass(frozen=True)
class TissueData(Levels):
    """The tissue fractions of a run, for figures and the calibration ladder: the images'
    :class:`Levels`, the fitted ``model`` and the ``fractions`` ``(N, 3)`` of every image of
    each set."""

    model: TissueModel | None = None
    fractions: Sets[np.ndarray] | None = None


def split_levels(labels: SplitLabels, n: int) -> np.ndarray:
    """The level of each of ``n`` images of a real split: its ``slice`` from the split's index
    table; one level for all (0) without one, or for volumes (``slice`` -1)."""
    index = labels.index
    if index is not None and "slice" in index and len(index) == n:
        return index["slice"].to_numpy().astype(int)
    return np.zeros(n, dtype=int)


def place_levels(
    features: Mapping[str, np.ndarray],
    subjects: Sets[np.ndarray | None],
    real_levels: np.ndarray,
    train_levels: np.ndarray,
) -> Levels:
    """The :class:`Levels` of a comparison from the features of its three sets (keys ``real``,
    ``synthetic``, ``train``) and the subject of every real image (``subjects.real`` and
    ``.train``, disjoint labels)."""
    syn = nearest_levels(sq_dists(features["synthetic"], features["train"]), train_levels)
    pooled_subjects = np.concatenate([subjects.real, subjects.train])
    pooled_levels = np.concatenate([real_levels, train_levels])
    pooled = np.concatenate([features["real"], features["train"]])
    placed = nearest_levels(sq_dists(pooled), pooled_levels, (pooled_subjects, pooled_subjects))
    n = len(real_levels)
    return Levels(Sets(real_levels, syn, train_levels), Sets(placed[:n], syn, placed[n:]))


def group_levels(inputs: MetricsInputs, extractor: Any) -> Levels:
    """:func:`place_levels` of one group's inputs, features by ``extractor`` (a
    :class:`~neurodiff.features.FeatureExtractor`, the run's), subjects from the index tables."""
    images = {"real": inputs.test, "synthetic": inputs.synthetic, "train": inputs.train}
    features = {k: extractor(np.ascontiguousarray(x, np.float32)) for k, x in images.items()}
    labels = {split: inputs.labels(split) for split in ("test", "train")}
    subjects = Sets(
        subject_labels(labels["test"].subjects, len(inputs.test), "test subjects", "r"),
        None,
        subject_labels(labels["train"].subjects, len(inputs.train), "train subjects", "t"),
    )
    return place_levels(
        features,
        subjects,
        split_levels(labels["test"], len(inputs.test)),
        split_levels(labels["train"], len(inputs.train)),
    )


def tissue_metrics(
    images: Sets[np.ndarray],
    sub: Mapping[str, np.ndarray],
    subjects: Sets[np.ndarray | None],
    levels: Levels,
    settings: EvalSettings,
    strata: np.ndarray | None = None,
    source: str = "",
) -> tuple[dict[str, MetricValue], TissueData]:
    """The gap of each tissue's fraction at matched levels (:func:`~neurodiff.measures.
    plausibility.level_gap`), real test vs synthetic on the equal-size subsets ``sub``.

    One tissue model is fitted on every training image and classifies all sets. Each image is
    compared at its :class:`Levels` (``levels`` in the real test set's role, ``placed`` in the
    synthetic set's). The redraws are those of every other set metric (same subjects per
    stratum, same seed; ``source`` says how they were made).
    """
    model = fit_tissue_model(images.train, seed=settings.seed)
    names = ("real (test)", "synthetic", "train")
    frac = Sets(*(model.fractions(x, nm) for x, nm in zip(images.as_dict().values(), names)))
    data = TissueData(levels.levels, levels.placed, model=model, fractions=frac)
    lv = levels.levels
    syn_levels = lv.synthetic
    pooled_subjects = np.concatenate([subjects.real, subjects.train])
    pooled_levels = np.concatenate([lv.real, lv.train])
    placed = np.concatenate([levels.placed.real, levels.placed.train])
    n_real = len(images.real)
    rs, ss, ts = sub["real"], sub["synthetic"], sub["train"]
    n = len(rs)
    rng = np.random.default_rng(settings.seed + 5)  # its own stream: the other metrics unmoved
    b, units_r = settings.n_bootstrap, subjects.real[rs]
    i_real, i_syn = resample_indices(n, b, rng, units_r), resample_indices(n, b, rng) + n
    i_base, i_train = (
        resample_indices(n, b, rng, units_r),
        resample_indices(n, b, rng, subjects.train[ts]) + n,
    )
    # value: pooled [real subset; synthetic subset], each at its own level
    f_syn = np.concatenate([frac.real[rs], frac.synthetic[ss]])
    lv_syn = np.concatenate([lv.real[rs], syn_levels[ss]])
    value = level_gap(frac.real[rs], lv.real[rs], frac.synthetic[ss], syn_levels[ss])
    reps = level_gap_replicates(f_syn, lv_syn, lv_syn, i_real, i_syn)
    # the one split's baseline: real subset vs training subset, placed as synthetic images are
    f_tr = np.concatenate([frac.real[rs], frac.train[ts]])
    own = np.concatenate([lv.real[rs], lv.train[ts]])
    as_other = np.concatenate([placed[rs], placed[n_real + ts]])
    first, second = np.arange(n)[None], np.arange(n, 2 * n)[None]
    baseline = level_gap_replicates(f_tr, own, as_other, first, second)[0]
    base_reps = level_gap_replicates(f_tr, own, as_other, i_base, i_train)
    redrawn = _redrawn_gaps(
        np.concatenate([frac.real, frac.train]),
        pooled_levels,
        placed,
        pooled_subjects,
        n_real,
        n,
        settings,
        strata,
        source,
    )
    shared = np.intersect1d(lv.real[rs], syn_levels[ss])
    out = {}
    for c, tissue in enumerate(TISSUES):
        out[TISSUE_METRICS[tissue]] = metric_value(
            TISSUE_METRICS[tissue],
            value[c],
            reps[:, c],
            baseline[c],
            base_reps[:, c],
            _TISSUE_SPACE,
            n,
            n,
            redrawn=None if redrawn is None else redrawn[c],
            real_fraction=float(np.nanmean(frac.real[rs, c])),
            synthetic_fraction=float(np.nanmean(frac.synthetic[ss, c])),
            tissue_mean_intensity=model.means[c],
            levels_shared=len(shared),
            synthetic_at_shared_levels=int(np.isin(syn_levels[ss], shared).sum()),
            brain_threshold=model.threshold,
        )
    return out, data


def _redrawn_gaps(
    fractions: np.ndarray,
    levels: np.ndarray,
    placed: np.ndarray,
    subjects: np.ndarray,
    n_test: int,
    n: int,
    settings: EvalSettings,
    strata: np.ndarray | None,
    source: str,
) -> list[RedrawnBaseline] | None:
    """Each tissue's real-vs-real range: the gaps of the redraws of the other set metrics (the
    same call, seed and strata as :func:`~neurodiff.measures.redraws.redraw_baselines`); None
    without redraws."""
    if settings.n_redraws <= 0:
        return None
    counts = first_counts(subjects, np.arange(len(subjects)) < n_test, strata)
    ia, ib = redraw_indices(
        subjects,
        counts,
        n,
        settings.n_redraws,
        np.random.default_rng(settings.seed + 2),
        strata=strata,
    )
    draws = level_gap_replicates(fractions, levels, placed, ia, ib)
    return [redrawn_range(draws[:, c], source) for c in range(len(TISSUES))]


def redrawn_range(values: np.ndarray, source: str) -> RedrawnBaseline:
    """A real-vs-real range of finite redrawn values (NaN without any)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return RedrawnBaseline(math.nan, (math.nan, math.nan), source)
    return RedrawnBaseline(float(np.median(v)), real_range(v), source)
