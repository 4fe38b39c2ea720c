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
from ..measures.bootstrap import resampled_means
from ..measures.checks import gram, sq_dists
from ..measures.frechet import fid, fid_replicates
from ..measures.intervals import percentile_ci
from ..measures.manifold import prdc_metrics, prdc_per_sample
from ..measures.memorisation import MemorisationAudit, audit_fraction_replicates
from ..measures.mmd import mmd2_replicates, mmd_linear, mmd_rbf
from ..measures.redraws import RedrawnBaseline
from ..measures.similarity import diversity, ms_ssim_settings
from .results import METRICS, MetricValue

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
    the k-NN manifolds, seed, device and subject-level redraws (0: none)."""

    n_bootstrap: int = 200
    n_permutations: int = 200
    msssim_pairs: int = 100
    nn_k: int = 5
    seed: int = 0
    device: torch.device | str = "cpu"
    n_redraws: int = 0

    @classmethod
    def from_config(
        cls, cfg: MetricsConfig, device: torch.device | str, redraws: bool = True
    ) -> EvalSettings:
        """The settings of ``cfg`` on ``device``; ``redraws=False``: no redraws."""
        return cls(
            n_bootstrap=cfg.n_bootstrap,
            n_permutations=cfg.n_permutations,
            msssim_pairs=cfg.msssim_pairs,
            nn_k=cfg.nn_k,
            seed=cfg.seed,
            device=device,
            n_redraws=cfg.n_redraws if redraws else 0,
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
    space's name, the report's one RBF ``bandwidth`` and, by metric, the real-vs-real range of
    the subject-level redraws (empty: the one split's baseline with a bootstrap interval).

    Value = real vs synthetic; baseline = real vs train."""

    images: Sets[np.ndarray]
    features: Sets[np.ndarray]
    subjects: Sets[np.ndarray | None]
    extractor: str
    bandwidth: float
    redrawn: Mapping[str, RedrawnBaseline] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Samples per subset."""
        return len(self.images.real)


@dataclass(frozen=True)
class Resamples:
    """Bootstrap index arrays ``(B, n)`` into the pooled order ``[real; synthetic; train]`` of a
    :class:`SetComparison`: ``real`` and ``synthetic`` resample the value, ``real_base`` and
    ``train`` the baseline."""

    real: np.ndarray
    synthetic: np.ndarray
    real_base: np.ndarray
    train: np.ndarray

    @classmethod
    def draw(cls, n: int, b: int, rng: np.random.Generator) -> Resamples:
        """``b`` resamples of ``n``, drawn in this order: real, synthetic, real, train."""
        real = rng.integers(0, n, (b, n))
        synthetic = rng.integers(0, n, (b, n)) + n
        real_base = rng.integers(0, n, (b, n))
        train = rng.integers(0, n, (b, n)) + 2 * n
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
    bounds = METRICS[name][2:]
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
    boot = Resamples.draw(sets.n, settings.n_bootstrap, rng)
    metrics: dict[str, MetricValue] = {}
    metrics.update(_mmd_entries(sets, settings, boot))
    metrics["fid"] = _fid_entry(sets, boot)
    metrics["ms_ssim_diversity"] = _diversity_entry(sets, settings, rng)
    metrics.update(_prdc_entries(sets, settings, rng))
    return metrics


def _mmd_entries(
    sets: SetComparison, settings: EvalSettings, boot: Resamples
) -> dict[str, MetricValue]:
    """Linear MMD on images (MONAI) and RBF MMD^2 on features with the report's one bandwidth and
    a subject-level permutation test; replicates from pooled kernels."""
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
    # RBF kernel: one bandwidth for value, baseline and replicates; subjects move together
    d2 = sq_dists(np.concatenate([f.real, f.synthetic, f.train]))
    common = {"bandwidth": bandwidth, "n_permutations": n_permutations, "real_units": units.real}
    seed = settings.seed
    test_s = mmd_rbf(f.real, f.synthetic, seed=seed, synthetic_units=units.synthetic, **common)
    test_b = mmd_rbf(f.real, f.train, seed=seed + 1, synthetic_units=units.train, **common)
    kernel = np.exp(-d2 / (2 * bandwidth**2))
    rbf = metric_value(
        "mmd_rbf",
        test_s.value,
        mmd2_replicates(kernel, boot.real, boot.synthetic),
        test_b.value,
        mmd2_replicates(kernel, boot.real_base, boot.train),
        sets.extractor,
        n,
        n,
        redrawn=sets.redrawn.get("mmd_rbf"),
        p_value=test_s.p_value,
        baseline_p_value=test_b.p_value,
        bandwidth=bandwidth,
        n_permutations=n_permutations,
        permuted="subjects",
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
    """Precision / recall / density / coverage (prdc); replicates resample per-sample terms."""
    f, nn_k, b = sets.features, settings.nn_k, settings.n_bootstrap
    p_s, p_t = prdc_metrics(f.real, f.synthetic, nn_k), prdc_metrics(f.real, f.train, nn_k)
    per_s = prdc_per_sample(f.real, f.synthetic, nn_k)
    per_t = prdc_per_sample(f.real, f.train, nn_k)
    out = {}
    for key in ("precision", "recall", "density", "coverage"):
        out[key] = metric_value(
            key,
            p_s[key],
            resampled_means(per_s[key], b, rng),
            p_t[key],
            resampled_means(per_t[key], b, rng),
            sets.extractor,
            sets.n,
            sets.n,
            redrawn=sets.redrawn.get(key),
            nn_k=nn_k,
        )
    return out


def audit_metrics(
    audit: MemorisationAudit, ext_name: str, b: int, rng: np.random.Generator
) -> dict[str, MetricValue]:
    """The memorisation audit's three metrics, on every synthetic and test sample."""
    n_s, n_t = len(audit.syn_distance), len(audit.test_distance)
    i_syn = rng.integers(0, n_s, (b, n_s))
    i_test = rng.integers(0, n_t, (b, n_t))
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
