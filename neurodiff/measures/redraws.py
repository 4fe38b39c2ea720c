"""The real-vs-real range: every set metric between two groups of *real subjects*, redrawn many
times, so that a synthetic-vs-real value can be read as inside or outside what real data shows.

One train/test split gives one real-vs-real value, and with a few dozen subjects that value
swings from split to split (an MMD near zero by a factor of several). The range of many
subject-level redraws -- the subjects of both splits pooled, reshuffled into a "test" group of the
test split's size and a "train" group of the rest, each subsampled to the set size of the
synthetic comparison -- is the yardstick: a generator as good as a new group of real subjects
lands inside it. Subjects, not slices, are redrawn because slices of one subject are alike.

The redraws are stratified as the split is (:func:`neurodiff.preprocess.split_subjects`): given
each sample's stratum (site, and group where there are groups; :func:`strata_of`), every redraw
puts into the first group as many subjects of each stratum as the test split holds. An
unstratified redraw would mix sites in proportions the test split never has, and widen the range
with a variation the comparison does not contain. Without strata, one stratum.

Hand-written (no library computes metric ranges over grouped redraws); the metrics themselves are
the same functions as the synthetic comparison, read from pooled kernel/Gram matrices so that a
hundred redraws cost about as much as one bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MetricError
from .checks import gram
from .frechet import fid_replicates
from .intervals import real_range
from .kid import poly_kernel
from .manifold import prdc_from_distances
from .mmd import mmd2_replicates
from .similarity import ms_ssim

__all__ = [
    "RedrawnBaseline",
    "first_counts",
    "n_partitions",
    "redraw_baselines",
    "redraw_indices",
    "redraw_metrics",
    "redraw_singles",
    "strata_of",
]

#: The one stratum of samples without strata.
_ALL = "all"


def strata_of(sites: Any = None, groups: Any = None) -> np.ndarray | None:
    """The stratum of each sample, ``site`` or ``site/group`` as the split uses them (None
    without sites: the redraws are then unstratified)."""
    if sites is None:
        return None
    sites = np.asarray(sites).astype(str)
    if groups is None:
        return sites
    groups = np.asarray(groups).astype(str)
    if len(groups) != len(sites):
        raise MetricError(f"{len(groups)} group labels for {len(sites)} site labels")
    return np.char.add(np.char.add(sites, "/"), groups)


@dataclass(frozen=True)
class _Subjects:
    """The subjects of pooled samples: ``names``, each sample's subject code, each subject's
    stratum and its samples (sorted by subject: ``order``, ``start``, ``count``)."""

    names: np.ndarray
    codes: np.ndarray
    strata: np.ndarray
    order: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, subjects: Any, strata: Any = None) -> _Subjects:
        subjects = np.asarray(subjects).astype(str)
        names, first, codes = np.unique(subjects, return_index=True, return_inverse=True)
        if strata is None:
            sub_strata = np.full(len(names), _ALL)
        else:
            strata = np.asarray(strata).astype(str)
            if len(strata) != len(subjects):
                raise MetricError(
                    f"{len(strata)} strata for {len(subjects)} samples; expected one per sample"
                )
            sub_strata = strata[first]  # a subject's stratum: that of its first sample
        order = np.argsort(codes, kind="stable")
        count = np.bincount(codes, minlength=len(names))
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        return cls(names, codes, sub_strata, order, start, count)

    def counts(self, n_first: int | Mapping[str, int]) -> dict[str, int]:
        """The first group's subjects per stratum, checked."""
        if not isinstance(n_first, Mapping):
            if len(set(self.strata)) > 1:
                raise MetricError(
                    "stratified redraws need the first group's subjects per stratum (a mapping "
                    f"such as first_counts gives); got one number, {n_first}"
                )
            n_first = {str(self.strata[0]): int(n_first)}
        counts = {str(s): int(n_first.get(str(s), 0)) for s in np.unique(self.strata)}
        total = sum(counts.values())
        if not 1 <= total < len(self.names):
            raise MetricError(
                f"real-vs-real redraws need subjects in both groups: {total} of "
                f"{len(self.names)} subjects asked for the first group"
            )
        for s, k in counts.items():
            size = int((self.strata == s).sum())
            if k > size:
                raise MetricError(f"stratum {s!r} has {size} subjects; {k} asked for")
        return counts

    def first_masks(self, counts: Mapping[str, int], r: int, rng) -> np.ndarray:
        """``(r, S)``: whether each subject is in the first group, per redraw."""
        first = np.zeros((r, len(self.names)), dtype=bool)
        for s, k in counts.items():
            members = np.flatnonzero(self.strata == s)
            picked = rng.permuted(np.tile(members, (r, 1)), axis=1)[:, :k]
            np.put_along_axis(first, picked, True, axis=1)
        return first

    def one_sample_each(self, subject_codes: np.ndarray, rng) -> np.ndarray:
        """One random sample of each subject in ``subject_codes``."""
        offset = (rng.random(len(subject_codes)) * self.count[subject_codes]).astype(int)
        return self.order[self.start[subject_codes] + offset]


def first_counts(subjects: Any, in_first: Any, strata: Any = None) -> dict[str, int]:
    """The subjects of the first group (``in_first``: one flag per pooled sample, e.g. "in the
    test split") per stratum: what every stratified redraw reproduces."""
    table = _Subjects.of(subjects, strata)
    in_first = np.asarray(in_first, dtype=bool)
    first_subjects = np.unique(table.codes[in_first])
    strata_first = table.strata[first_subjects]
    return {str(s): int((strata_first == s).sum()) for s in np.unique(table.strata)}


def n_partitions(subjects: Any, n_first_subjects: int | Mapping[str, int], strata=None) -> int:
    """How many distinct first groups the (stratified) redraws can draw: the product over the
    strata of ``C(size, count)``. Fewer than the redraws asked for means repeated groups."""
    table = _Subjects.of(subjects, strata)
    counts = table.counts(n_first_subjects)
    return math.prod(math.comb(int((table.strata == s).sum()), k) for s, k in counts.items())


def redraw_indices(
    subjects: Any,
    n_first_subjects: int | Mapping[str, int],
    n: int,
    n_redraws: int,
    rng: np.random.Generator,
    *,
    strata: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(R, n')`` of two disjoint groups of subjects per redraw.

    Parameters
    ----------
    subjects : array-like
        The subject of each pooled real sample.
    n_first_subjects : int or mapping
        Subjects in the first group (the size of the test split); the rest form the second.
        With ``strata``, per stratum (:func:`first_counts`).
    n : int
        Samples per group (fewer, ``n'``, when a group has fewer samples in some redraw).
    strata : array-like, optional
        The stratum of each sample (:func:`strata_of`); None: unstratified.
    """
    table = _Subjects.of(subjects, strata)
    first = table.first_masks(table.counts(n_first_subjects), n_redraws, rng)
    groups = [(np.flatnonzero(f[table.codes]), np.flatnonzero(~f[table.codes])) for f in first]
    n_eff = min([n] + [min(len(a), len(b)) for a, b in groups])
    if n_eff < 2:
        raise MetricError(f"real-vs-real redraws: a group has {n_eff} sample(s); need 2")
    ia = np.stack([rng.choice(a, n_eff, replace=False) for a, _ in groups])
    ib = np.stack([rng.choice(b, n_eff, replace=False) for _, b in groups])
    return ia, ib


def redraw_singles(
    subjects: Any,
    n_first_subjects: int | Mapping[str, int],
    n: int,
    m: int,
    n_redraws: int,
    rng: np.random.Generator,
    *,
    strata: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Real-vs-real redraws in the layout of a synthetic comparison: ``(R, n')`` samples of a
    first group of subjects (stratified as :func:`redraw_indices`), against ``(R, m')`` *single*
    samples, one from each of ``m'`` other subjects -- as a synthetic set is, each image its own
    draw.

    The singles' subjects are a random sample of the other subjects whose mix of strata varies
    as an independent sample's does: the count of each stratum is drawn from a multinomial with
    the others' proportions (then capped at the stratum's size), and the subjects within a
    stratum without replacement. Drawing all the other subjects would fix that mix, which a
    synthetic sample from a model of the pooled sites does not have; so ``m' = min(m, others //
    2)`` (others: the subjects outside the first group), which leaves room for the mix to vary.
    """
    table = _Subjects.of(subjects, strata)
    counts = table.counts(n_first_subjects)
    first = table.first_masks(counts, n_redraws, rng)
    n_others = len(table.names) - sum(counts.values())
    m_eff = min(int(m), n_others // 2)
    if m_eff < 2:
        raise MetricError(
            f"the synthetic-vs-real test needs at least 4 real subjects outside the test group "
            f"(two single images and room to vary); found {n_others}"
        )
    labels = np.unique(table.strata)
    ia, ib = [], []
    for f in first:
        samples = np.flatnonzero(f[table.codes])
        ia.append(rng.choice(samples, min(n, len(samples)), replace=False))
        others = [np.flatnonzero(~f & (table.strata == s)) for s in labels]
        sizes = np.array([len(o) for o in others])
        k = _capped_multinomial(m_eff, sizes, rng)
        chosen = np.concatenate([rng.choice(o, c, replace=False) for o, c in zip(others, k)])
        ib.append(table.one_sample_each(chosen, rng))
    n_eff = min(len(a) for a in ia)
    if n_eff < 2:
        raise MetricError(f"real-vs-real redraws: a group has {n_eff} sample(s); need 2")
    return np.stack([a[:n_eff] for a in ia]), np.stack(ib)


def _capped_multinomial(m: int, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts per stratum summing to ``m``: multinomial with proportions ``sizes / sizes.sum()``,
    an excess over a stratum's size moved to strata with room (in random order)."""
    k = rng.multinomial(m, sizes / sizes.sum())
    excess = int(np.maximum(k - sizes, 0).sum())
    k = np.minimum(k, sizes)
    while excess:
        room = np.flatnonzero(k < sizes)
        j = rng.choice(room)
        k[j] += 1
        excess -= 1
    return k


def redraw_metrics(
    images: np.ndarray,
    features: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    *,
    bandwidth: float,
    image_gram: np.ndarray,
    sq_dist: np.ndarray,
    nn_k: int,
    msssim_pairs: int,
    seed: int,
    device: Any = "cpu",
    subjects: Any = None,
) -> dict[str, np.ndarray]:
    """Every set metric between the groups ``ia[r]`` (as "real") and ``ib[r]`` (as "other").

    ``images``/``features`` are the pooled real samples; ``image_gram`` their linear Gram matrix
    and ``sq_dist`` the squared distances of their features (both computed once by the caller);
    ``bandwidth`` the report's one RBF bandwidth. The MS-SSIM diversity of each second group is
    the mean of ``msssim_pairs`` pairs drawn among a pool of pairs of the pooled images computed
    once (pairs whose two images both belong to the group's subjects, ``subjects`` giving each
    pooled image's subject; without it, to the group itself). Returns ``{metric: (R,) values}``.
    """
    g_feat = features @ features.T
    out: dict[str, np.ndarray] = {
        "mmd_linear": mmd2_replicates(image_gram, ia, ib),
        "mmd_rbf": mmd2_replicates(np.exp(-sq_dist / (2.0 * bandwidth**2)), ia, ib),
        "fid": fid_replicates(g_feat, ia, ib),
        "kid": mmd2_replicates(poly_kernel(features), ia, ib),
    }
    dist = np.sqrt(np.maximum(sq_dist, 0.0))
    prdc = [
        prdc_from_distances(dist[np.ix_(a, a)], dist[np.ix_(b, b)], dist[np.ix_(a, b)], nn_k)
        for a, b in zip(ia, ib, strict=True)
    ]
    for key in ("precision", "recall", "density", "coverage"):
        out[key] = np.array([p[key] for p in prdc])
    out["ms_ssim_diversity"] = _diversity_redraws(images, ib, subjects, msssim_pairs, seed, device)
    return out


def _diversity_redraws(images, ib, subjects, n_pairs: int, seed: int, device) -> np.ndarray:
    """MS-SSIM diversity of each group ``ib[r]``: ``n_pairs`` pairs drawn from a pool of
    ``8 n_pairs`` pairs of distinct images (computed once) whose two images belong to the
    group's subjects."""
    rng = np.random.default_rng(seed)
    n = len(images)
    codes = (
        np.arange(n)
        if subjects is None
        else np.unique(np.asarray(subjects), return_inverse=True)[1]
    )
    pool = rng.integers(0, n, (8 * n_pairs, 2))
    pool = pool[pool[:, 0] != pool[:, 1]]
    scores = ms_ssim(images[pool[:, 0]], images[pool[:, 1]], device=device)
    out = np.empty(len(ib))
    for r, b in enumerate(ib):
        member = np.isin(codes, codes[b])
        inside = np.flatnonzero(member[pool[:, 0]] & member[pool[:, 1]])
        if len(inside) == 0:
            out[r] = np.nan
            continue
        pick = rng.choice(inside, min(n_pairs, len(inside)), replace=False)
        out[r] = scores[pick].mean()
    return out


@dataclass(frozen=True)
class RedrawnBaseline:
    """One set metric's real-vs-real range from subject-level redraws: the median of the redraws
    (``baseline``), their central 95 % range (``ci``) and how they were drawn (``source``)."""

    baseline: float
    ci: tuple[float, float]
    source: str


def redraw_baselines(
    images: np.ndarray,
    features: np.ndarray,
    sq_dist: np.ndarray,
    real_subjects: np.ndarray,
    train_subjects: np.ndarray,
    *,
    n: int,
    n_redraws: int,
    bandwidth: float,
    nn_k: int,
    msssim_pairs: int,
    seed: int,
    device: Any = "cpu",
    strata: Any = None,
) -> dict[str, RedrawnBaseline]:
    """Each set metric's real-vs-real range: the median and central 95 % range of ``n_redraws``
    subject-level redraws of the real data into a "test" group (as many subjects as
    ``real_subjects`` holds, per stratum when ``strata`` is given) and a "train" group (the rest),
    each subsampled to ``n`` samples.

    ``images``/``features`` are the real samples pooled (test split, then training split),
    ``sq_dist`` the squared distances of their features, ``real_subjects``/``train_subjects``
    the subject of each test/training sample and ``strata`` the stratum of each pooled sample
    (:func:`strata_of`; None: unstratified). Returns ``{metric: RedrawnBaseline}`` for the set
    metrics of :func:`redraw_metrics`.
    """
    pooled_subjects = np.concatenate([real_subjects, train_subjects])
    in_test = np.arange(len(pooled_subjects)) < len(real_subjects)
    counts = first_counts(pooled_subjects, in_test, strata)
    ia, ib = redraw_indices(
        pooled_subjects, counts, n, n_redraws, np.random.default_rng(seed + 2), strata=strata
    )
    draws = redraw_metrics(
        images,
        features,
        ia,
        ib,
        bandwidth=bandwidth,
        image_gram=gram(images),
        sq_dist=sq_dist,
        nn_k=nn_k,
        msssim_pairs=msssim_pairs,
        seed=seed,
        device=device,
        subjects=pooled_subjects,
    )
    source = _source(n_redraws, ia.shape[1], n_partitions(pooled_subjects, counts, strata), strata)
    return {
        key: RedrawnBaseline(float(np.median(values)), real_range(values), source)
        for key, values in draws.items()
    }


def _source(n_redraws: int, per_group: int, partitions: int, strata: Any) -> str:
    """How the redraws were made, in words (for ``baseline_from``)."""
    if strata is None:
        how = "unstratified (no site labels)"
    elif any("/" in str(s) for s in np.unique(strata)):
        how = "stratified by site and group"
    else:
        how = "stratified by site"
    text = f"{n_redraws} subject-level redraws, {how}, {per_group} per group"
    if partitions < n_redraws:
        text += f" (only {partitions} distinct groups exist: some redraws repeat)"
    return text
