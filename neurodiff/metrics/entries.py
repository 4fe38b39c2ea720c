"""Each metric of one evaluation as a :class:`~.results.MetricValue`: the set metrics on the
equal-size subsets (:func:`set_metrics`) and the memorisation metrics (:func:`audit_metrics`),
with the records they travel in (:class:`EvalSettings`, :class:`Sets`, :class:`SetComparison`,
:class:`Resamples`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from ..config import MetricsConfig
from ..measures.bootstrap import resample_indices, resampled_means
from ..measures.checks import gram, sq_dists
from ..measures.frechet import fid, fid_replicates
from ..measures.intervals import percentile_ci
from ..measures.kid import kid, poly_kernel
from ..measures.layout_test import LayoutTest
from ..measures.manifold import prdc_metrics, prdc_per_sample
from ..measures.memorisation import MemorisationAudit, audit_fraction_replicates
from ..measures.mmd import mmd2_replicates, mmd_linear, mmd_rbf
from ..measures.redraws import RedrawnBaseline
from ..measures.similarity import diversity, ms_ssim_settings
from .results import METRIC_SPECS, MetricValue

__all__ = [
    "PIXELS",
    "EvalSettings",
    "Resamples",
    "SetComparison",
    "Sets",
    "audit_metrics",
    "metric_value",
    "set_metrics",
]

#: The feature space of the metrics read on the images themselves.
PIXELS = "pixels"

T = TypeVar("T")


@dataclass(frozen=True)
class EvalSettings:
    """The settings of one evaluation: bootstrap resamples, MMD permutations, MS-SSIM pairs, k of
    the k-NN manifolds, seed, device, subject-level redraws (0: none) and whether to add the
    per-site view."""

    n_bootstrap: int = 200
    n_permutations: int = 200
    msssim_pairs: int = 100
    nn_k: int = 5
    seed: int = 0
    device: torch.device | str = "cpu"
    n_redraws: int = 0
    per_site: bool = True

    @classmethod
    def from_config(
        cls, cfg: MetricsConfig, device: torch.device | str, per_site: bool = True
    ) -> EvalSettings:
        """The settings of ``cfg`` on ``device``; ``per_site=False``: no per-site view."""
        return cls(
            n_bootstrap=cfg.n_bootstrap,
            n_permutations=cfg.n_permutations,
            msssim_pairs=cfg.msssim_pairs,
            nn_k=cfg.nn_k,
            seed=cfg.seed,
            device=device,
            n_redraws=cfg.n_redraws,
            per_site=per_site,
        )


@dataclass(frozen=True)
class Sets(Generic[T]):
    """One thing per set of the comparison: the real test set, the synthetic set, the training
    set."""

    real: T
    synthetic: T
    train: T

    def as_dict(self) -> dict[str, T]:
        return {"real": self.real, "synthetic": self.synthetic, "train": self.train}


@dataclass(frozen=True)
class SetComparison:
    """What the set metrics compare: equal-size subsets of the three sets (``images``, their
    ``features`` and the ``subjects`` of the real ones; the synthetic set has none), the feature
    space's name, the report's one RBF ``bandwidth``, by metric the real-vs-real range of the
    subject-level redraws (empty: the one split's baseline with a bootstrap interval), and the
    synthetic-vs-real MMD test calibrated on redraws (None: not run, ``test_note`` says why).

    Value = real vs synthetic; baseline = real vs train."""

    images: Sets[np.ndarray]
    features: Sets[np.ndarray]
    subjects: Sets[np.ndarray | None]
    extractor: str
    bandwidth: float
    redrawn: Mapping[str, RedrawnBaseline] = field(default_factory=dict)
    synthetic_test: LayoutTest | None = None
    test_note: str = "not run: needs subject-level redraws (n_redraws > 0)"

    @property
    def n(self) -> int:
        """Samples per subset."""
        return len(self.images.real)


@dataclass(frozen=True)
class Resamples:
    """Bootstrap index arrays ``(B, n)`` into the pooled order ``[real; synthetic; train]`` of a
    :class:`SetComparison`: ``real`` and ``synthetic`` resample the value, ``real_base`` and
    ``train`` the baseline. Real images are resampled by subject where subjects are known, the
    synthetic ones by image (each is its own draw): :func:`~neurodiff.measures.resample_indices`.
    The intervals are conditional on the one trained generator: another training run (seed) is
    another source of variation that no resampling of its images can show."""

    real: np.ndarray
    synthetic: np.ndarray
    real_base: np.ndarray
    train: np.ndarray

    @classmethod
    def draw(
        cls,
        n: int,
        b: int,
        rng: np.random.Generator,
        real_units: Any = None,
        train_units: Any = None,
    ) -> Resamples:
        """``b`` resamples of ``n``, drawn in this order: real, synthetic, real, train;
        ``real_units``/``train_units``: the subject of each real/training image (None: each
        image its own)."""
        real = resample_indices(n, b, rng, real_units)
        synthetic = resample_indices(n, b, rng) + n
        real_base = resample_indices(n, b, rng, real_units)
        train = resample_indices(n, b, rng, train_units) + 2 * n
        return cls(real, synthetic, real_base, train)


def metric_value(
    name: str,
    value: float,
    reps: np.ndarray,
    baseline: float,
    base_reps: np.ndarray,
    extractor: str,
    n_real: int,
    n_syn: int,
    redrawn: RedrawnBaseline | None = None,
    **extra: Any,
) -> MetricValue:
    """One metric with its intervals (bootstrap replicates ``reps`` and ``base_reps``, read by
    :func:`~neurodiff.measures.intervals.percentile_ci`). With ``redrawn``, the baseline is the
    redraws' median and range instead, and the one split's value is kept as
    ``split_baseline``."""
    bounds = METRIC_SPECS[name][2:]
    extra = {k: v for k, v in extra.items() if v is not None}
    if redrawn is None:
        base, base_ci = float(baseline), percentile_ci(baseline, base_reps, bounds)
    else:
        base, base_ci = redrawn.baseline, redrawn.ci
        extra.update(split_baseline=float(baseline), baseline_from=redrawn.source)
    return MetricValue(
        name=name,
        value=float(value),
        ci=percentile_ci(value, reps, bounds),
        baseline=base,
        baseline_ci=base_ci,
        extractor=extractor,
        n_real=n_real,
        n_synthetic=n_syn,
        extra=extra,
    )


def set_metrics(
    sets: SetComparison, settings: EvalSettings, rng: np.random.Generator
) -> dict[str, MetricValue]:
    """MMD (images, features), FID, MS-SSIM diversity and PRDC on the equal-size subsets: value =
    real vs synthetic, baseline = real vs train (or the redraws' range).

    The order of the draws from ``rng`` is part of the result (same seed, same numbers): the four
    bootstrap index arrays first, then the diversity and PRDC resamples.
    """
    units = sets.subjects
    boot = Resamples.draw(sets.n, settings.n_bootstrap, rng, units.real, units.train)
    metrics: dict[str, MetricValue] = {}
    metrics.update(_mmd_entries(sets, settings, boot))
    metrics["fid"] = _fid_entry(sets, boot)
    metrics["kid"] = _kid_entry(sets, boot)
    metrics["ms_ssim_diversity"] = _diversity_entry(sets, settings, rng)
    metrics.update(_prdc_entries(sets, settings, rng))
    return metrics


def _mmd_entries(
    sets: SetComparison, settings: EvalSettings, boot: Resamples
) -> dict[str, MetricValue]:
    """Linear MMD on images (MONAI) and RBF MMD^2 on features with the report's one bandwidth;
    replicates from pooled kernels. The RBF entry carries the synthetic-vs-real test calibrated
    on real-vs-real redraws (``p_value``; :mod:`neurodiff.measures.layout_test`) and, for the
    two real groups of the split, a permutation test that moves whole subjects
    (``baseline_p_value``: subjects are exchangeable between two groups of real subjects, a
    subject and a synthetic image are not)."""
    img, f, units = sets.images, sets.features, sets.subjects
    n, bandwidth, n_permutations = sets.n, sets.bandwidth, settings.n_permutations
    g_img = gram(np.concatenate([img.real, img.synthetic, img.train]))
    linear = metric_value(
        "mmd_linear",
        mmd_linear(img.real, img.synthetic),
        mmd2_replicates(g_img, boot.real, boot.synthetic),
        mmd_linear(img.real, img.train),
        mmd2_replicates(g_img, boot.real_base, boot.train),
        PIXELS,
        n,
        n,
        redrawn=sets.redrawn.get("mmd_linear"),
    )
    # RBF kernel: one bandwidth for value, baseline, replicates and tests
    d2 = sq_dists(np.concatenate([f.real, f.synthetic, f.train]))
    value = mmd_rbf(f.real, f.synthetic, bandwidth=bandwidth)
    test_b = mmd_rbf(
        f.real,
        f.train,
        bandwidth=bandwidth,
        n_permutations=n_permutations,
        seed=settings.seed + 1,
        real_units=units.real,
        synthetic_units=units.train,
    )
    kernel = np.exp(-d2 / (2 * bandwidth**2))
    test = sets.synthetic_test
    rbf = metric_value(
        "mmd_rbf",
        value.value,
        mmd2_replicates(kernel, boot.real, boot.synthetic),
        test_b.value,
        mmd2_replicates(kernel, boot.real_base, boot.train),
        sets.extractor,
        n,
        n,
        redrawn=sets.redrawn.get("mmd_rbf"),
        p_value=None if test is None else test.p_value,
        test=sets.test_note if test is None else test.description,
        test_statistic=None if test is None else test.statistic,
        test_n_single=None if test is None else test.n_single,
        baseline_p_value=test_b.p_value,
        baseline_test=f"{n_permutations} permutations of subjects between the two real groups",
        bandwidth=bandwidth,
        n_permutations=n_permutations,
    )
    return {"mmd_linear": linear, "mmd_rbf": rbf}


def _fid_entry(sets: SetComparison, boot: Resamples) -> MetricValue:
    """FID (MONAI), replicates from the pooled feature Gram matrix."""
    f = sets.features
    pooled = np.concatenate([f.real, f.synthetic, f.train])
    g_f = pooled @ pooled.T
    return metric_value(
        "fid",
        fid(f.real, f.synthetic),
        fid_replicates(g_f, boot.real, boot.synthetic),
        fid(f.real, f.train),
        fid_replicates(g_f, boot.real_base, boot.train),
        sets.extractor,
        sets.n,
        sets.n,
        redrawn=sets.redrawn.get("fid"),
    )


def _kid_entry(sets: SetComparison, boot: Resamples) -> MetricValue:
    """KID (torchmetrics' polynomial-kernel MMD^2), replicates from the pooled kernel matrix;
    the same interval and real-vs-real treatment as FID."""
    f = sets.features
    kernel = poly_kernel(np.concatenate([f.real, f.synthetic, f.train]))
    return metric_value(
        "kid",
        kid(f.real, f.synthetic),
        mmd2_replicates(kernel, boot.real, boot.synthetic),
        kid(f.real, f.train),
        mmd2_replicates(kernel, boot.real_base, boot.train),
        sets.extractor,
        sets.n,
        sets.n,
        redrawn=sets.redrawn.get("kid"),
        kernel="(x.y / F + 1)^3",
    )


def _diversity_entry(
    sets: SetComparison, settings: EvalSettings, rng: np.random.Generator
) -> MetricValue:
    """MS-SSIM diversity within the synthetic and within the train subset; replicates resample
    the pairs."""
    s_img, t_img = sets.images.synthetic, sets.images.train
    kernel, weights = ms_ssim_settings(s_img.shape[2:])
    pairs, seed, device = settings.msssim_pairs, settings.seed, settings.device
    div_s = diversity(s_img, pairs, seed=seed, device=device)
    div_t = diversity(t_img, pairs, seed=seed + 1, device=device)
    b = settings.n_bootstrap
    return metric_value(
        "ms_ssim_diversity",
        div_s.mean(),
        resampled_means(div_s, b, rng),
        div_t.mean(),
        resampled_means(div_t, b, rng),
        PIXELS,
        sets.n,
        sets.n,
        redrawn=sets.redrawn.get("ms_ssim_diversity"),
        n_pairs=len(div_s),
        kernel_size=kernel,
        scales=len(weights),
    )


def _prdc_entries(
    sets: SetComparison, settings: EvalSettings, rng: np.random.Generator
) -> dict[str, MetricValue]:
    """Precision / recall / density / coverage (prdc); replicates resample per-sample terms
    (recall and coverage: one per real image, resampled by subject; precision and density: one
    per image of the other set, by subject for training images)."""
    f, nn_k, b = sets.features, settings.nn_k, settings.n_bootstrap
    p_s, p_t = prdc_metrics(f.real, f.synthetic, nn_k), prdc_metrics(f.real, f.train, nn_k)
    per_s = prdc_per_sample(f.real, f.synthetic, nn_k)
    per_t = prdc_per_sample(f.real, f.train, nn_k)
    out = {}
    for key in ("precision", "recall", "density", "coverage"):
        per_real = key in ("recall", "coverage")
        units_s = sets.subjects.real if per_real else None
        units_t = sets.subjects.real if per_real else sets.subjects.train
        out[key] = metric_value(
            key,
            p_s[key],
            resampled_means(per_s[key], b, rng, units_s),
            p_t[key],
            resampled_means(per_t[key], b, rng, units_t),
            sets.extractor,
            sets.n,
            sets.n,
            redrawn=sets.redrawn.get(key),
            nn_k=nn_k,
        )
    return out


def audit_metrics(
    audit: MemorisationAudit,
    ext_name: str,
    b: int,
    rng: np.random.Generator,
    test_units: Any = None,
) -> dict[str, MetricValue]:
    """The memorisation audit's three metrics, on every synthetic and test sample (synthetic
    images resampled one by one, test images by subject: ``test_units``)."""
    n_s, n_t = len(audit.syn_distance), len(audit.test_distance)
    i_syn = resample_indices(n_s, b, rng)
    i_test = resample_indices(n_t, b, rng, test_units)
    loo = audit.loo_test_flags().astype(float)
    metrics: dict[str, MetricValue] = {}
    metrics["memorised_fraction"] = metric_value(
        "memorised_fraction",
        audit.fraction,
        audit_fraction_replicates(audit, i_syn, i_test),
        loo.mean(),
        loo[i_test].mean(1),
        ext_name,
        n_t,
        n_s,
        threshold=audit.threshold,
        n_flagged=int(audit.flagged.sum()),
    )
    metrics["nn_distance"] = metric_value(
        "nn_distance",
        np.median(audit.syn_distance),
        np.median(audit.syn_distance[i_syn], axis=1),
        np.median(audit.test_distance),
        np.median(audit.test_distance[i_test], axis=1),
        ext_name,
        n_t,
        n_s,
    )
    metrics["nn_ssim"] = metric_value(
        "nn_ssim",
        audit.syn_ssim.mean(),
        audit.syn_ssim[i_syn].mean(1),
        audit.test_ssim.mean(),
        audit.test_ssim[i_test].mean(1),
        f"{PIXELS} (nearest by {ext_name})",
        n_t,
        n_s,
    )
    return metrics
