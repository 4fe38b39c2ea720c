"""The real-vs-real range: every set metric between two groups of *real subjects*, redrawn many
times, so that a synthetic-vs-real value can be read as inside or outside what real data shows.

One train/test split gives one real-vs-real value, and with a few dozen subjects that value
swings from split to split (an MMD near zero by a factor of several). The range of many
subject-level redraws -- the subjects of both splits pooled, reshuffled into a "test" group of the
test split's size and a "train" group of the rest, each subsampled to the set size of the
synthetic comparison -- is the yardstick: a generator as good as a new group of real subjects
lands inside it. Subjects, not slices, are redrawn because slices of one subject are alike.

Hand-written (no library computes metric ranges over grouped redraws); the metrics themselves are
the same functions as the synthetic comparison, read from pooled kernel/Gram matrices so that a
hundred redraws cost about as much as one bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MetricError
from .checks import gram
from .frechet import fid_replicates
from .intervals import real_range
from .manifold import prdc_from_distances
from .mmd import mmd2_replicates
from .similarity import ms_ssim

__all__ = [
    "RedrawnBaseline",
    "redraw_baselines",
    "redraw_indices",
    "redraw_metrics",
]


def redraw_indices(
    subjects: Any, n_first_subjects: int, n: int, n_redraws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(R, n')`` of two disjoint groups of subjects per redraw.

    Parameters
    ----------
    subjects : array-like
        The subject of each pooled real sample.
    n_first_subjects : int
        Subjects in the first group (the size of the test split); the rest form the second.
    n : int
        Samples per group (fewer, ``n'``, when a group has fewer samples in some redraw).
    """
    subjects = np.asarray(subjects).astype(str)
    names, codes = np.unique(subjects, return_inverse=True)
    if not 1 <= n_first_subjects < len(names):
        raise MetricError(
            f"real-vs-real redraws need subjects in both groups: {n_first_subjects} of "
            f"{len(names)} subjects asked for the first group"
        )
    groups = []
    for _ in range(n_redraws):
        first = np.zeros(len(names), dtype=bool)
        first[rng.permutation(len(names))[:n_first_subjects]] = True
        groups.append((np.flatnonzero(first[codes]), np.flatnonzero(~first[codes])))
    n_eff = min([n] + [min(len(a), len(b)) for a, b in groups])
    if n_eff < 2:
        raise MetricError(f"real-vs-real redraws: a group has {n_eff} sample(s); need 2")
    ia = np.stack([rng.choice(a, n_eff, replace=False) for a, _ in groups])
    ib = np.stack([rng.choice(b, n_eff, replace=False) for _, b in groups])
    return ia, ib


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
) -> dict[str, RedrawnBaseline]:
    """Each set metric's real-vs-real range: the median and central 95 % range of ``n_redraws``
    subject-level redraws of the real data into a "test" group (as many subjects as
    ``real_subjects`` holds) and a "train" group (the rest), each subsampled to ``n`` samples.

    ``images``/``features`` are the real samples pooled (test split, then training split),
    ``sq_dist`` the squared distances of their features and ``real_subjects``/``train_subjects``
    the subject of each test/training sample. Returns ``{metric: RedrawnBaseline}`` for the set
    metrics of :func:`redraw_metrics`.
    """
    pooled_subjects = np.concatenate([real_subjects, train_subjects])
    ia, ib = redraw_indices(
        pooled_subjects,
        len(np.unique(real_subjects)),
        n,
        n_redraws,
        np.random.default_rng(seed + 2),
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
    source = f"{n_redraws} subject-level redraws, {ia.shape[1]} per group"
    return {
        key: RedrawnBaseline(float(np.median(values)), real_range(values), source)
        for key, values in draws.items()
    }
