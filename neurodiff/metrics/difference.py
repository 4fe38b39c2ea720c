"""The group difference map of a run: does the generator reproduce *where* and *how much* one
group differs from another (the simulated patients' atrophy), not only what each looks like?

:func:`group_difference_metrics` compares the case - reference difference map of the real test
split (mean case image minus mean reference image, at matched slice levels:
:func:`~neurodiff.measures.plausibility.group_difference`) with that of the synthetic images:

* ``difference_map_r`` -- the two maps' Pearson correlation inside the brain (higher is
  better; 1: the same pattern);
* ``atrophy_effect_gap`` -- the synthetic map's mean in the region of interest (where the
  atrophy is) minus the real map's (close to the real-vs-real range, which is centred near 0;
  above it: a weaker effect than real, below: a stronger one).

Each with a bootstrap 95 % CI (real test images resampled by subject within each group,
synthetic ones one by one within each group) and a real-vs-real range: ``n_redraws``
subject-level redraws of the pooled real subjects into a group of the test split's make-up (per
site and group) and the rest, the first group's map against the rest's, whose images are drawn
per group to the synthetic set's sizes and placed at levels as synthetic images are. Without
redraws, the test split against the training split (so drawn) with a bootstrap interval.

:func:`difference_maps` is the same from a run's outputs (the maps for the figure); the per-group
view (:func:`.groups.by_group`) writes its numbers into ``by_group.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts
from ..config import MetricsConfig
from ..device import resolve_device
from ..errors import MetricError, NeurodiffError
from ..features import get_extractor
from ..measures.bootstrap import resample_indices, subset
from ..measures.checks import check_images, subject_labels
from ..measures.plausibility import BRAIN_THRESHOLD, difference_of_means, map_correlation, roi_mean
from ..measures.redraws import first_counts, redraw_indices, strata_of
from .anatomy import Levels, group_levels, redrawn_range, split_levels
from .entries import PIXELS, EvalSettings, metric_value
from .inputs import MetricsInputs, load_inputs
from .results import DIFFERENCE_METRICS, MetricValue

__all__ = [
    "ROI_QUANTILE",
    "GroupDifference",
    "atrophy_roi",
    "difference_for",
    "difference_maps",
    "group_difference_metrics",
]

#: Without atrophy regions on the image grid, the region of interest is this share of the brain
#: voxels where the *training* split's case group is darkest relative to its reference group.
ROI_QUANTILE = 0.1


@dataclass(frozen=True)
class GroupDifference:
    """The mean image of the ``case`` group minus that of the ``reference`` group, real (test
    split) and synthetic (``spatial`` maps, intensities in [0, 1]), the ``brain`` they are
    compared in (the mean real image above the brain threshold), the region of interest
    ``roi`` and where it comes from (``roi_source``), the metrics of :data:`DIFFERENCE_METRICS`
    and the images each map was made of (``counts``)."""

    case: str
    reference: str
    real: np.ndarray
    synthetic: np.ndarray
    brain: np.ndarray
    roi: np.ndarray
    roi_source: str
    metrics: dict[str, MetricValue]
    counts: dict[str, int]


@dataclass(frozen=True)
class _Set:
    """Images of two groups pooled: whether each is of the case group, its level in the real
    test set's role (``levels``) and in the synthetic set's (``placed``), its subject and its
    stratum (site/group; None without subjects or sites)."""

    images: np.ndarray
    case: np.ndarray
    levels: np.ndarray
    placed: np.ndarray
    subjects: np.ndarray | None = None
    strata: np.ndarray | None = None

    def map(self, case_index: np.ndarray, reference_index: np.ndarray, role: str) -> np.ndarray:
        """The difference map of the images at these indices, at the levels of ``role``
        (``"real"``: ``levels``; ``"other"``: ``placed``)."""
        levels = self.levels if role == "real" else self.placed
        return difference_of_means(self.images, case_index, reference_index, levels)

    def whole(self, role: str) -> np.ndarray:
        return self.map(np.flatnonzero(self.case), np.flatnonzero(~self.case), role)

    def take(self, index: np.ndarray) -> _Set:
        def pick(x):
            return None if x is None else x[index]

        return _Set(
            self.images[index],
            self.case[index],
            self.levels[index],
            self.placed[index],
            pick(self.subjects),
            pick(self.strata),
        )


def _real_set(
    case: MetricsInputs, reference: MetricsInputs, split: str, levels: Mapping[str, Levels]
) -> _Set:
    """One real split of both groups (case first), with levels, subjects and strata."""
    key = "real" if split == "test" else "train"
    parts = [case, reference]
    images = [getattr(x, split) for x in parts]
    labels = [x.labels(split) for x in parts]
    lv, placed = [], []
    for x, lab, im in zip(parts, labels, images):
        given = levels.get(str(x.group))
        own = split_levels(lab, len(im))
        lv.append(own if given is None else getattr(given.levels, key))
        placed.append(own if given is None else getattr(given.placed, key))
    subjects = [
        subject_labels(lab.subjects, len(im), f"{split} subjects", f"{split}{k}:")
        for k, (lab, im) in enumerate(zip(labels, images))
    ]
    is_case = np.repeat([True, False], [len(x) for x in images])
    sites = [lab.sites for lab in labels]
    strata = None
    if all(s is not None for s in sites):
        strata = strata_of(np.concatenate([np.asarray(s) for s in sites]), is_case)
    return _Set(
        np.concatenate(images),
        is_case,
        np.concatenate(lv),
        np.concatenate(placed),
        np.concatenate(subjects),
        strata,
    )


def _synthetic_set(
    case: MetricsInputs, reference: MetricsInputs, levels: Mapping[str, Levels]
) -> _Set:
    """The synthetic images of both groups (case first), at their assigned levels."""
    images = [case.synthetic, reference.synthetic]
    lv = []
    for x, im in zip((case, reference), images):
        given = levels.get(str(x.group))
        lv.append(np.zeros(len(im), dtype=int) if given is None else given.levels.synthetic)
    is_case = np.repeat([True, False], [len(x) for x in images])
    both = np.concatenate(lv)
    return _Set(np.concatenate(images), is_case, both, both)


def _sets(
    case: MetricsInputs, reference: MetricsInputs, levels: Mapping[str, Levels]
) -> tuple[_Set, _Set, _Set]:
    """The real test, training and synthetic sets of both groups, checked: images of both
    groups in each, ``(N, 1, *spatial)`` in [0, 1]."""
    sets = (
        _real_set(case, reference, "test", levels),
        _real_set(case, reference, "train", levels),
        _synthetic_set(case, reference, levels),
    )
    names = ("real test", "training", "synthetic")
    for s, name in zip(sets, names):
        if s.case.all() or not s.case.any():
            raise MetricError(
                f"the group difference map needs {name} images of both groups "
                f"({case.group!r} and {reference.group!r}); found "
                f"{int(s.case.sum())} and {int((~s.case).sum())}"
            )
    test, train, syn = (
        replace(s, images=check_images(s.images, f"{name} images", min_samples=1))
        for s, name in zip(sets, names)
    )
    return test, train, syn


def _stats(d_real: np.ndarray, d_other: np.ndarray, brain: np.ndarray, roi: np.ndarray):
    """(correlation inside the brain, ROI mean of ``d_other`` minus that of ``d_real``)."""
    return map_correlation(d_real, d_other, brain), roi_mean(d_other, roi) - roi_mean(d_real, roi)


def group_difference_metrics(
    case: MetricsInputs,
    reference: MetricsInputs,
    settings: EvalSettings,
    roi: np.ndarray | None = None,
    roi_source: str = "",
    levels: Mapping[str, Levels] | None = None,
) -> GroupDifference:
    """The case - reference difference map of the real test split against that of the
    synthetic images (the module docstring defines both metrics and their ranges).

    ``roi``: a boolean map of the images' spatial shape, ``roi_source`` its description; None:
    the :data:`ROI_QUANTILE` of brain voxels where the training split's difference is most
    negative (independent of the test split it is read on; ``roi_source`` then says why no
    regions were given). ``levels``: each group's :class:`~.anatomy.Levels` by group name (a
    group without: its slices' levels, the synthetic images at one level).
    """
    test, train, syn = _sets(case, reference, {} if levels is None else levels)
    brain = np.concatenate([test.images, train.images])[:, 0].mean(0) > BRAIN_THRESHOLD
    if not brain.any():
        raise MetricError(f"no brain voxel: the mean real image is nowhere above {BRAIN_THRESHOLD}")
    d_real, d_syn = test.whole("real"), syn.whole("other")
    if roi is None:
        roi, roi_source = _training_roi(train, brain, roi_source)
    roi = np.asarray(roi, dtype=bool) & brain
    if not roi.any():
        raise MetricError(f"the region of interest ({roi_source}) holds no brain voxel")
    rng = np.random.default_rng(settings.seed + 6)
    n_syn = {True: int(syn.case.sum()), False: int((~syn.case).sum())}
    reps = _bootstrap(test, syn, brain, roi, settings.n_bootstrap, rng, by_subject=False)
    # the one split's baseline: the training split drawn per group to the synthetic set's sizes
    drawn = train.take(
        np.concatenate([_draw(train.case == g, n_syn[g], rng) for g in (True, False)])
    )
    baseline = _stats(d_real, drawn.whole("other"), brain, roi)
    base_reps = _bootstrap(test, drawn, brain, roi, settings.n_bootstrap, rng, by_subject=True)
    redrawn, note = _redrawn(test, train, n_syn, brain, roi, settings)
    metrics = {}
    for k, name in enumerate(DIFFERENCE_METRICS):
        metrics[name] = metric_value(
            name,
            _stats(d_real, d_syn, brain, roi)[k],
            reps[:, k],
            baseline[k],
            base_reps[:, k],
            PIXELS,
            len(test.images),
            len(syn.images),
            redrawn=None if redrawn is None else redrawn[k],
            redraws=note or None,
            roi=roi_source,
            roi_voxels=int(roi.sum()),
            real_roi_difference=roi_mean(d_real, roi),
            synthetic_roi_difference=roi_mean(d_syn, roi),
        )
    counts = {
        f"real {case.group}": int(test.case.sum()),
        f"real {reference.group}": int((~test.case).sum()),
        f"synthetic {case.group}": n_syn[True],
        f"synthetic {reference.group}": n_syn[False],
    }
    return GroupDifference(
        str(case.group),
        str(reference.group),
        d_real,
        d_syn,
        brain,
        roi,
        roi_source,
        metrics,
        counts,
    )


def _draw(member: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` (all, if fewer) of the indices where ``member`` holds, without replacement."""
    where = np.flatnonzero(member)
    return where[subset(len(where), min(n, len(where)), rng)]


def _training_roi(train: _Set, brain: np.ndarray, why: str) -> tuple[np.ndarray, str]:
    """The fallback region of interest: the brain voxels where the training split's difference
    map lies in its lowest :data:`ROI_QUANTILE`; ``why``: why no regions were given."""
    d = train.whole("real")
    cut = np.quantile(d[brain], ROI_QUANTILE)
    return d <= cut, (
        f"derived from the data: the {ROI_QUANTILE:.0%} of brain voxels where the training "
        "split's case group is darkest relative to its reference group"
        + (f" (the atrophy regions were not placed: {why})" if why else "")
    )


def _group_draws(s: _Set, b: int, rng, by_subject: bool) -> dict[bool, np.ndarray]:
    """``b`` bootstrap resamples within each group of ``s``: ``{True: (b, n_case), False: (b,
    n_reference)}`` indices, by subject (``by_subject``) or one by one."""
    draws = {}
    for g in (True, False):
        idx = np.flatnonzero(s.case == g)
        units = s.subjects[idx] if by_subject and s.subjects is not None else None
        draws[g] = idx[resample_indices(len(idx), b, rng, units)]
    return draws


def _bootstrap(test: _Set, other: _Set, brain, roi, b: int, rng, by_subject: bool) -> np.ndarray:
    """``(b, 2)`` replicates of :func:`_stats`: real test images resampled by subject within
    each group, the other set's within each group (by subject or one by one)."""
    real = _group_draws(test, b, rng, by_subject=True)
    second = _group_draws(other, b, rng, by_subject=by_subject)
    out = np.empty((b, 2))
    for r in range(b):
        d_real = test.map(real[True][r], real[False][r], "real")
        out[r] = _stats(d_real, other.map(second[True][r], second[False][r], "other"), brain, roi)
    return out


def _redrawn(test: _Set, train: _Set, n_syn, brain, roi, settings: EvalSettings):
    """Each metric's real-vs-real range (the module docstring); ``(None, why)`` when the
    redraws cannot be made."""
    if settings.n_redraws <= 0:
        return None, "no redraws (n_redraws = 0): the one split's baseline"
    pooled = _Set(
        np.concatenate([test.images, train.images]),
        np.concatenate([test.case, train.case]),
        np.concatenate([test.levels, train.levels]),
        np.concatenate([test.placed, train.placed]),
        np.concatenate([test.subjects, train.subjects]),
        None if test.strata is None else np.concatenate([test.strata, train.strata]),
    )
    in_test = np.arange(len(pooled.case)) < len(test.case)
    rng = np.random.default_rng(settings.seed + 7)
    try:
        counts = first_counts(pooled.subjects, in_test, pooled.strata)
        ia, ib = redraw_indices(
            pooled.subjects, counts, len(in_test), settings.n_redraws, rng, strata=pooled.strata
        )
    except MetricError as err:
        return None, f"no redraws: {err}"
    values = np.full((len(ia), 2), np.nan)
    for r, (a, b) in enumerate(zip(ia, ib)):
        rest = np.isin(pooled.subjects, pooled.subjects[b])  # the second group's subjects
        picks = [_draw(rest & (pooled.case == g), n_syn[g], rng) for g in (True, False)]
        first = [a[pooled.case[a]], a[~pooled.case[a]]]
        if min(len(x) for x in picks + first) == 0:
            continue
        d_first = pooled.map(*first, "real")
        values[r] = _stats(d_first, pooled.map(*picks, "other"), brain, roi)
    how = "stratified by site and group" if pooled.strata is not None else "unstratified"
    source = (
        f"{len(ia)} subject-level redraws, {how}; the second group drawn per group to the "
        "synthetic set's sizes"
    )
    return [redrawn_range(values[:, k], source) for k in range(2)], ""


# --------------------------------------------------------------------------------------------
# From a run's outputs
# --------------------------------------------------------------------------------------------


def atrophy_roi(params: Any, index, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """Where the cohort's simulated atrophy lies, on the image grid: ``(roi, description)``, or
    ``(None, why not)``.

    The demo cohort lists its atrophy regions in ``dataset_description.json``
    (``SimulationParameters.bvftd_regions``: centre for the right hemisphere and half-widths,
    MNI mm; mirrored on the left). Each region is the generator's rounded box
    (:data:`neurodiff.demo_data.protocols.BVFTD_REGIONS`), weight
    ``exp(-sum(((x - c) / w) ** 4) / 2)``; its voxels are those at half weight or more, on their
    side of the midline. Registered images are in MNI space: the preprocessed volume's affine
    gives each voxel's coordinates. A 2D pixel is in the region when it is at half or more of
    the real images' slice levels (``index``: the real test split's index table).
    """
    if params["register"] == "none":
        return None, "the images are not registered to MNI152 (register = none)"
    desc_path = Path(params["cohort"]) / "dataset_description.json"
    try:
        regions = json.loads(desc_path.read_text())["SimulationParameters"]["bvftd_regions"]
    except (OSError, ValueError, KeyError, TypeError):
        regions = None
    if not regions:
        return None, f"{desc_path.name} of the cohort lists no atrophy regions"
    try:
        volume = artifacts.load_preprocessed_volume(params, str(index["subject"].iloc[0]))
    except NeurodiffError as err:
        return None, f"the image grid's coordinates are unknown ({err})"
    affine = np.asarray(volume.affine, dtype=np.float64)
    levels = np.unique(index["slice"].to_numpy()) if len(shape) == 2 else [None]
    grid = [g.ravel() for g in np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")]
    vox = np.concatenate(
        [np.stack(grid if k is None else [*grid, np.full(grid[0].size, k)]) for k in levels],
        axis=1,
    )
    world = affine[:3, :3] @ vox + affine[:3, 3:4]
    inside = np.zeros(world.shape[1], dtype=bool)
    half = 2.0 * math.log(2.0)  # exp(-p / 2) >= 1/2
    for region in regions:
        c, w = np.asarray(region["centre_mm_right"]), np.asarray(region["width_mm"])
        for sign in (1.0, -1.0):
            centre = c * np.array([sign, 1.0, 1.0])
            power = (((world - centre[:, None]) / w[:, None]) ** 4).sum(0)
            inside |= (power <= half) & (sign * world[0] > 0)
    roi = inside.reshape(len(levels), *shape).mean(0) >= 0.5
    if not roi.any():
        return None, "no atrophy region falls inside the images' field of view"
    names = ", ".join(str(r.get("name", "?")) for r in regions)
    return roi, f"the cohort's simulated atrophy regions ({names}), placed in MNI space"


def difference_for(
    params: Any,
    case: MetricsInputs,
    reference: MetricsInputs,
    levels: Mapping[str, Levels] | None = None,
) -> GroupDifference:
    """:func:`group_difference_metrics` with the run's settings and the atrophy regions of
    :func:`atrophy_roi`; ``levels`` by group (None: placed with the run's extractor)."""
    cfg = params.stage(MetricsConfig)
    if levels is None:
        extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=resolve_device(cfg.device))
        levels = {str(x.group): group_levels(x, extractor) for x in (case, reference)}
    settings = EvalSettings(n_bootstrap=cfg.n_bootstrap, seed=cfg.seed, n_redraws=cfg.n_redraws)
    roi, source = None, "the real test split has no index table"
    if case.test_index is not None:
        roi, source = atrophy_roi(params, case.test_index, case.test.shape[2:])
    return group_difference_metrics(case, reference, settings, roi, source, levels)


def difference_maps(params: Any, case: str | None = None) -> GroupDifference:
    """The group difference map of a run: the ``case`` group (default: the second of
    ``groups``, the patients) against the first, from the run's splits and synthetic set
    (:func:`difference_for`). Raises :class:`~neurodiff.errors.MetricError` for an
    unconditional model."""
    groups = list(params["groups"])
    if len(groups) < 2:
        raise MetricError(
            "the group difference map needs a class-conditional model of two groups or more; "
            f"parameter 'groups' is {groups}"
        )
    case = groups[1] if case is None else case
    if case not in groups[1:]:
        raise MetricError(f"argument 'case' must be one of {groups[1:]}; got {case!r}")
    return difference_for(params, load_inputs(params, group=case), load_inputs(params, groups[0]))
