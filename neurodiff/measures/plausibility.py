"""Anatomical plausibility: is a synthetic brain built of the right tissues in the right places?

The distribution metrics (MMD, FID, PRDC) say whether two sets *can be told apart*; they do not
say whether the synthetic images are anatomy. Two checks that the field's generators report
(tissue volumes of the synthetic scans, and whether a disease effect is reproduced where it
lies), here as pure functions over arrays in (real, synthetic) order:

**Tissue fractions.** One three-class Gaussian mixture (scikit-learn's
:class:`~sklearn.mixture.GaussianMixture`, seeded) is fitted to the intensities of the *brain
voxels* of the real training images (:func:`fit_tissue_model`; classes ordered by mean: on T1,
CSF < grey matter < white matter), and every image of every set is classified with that same
model, so that all sets are measured with one ruler. An image's fraction of tissue ``c`` is the
share of its brain voxels classified ``c`` (:meth:`TissueModel.fractions`). Brain voxels are
those above :data:`BRAIN_THRESHOLD` in [0, 1] (:func:`brain_mask`): the preprocessed images are
skull-stripped (or masked) and scaled so that the background is 0, and the threshold lies well
below the CSF level of every site, so the same rule holds for real and synthetic images (a
synthetic background haze above it counts as brain, and shows as extra CSF: a defect the
measure should see).

**Matched levels.** A slice's tissue fractions depend on its axial level (ventricles, cortex), so
two sets are compared level by level (:func:`level_gap`). With ``f_i`` the fractions of the real
images at their levels ``l_i`` and ``g_j`` those of the other set (synthetic) at the levels
``m_j`` assigned to them, let ``L`` be the levels present in both sets, ``F_l`` and ``G_l`` the
mean fractions at level ``l`` and ``n_l`` the other set's images at ``l``. The gap of tissue
``c`` is::

    gap_c = sum_{l in L} n_l |G_l,c - F_l,c| / sum_{l in L} n_l

the mean, over the other set's images (at a level the real set has), of the absolute difference
between its level's mean fraction and the real mean fraction at that level. 0 = the same mean
fractions at every level; it is not 0 for two real samples (each level mean is a mean of a few
images), hence the real-vs-real range. Volumes (one level) reduce to ``|mean g - mean f|``.

**The group difference map.** The mean image of one group (patients) minus that of the
reference group (controls), voxel by voxel and at matched levels (:func:`group_difference`: the
mean over the levels of the difference at each level); real and synthetic maps are compared by
their Pearson correlation inside the brain (:func:`map_correlation`) and by their mean inside a
region of interest, such as where the atrophy is (:func:`roi_mean`).

Bootstrap and real-vs-real replicates are computed from index arrays
(:func:`level_gap_replicates`, :func:`difference_of_means`), as for the other families.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MetricError
from .checks import check_images

__all__ = [
    "BRAIN_THRESHOLD",
    "TISSUES",
    "TissueModel",
    "brain_mask",
    "difference_of_means",
    "fit_tissue_model",
    "group_difference",
    "level_gap",
    "level_gap_replicates",
    "map_correlation",
    "nearest_levels",
    "roi_mean",
]

#: The tissue classes, in the order of their mean T1 intensity.
TISSUES = ("csf", "gm", "wm")
#: Brain voxels: intensity above this in [0, 1]. The skull-stripped, normalised images have a
#: background of exactly 0 and the CSF class of the demo cohort centres near 0.3 (the mixture's
#: mean; its lower tail is the brain's partial-volume edge): 0.05 keeps the background out and
#: the brain's edge in, for real and synthetic images alike.
BRAIN_THRESHOLD = 0.05
#: Brain voxels the mixture is fitted on at most (a seeded random subset above it): a 1-D
#: three-component mixture is fixed to the third decimal by far fewer.
MAX_FIT_VOXELS = 50_000
#: Fewest brain voxels a tissue model is fitted on.
MIN_FIT_VOXELS = 30


def brain_mask(images: np.ndarray, threshold: float = BRAIN_THRESHOLD) -> np.ndarray:
    """Whether each voxel is brain: ``images > threshold`` (images in [0, 1], any shape)."""
    if not 0.0 <= threshold < 1.0:
        raise MetricError(f"argument 'threshold' must lie in [0, 1); got {threshold}")
    return np.asarray(images) > threshold


@dataclass(frozen=True)
class TissueModel:
    """A fitted three-class intensity model: the mixture's components by tissue.

    ``means``, ``sds`` and ``weights`` of CSF, grey and white matter (components ordered by
    mean), the brain ``threshold`` and the number of voxels fitted on; ``mixture`` is the fitted
    :class:`~sklearn.mixture.GaussianMixture` and ``order`` its component of each tissue.
    """

    means: tuple[float, float, float]
    sds: tuple[float, float, float]
    weights: tuple[float, float, float]
    threshold: float
    n_voxels: int
    mixture: Any = field(repr=False, compare=False)
    order: tuple[int, int, int] = (0, 1, 2)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """The tissue of every voxel: int8, -1 outside the brain, else the index into
        :data:`TISSUES`; same shape as ``images`` (in [0, 1])."""
        x = np.asarray(images, dtype=np.float32)
        inside = brain_mask(x, self.threshold)
        labels = np.full(x.shape, -1, dtype=np.int8)
        if inside.any():
            component = self.mixture.predict(x[inside].reshape(-1, 1).astype(np.float64))
            tissue_of = np.empty(len(self.order), dtype=np.int8)
            tissue_of[list(self.order)] = np.arange(len(self.order), dtype=np.int8)
            labels[inside] = tissue_of[component]
        return labels

    def fractions(self, images: np.ndarray, name: str = "images") -> np.ndarray:
        """``(N, 3)``: each image's share of brain voxels classified CSF, GM and WM (rows sum
        to 1; NaN for an image with no brain voxel). ``images``: ``(N, 1, *spatial)`` in [0, 1]."""
        x = check_images(images, name, min_samples=1)
        labels = self.classify(x).reshape(len(x), -1)
        counts = np.stack([(labels == k).sum(1) for k in range(len(TISSUES))], axis=1)
        total = counts.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def fit_tissue_model(
    images: np.ndarray,
    *,
    threshold: float = BRAIN_THRESHOLD,
    seed: int = 0,
    max_voxels: int = MAX_FIT_VOXELS,
) -> TissueModel:
    """Fit the three-class mixture to the brain voxels of ``images`` (the real training images,
    ``(N, 1, *spatial)`` in [0, 1]); ``seed`` fixes the voxel subset and the mixture's start.

    Raises
    ------
    MetricError
        Fewer brain voxels than :data:`MIN_FIT_VOXELS` or fewer than three distinct
        intensities among them: no three tissues to separate.
    """
    from sklearn.mixture import GaussianMixture

    x = check_images(images, "train (tissue model)", min_samples=1)
    voxels = x[brain_mask(x, threshold)].astype(np.float64)
    found = len(voxels)
    if found > max_voxels:
        voxels = np.random.default_rng(seed).choice(voxels, max_voxels, replace=False)
    distinct = len(np.unique(voxels))
    if found < MIN_FIT_VOXELS or distinct < 3:
        raise MetricError(
            f"the tissue model needs at least {MIN_FIT_VOXELS} brain voxels (intensity above "
            f"{threshold}) with three distinct intensities in the training images; found "
            f"{found} ({distinct} distinct)"
        )
    mixture = GaussianMixture(n_components=3, random_state=seed).fit(voxels[:, None])
    means = mixture.means_.ravel()
    order = tuple(int(i) for i in np.argsort(means))
    sds = np.sqrt(mixture.covariances_.ravel())
    return TissueModel(
        means=tuple(float(means[i]) for i in order),  # type: ignore[arg-type]
        sds=tuple(float(sds[i]) for i in order),  # type: ignore[arg-type]
        weights=tuple(float(mixture.weights_[i]) for i in order),  # type: ignore[arg-type]
        threshold=float(threshold),
        n_voxels=int(len(voxels)),
        mixture=mixture,
        order=order,  # type: ignore[arg-type]
    )


def nearest_levels(sq_dist: np.ndarray, levels: Any, subjects: Any = None) -> np.ndarray:
    """The level of each row's nearest column of *another subject*: ``sq_dist`` ``(M, N)``
    squared distances from M images to N reference images, ``levels`` the N references' levels
    and ``subjects`` ``(subjects of the rows, subjects of the references)`` (None: every
    reference is another subject's). How a real image is placed at a level the way a synthetic
    one is: by its nearest reference slice, never its own subject's."""
    d = np.array(sq_dist, dtype=np.float64)
    levels = np.asarray(levels)
    if d.ndim != 2 or d.shape[1] != len(levels):
        raise MetricError(
            f"argument 'sq_dist' must be (M, N) with N = {len(levels)} levels; got {d.shape}"
        )
    if subjects is not None:
        rows, refs = (np.asarray(s).astype(str) for s in subjects)
        if len(rows) != d.shape[0] or len(refs) != d.shape[1]:
            raise MetricError(
                f"argument 'subjects' must give {d.shape[0]} row and {d.shape[1]} reference "
                f"subjects; got {len(rows)} and {len(refs)}"
            )
        d[rows[:, None] == refs[None, :]] = np.inf
    if not np.isfinite(d).any(1).all():
        raise MetricError("an image has no reference image of another subject to take a level")
    return levels[np.argmin(d, axis=1)]


def _level_codes(*levels: np.ndarray) -> list[np.ndarray]:
    """Integer codes of the levels of several arrays, one code per distinct level overall."""
    values = np.unique(np.concatenate([np.asarray(x).ravel() for x in levels]))
    return [np.searchsorted(values, np.asarray(x)) for x in levels]


def _level_sums(f: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate and level: the count of valid images ``(R, K)`` and their summed fractions
    ``(R, K, 3)`` (``f`` ``(R, n, 3)``, ``codes`` ``(R, n)``; images with NaN fractions left
    out)."""
    r = f.shape[0]
    valid = np.isfinite(f).all(-1)
    flat = (np.arange(r)[:, None] * k + codes).ravel()
    w = valid.ravel().astype(np.float64)
    count = np.bincount(flat, weights=w, minlength=r * k).reshape(r, k)
    sums = np.stack(
        [
            np.bincount(flat, weights=np.where(valid, f[..., c], 0.0).ravel(), minlength=r * k)
            for c in range(f.shape[-1])
        ],
        axis=-1,
    ).reshape(r, k, f.shape[-1])
    return count, sums


def _gaps(fa: np.ndarray, la: np.ndarray, fb: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """The level gaps ``(R, 3)`` of replicates: real side ``fa`` ``(R, na, 3)`` at levels ``la``
    ``(R, na)``, other side ``fb`` at ``lb`` (the module docstring's formula; NaN where no
    level is shared)."""
    ca, cb = _level_codes(la, lb)
    k = int(max(ca.max(initial=0), cb.max(initial=0))) + 1
    na, sa = _level_sums(fa, ca, k)
    nb, sb = _level_sums(fb, cb, k)
    shared = (na > 0) & (nb > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.abs(sb / nb[..., None] - sa / na[..., None])
    weight = np.where(shared, nb, 0.0)
    total = weight.sum(1)
    out = (np.where(shared[..., None], gap, 0.0) * weight[..., None]).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total[:, None] > 0, out / total[:, None], np.nan)


def _check_fractions(
    fractions: Any, levels: Any, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions ``(N, 3)`` and levels ``(N,)`` checked; ``names``: the two arguments'."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != len(TISSUES):
        raise MetricError(
            f"argument {names[0]!r} must be (N, {len(TISSUES)}) tissue fractions "
            f"({', '.join(TISSUES)}); got shape {f.shape}"
        )
    lv = np.asarray(levels)
    if lv.shape != (len(f),):
        raise MetricError(
            f"argument {names[1]!r} must give one level per image: shape {lv.shape} for "
            f"{len(f)} images"
        )
    return f, lv


def level_gap(
    real_fractions: Any, real_levels: Any, synthetic_fractions: Any, synthetic_levels: Any
) -> np.ndarray:
    """``(3,)``: each tissue's gap (CSF, GM, WM) between two sets at matched levels.

    Parameters
    ----------
    real_fractions, synthetic_fractions : array-like
        ``(N, 3)`` tissue fractions (:meth:`TissueModel.fractions`).
    real_levels, synthetic_levels : array-like
        ``(N,)`` each image's level (a real slice's index; a synthetic slice's assigned level;
        one value for all volumes).

    Returns NaN when the two sets share no level.
    """
    fa, la = _check_fractions(real_fractions, real_levels, ("real_fractions", "real_levels"))
    fb, lb = _check_fractions(
        synthetic_fractions, synthetic_levels, ("synthetic_fractions", "synthetic_levels")
    )
    return _gaps(fa[None], la[None], fb[None], lb[None])[0]


def level_gap_replicates(
    fractions: Any, real_levels: Any, other_levels: Any, ia: np.ndarray, ib: np.ndarray
) -> np.ndarray:
    """``(R, 3)``: :func:`level_gap` of ``ia[r]`` (in the real role, at ``real_levels``) against
    ``ib[r]`` (in the other role, at ``other_levels``), index arrays ``(R, n)`` into the pooled
    ``fractions`` ``(N, 3)``. A real image compared as "other" takes the level a synthetic one
    would (``other_levels``, e.g. :func:`nearest_levels`)."""
    f, la = _check_fractions(fractions, real_levels, ("fractions", "real_levels"))
    _, lb = _check_fractions(fractions, other_levels, ("fractions", "other_levels"))
    ia, ib = np.atleast_2d(ia), np.atleast_2d(ib)
    if len(ia) != len(ib):
        raise MetricError(f"index arrays of {len(ia)} and {len(ib)} replicates; need the same")
    return _gaps(f[ia], la[ia], f[ib], lb[ib])


def group_difference(
    images: np.ndarray,
    groups: Any,
    case: str,
    reference: str,
    levels: Any = None,
    name: str = "images",
) -> np.ndarray:
    """The mean image of group ``case`` minus the mean image of group ``reference``, at matched
    levels.

    ``images`` ``(N, 1, *spatial)`` in [0, 1], ``groups`` one label per image, ``levels`` one
    level per image (None: one level, as for volumes). Returns the ``spatial`` map (negative
    where ``case`` is darker: on T1, tissue replaced by CSF): the mean, over the levels holding
    images of both groups, of the difference of the two groups' mean images at that level --
    so that a set whose groups hold different mixes of levels (a generator's) is not read as a
    group difference.
    """
    x = check_images(images, name, min_samples=1)
    labels = np.asarray(groups).astype(str)
    if labels.shape != (len(x),):
        raise MetricError(
            f"argument 'groups' must give one group per image of {name}: shape {labels.shape} "
            f"for {len(x)} images"
        )
    lv = np.zeros(len(x), dtype=int) if levels is None else np.asarray(levels)
    if lv.shape != (len(x),):
        raise MetricError(
            f"argument 'levels' must give one level per image of {name}: shape {lv.shape} "
            f"for {len(x)} images"
        )
    index = []
    for g in (case, reference):
        member = np.flatnonzero(labels == g)
        if not len(member):
            raise MetricError(
                f"{name} hold no image of group {g!r}; found groups {sorted(set(labels))}"
            )
        index.append(member)
    if not np.intersect1d(lv[index[0]], lv[index[1]]).size:
        raise MetricError(f"the groups {case!r} and {reference!r} of {name} share no level")
    return difference_of_means(x, index[0], index[1], lv)


def difference_of_means(
    images: np.ndarray,
    case_index: np.ndarray,
    reference_index: np.ndarray,
    levels: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`group_difference` of index arrays into ``images`` (resamples, redraws; the images
    checked once by the caller): ``levels`` the level of every image of ``images`` (None: one
    level). NaN everywhere when the two index arrays share no level."""
    x = np.asarray(images)
    case_index, reference_index = np.asarray(case_index), np.asarray(reference_index)
    if levels is None:
        return x[case_index, 0].mean(0, dtype=np.float64) - x[reference_index, 0].mean(
            0, dtype=np.float64
        )
    lv = np.asarray(levels)
    lc, lr = lv[case_index], lv[reference_index]
    shared = np.intersect1d(lc, lr)
    if not shared.size:
        return np.full(x.shape[2:], np.nan)
    total = np.zeros(x.shape[2:])
    for level in shared:
        total += x[case_index[lc == level], 0].mean(0, dtype=np.float64)
        total -= x[reference_index[lr == level], 0].mean(0, dtype=np.float64)
    return total / len(shared)


def _check_map_pair(a: Any, b: Any, mask: Any, names: Sequence[str]) -> tuple[np.ndarray, ...]:
    a, b, m = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), np.asarray(mask)
    if a.shape != b.shape or m.shape != a.shape:
        raise MetricError(
            f"{names[0]}, {names[1]} and {names[2]} must have one shape; got {a.shape}, "
            f"{b.shape} and {m.shape}"
        )
    return a, b, m.astype(bool)


def map_correlation(real_map: Any, synthetic_map: Any, mask: Any) -> float:
    """Pearson correlation of two maps over the voxels of ``mask`` (same shapes): 1 = the same
    pattern (up to scale and offset), 0 = unrelated; NaN when either map is flat there."""
    a, b, m = _check_map_pair(real_map, synthetic_map, mask, ("real_map", "synthetic_map", "mask"))
    if m.sum() < 3:
        raise MetricError(f"argument 'mask' must hold at least 3 voxels; got {int(m.sum())}")
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def roi_mean(diff_map: Any, roi: Any) -> float:
    """The mean of a (difference) map over the voxels of ``roi`` (a boolean map of its shape)."""
    a, _, m = _check_map_pair(diff_map, diff_map, roi, ("diff_map", "diff_map", "roi"))
    if not m.any():
        raise MetricError("argument 'roi' holds no voxel; expected a non-empty region")
    return float(a[m].mean())
