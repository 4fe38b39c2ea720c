"""Stage 5 itself: every metric with its real-vs-real baseline and CI, from arrays
(:func:`evaluate`) or from a run's outputs (:func:`run`, which writes ``metrics.json``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import artifacts, registry
from ..config import MetricsConfig
from ..device import resolve_device
from ..errors import MetricError
from ..features import FeatureExtractor, get_extractor
from ..measures.bootstrap import subset
from ..measures.checks import check_images, check_pair, sq_dists, subject_labels
from ..measures.layout_test import LayoutTest, calibrated_mmd_test
from ..measures.memorisation import memorisation_audit
from ..measures.mmd import median_bandwidth, per_site_mmd
from ..measures.redraws import RedrawnBaseline, redraw_baselines, strata_of
from ..measures.similarity import ms_ssim_settings
from ..runs import record_run
from .anatomy import TissueData, place_levels, split_levels, tissue_metrics
from .entries import EvalSettings, SetComparison, Sets, audit_metrics, set_metrics
from .inputs import MetricsInputs, SplitLabels, load_inputs, reference_group
from .results import MetricsData, MetricsResult, MetricValue, jsonable

__all__ = ["evaluate", "evaluate_inputs", "load_inputs", "reference_group", "run"]

log = logging.getLogger(__name__)


def evaluate(
    real: np.ndarray,
    synthetic: np.ndarray,
    train: np.ndarray,
    *,
    extractor: Any = "random",
    n_bootstrap: int = 200,
    n_permutations: int = 200,
    msssim_pairs: int = 100,
    nn_k: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    real_sites: Any = None,
    train_sites: Any = None,
    real_subjects: Any = None,
    train_subjects: Any = None,
    n_redraws: int = 0,
) -> MetricsResult:
    """All metrics, baselines and CIs from arrays.

    Parameters
    ----------
    real : np.ndarray
        Held-out real images (the test split), ``(N, 1, *spatial)`` in [0, 1].
    synthetic : np.ndarray
        Generated images, same per-sample shape, in [0, 1].
    train : np.ndarray
        The model's training images, same shape, in [0, 1]: the real-vs-real baseline and the
        reference of the memorisation audit.
    extractor : str or FeatureExtractor
        ``random`` | ``random3d`` | ``inception`` | ``medicalnet:<path>`` (see
        :mod:`neurodiff.features`).
    real_sites, train_sites : array-like, optional
        Site of each real / training sample, for the per-site view and the strata of the
        redraws (stratified by site as the split is; without sites, unstratified).
    real_subjects, train_subjects : array-like, optional
        Subject of each real / training sample: the real-vs-real range redraws subjects, the
        bootstrap resamples real images by subject and the real-vs-real MMD test moves whole
        subjects. Without them every image counts as its own subject (right for independent
        images, too optimistic for several slices per subject).
    n_redraws : int
        Subject-level redraws of the train/test split for the real-vs-real range of every set
        metric (:mod:`neurodiff.measures.redraws`) and the null distribution of the
        synthetic-vs-real MMD test (:mod:`neurodiff.measures.layout_test`); 0 keeps the one
        split's value with a bootstrap interval, and no synthetic-vs-real test.

    Notes
    -----
    Set-level metrics compare equal-size sets: ``n = min(N_test, N_synthetic, N_train)`` samples
    are drawn (seeded) from each, so that the synthetic comparison (test vs synthetic) and the
    baseline (test vs train) share their reference and their sizes. The memorisation audit uses
    every sample. Features are extracted once per set. One RBF bandwidth serves the whole report
    (value, intervals, baseline and redraws): the median heuristic on the pooled real features.
    The tissue fractions compare slices at matched levels, read from the splits' index tables
    (:func:`evaluate_inputs`); from arrays alone every image is at one level.
    """
    settings = EvalSettings(
        n_bootstrap=n_bootstrap,
        n_permutations=n_permutations,
        msssim_pairs=msssim_pairs,
        nn_k=nn_k,
        seed=seed,
        device=device,
        n_redraws=n_redraws,
    )
    return _evaluate(
        Sets(real, synthetic, train),
        extractor,
        settings,
        SplitLabels(sites=real_sites, subjects=real_subjects),
        SplitLabels(sites=train_sites, subjects=train_subjects),
    )


def _evaluate(
    images: Sets[np.ndarray],
    extractor: Any,
    settings: EvalSettings,
    real_labels: SplitLabels,
    train_labels: SplitLabels,
    *,
    params_hash: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> MetricsResult:
    """:func:`evaluate` of checked sets with ``settings``: the result built once, complete (the
    labels' index tables, ``params_hash`` and ``config`` included)."""
    images = _check_inputs(images, settings.nn_k)
    real, synthetic, train = images.real, images.synthetic, images.train
    kernel, weights = ms_ssim_settings(real.shape[2:])  # fails early for tiny images
    extractor = _extractor(extractor, settings.seed, settings.device, real.ndim - 2)
    ext_name = extractor.name_for(real.ndim - 2)
    feats = _features(images, extractor, ext_name, settings)
    subjects = Sets(
        subject_labels(real_labels.subjects, len(real), "real_subjects", "r"),
        None,
        subject_labels(train_labels.subjects, len(train), "train_subjects", "t"),
    )
    strata = _strata(real_labels, train_labels)
    rng = np.random.default_rng(settings.seed)
    comparison, sub = _comparison(images, feats, ext_name, subjects, strata, settings, rng)
    n, bandwidth = comparison.n, comparison.bandwidth
    metrics = set_metrics(comparison, settings, rng)
    audit = memorisation_audit(
        train,
        real,
        synthetic,
        feats["train"],
        feats["real"],
        feats["synthetic"],
        device=settings.device,
    )
    metrics.update(audit_metrics(audit, ext_name, settings.n_bootstrap, rng, subjects.real))
    tissue, tissue_data = _tissue(
        images, feats, sub, subjects, (real_labels, train_labels), settings, strata, comparison
    )
    metrics.update(tissue)
    sites = [None if x is None else np.asarray(x) for x in (real_labels.sites, train_labels.sites)]
    data = MetricsData(
        real=real,
        synthetic=synthetic,
        train=train,
        features=feats,
        subset=sub,
        real_sites=sites[0],
        train_sites=sites[1],
        train_index=train_labels.index,
        real_index=real_labels.index,
        tissue=tissue_data,
    )
    return MetricsResult(
        metrics=metrics,
        extractor=ext_name,
        n_subset=n,
        n_real=len(real),
        n_synthetic=len(synthetic),
        n_train=len(train),
        n_bootstrap=settings.n_bootstrap,
        ms_ssim_kernel=kernel,
        ms_ssim_weights=weights,
        audit=audit,
        per_site=_per_site(data, settings.seed) if settings.per_site else None,
        n_redraws=settings.n_redraws,
        bandwidth=bandwidth,
        params_hash=params_hash,
        config=None if config is None else dict(config),
        data=data,
    )


def _tissue(
    images: Sets[np.ndarray],
    feats: dict[str, np.ndarray],
    sub: dict[str, np.ndarray],
    subjects: Sets[np.ndarray | None],
    labels: tuple[SplitLabels, SplitLabels],
    settings: EvalSettings,
    strata: np.ndarray | None,
    comparison: SetComparison,
) -> tuple[dict[str, MetricValue], TissueData]:
    """The tissue-fraction metrics (:func:`~.anatomy.tissue_metrics`): every image placed at a
    level (real: its slice, from the index tables ``labels`` of the test and training splits),
    the real-vs-real range from the redraws of the other set metrics."""
    levels = place_levels(
        feats,
        subjects,
        split_levels(labels[0], len(images.real)),
        split_levels(labels[1], len(images.train)),
    )
    redrawn = next(iter(comparison.redrawn.values()), None)
    source = "" if redrawn is None else redrawn.source
    return tissue_metrics(images, sub, subjects, levels, settings, strata, source)


def _comparison(
    images: Sets[np.ndarray],
    feats: dict[str, np.ndarray],
    ext_name: str,
    subjects: Sets[np.ndarray | None],
    strata: np.ndarray | None,
    settings: EvalSettings,
    rng: np.random.Generator,
) -> tuple[SetComparison, dict[str, np.ndarray]]:
    """The equal-size subsets (drawn from ``rng``; returned as indices too) with the report's
    one RBF bandwidth, the redrawn real-vs-real ranges and the calibrated synthetic test."""
    real_feats = np.concatenate([feats["real"], feats["train"]])  # pooled: test, then train
    d2_real = sq_dists(real_feats)
    bandwidth = median_bandwidth(d2_real)  # the report's one RBF bandwidth
    n = min(len(images.real), len(images.synthetic), len(images.train))
    sub = {k: subset(len(x), n, rng) for k, x in images.as_dict().items()}
    test, note = _synthetic_test(
        real_feats,
        feats["synthetic"][sub["synthetic"]],
        subjects,
        sub["real"],
        strata,
        bandwidth,
        settings,
    )
    comparison = SetComparison(
        images=Sets(*(x[sub[k]] for k, x in images.as_dict().items())),
        features=Sets(*(feats[k][sub[k]] for k in ("real", "synthetic", "train"))),
        subjects=Sets(subjects.real[sub["real"]], None, subjects.train[sub["train"]]),
        extractor=ext_name,
        bandwidth=bandwidth,
        redrawn=_redrawn(images, real_feats, d2_real, subjects, n, bandwidth, settings, strata),
        synthetic_test=test,
        test_note=note,
    )
    return comparison, sub


def _redrawn(
    images: Sets[np.ndarray],
    real_feats: np.ndarray,
    d2_real: np.ndarray,
    subjects: Sets[np.ndarray | None],
    n: int,
    bandwidth: float,
    settings: EvalSettings,
    strata: np.ndarray | None,
) -> dict[str, RedrawnBaseline]:
    """The real-vs-real range of every set metric from ``settings.n_redraws`` subject-level
    redraws of the pooled real data, stratified by ``strata`` (empty without redraws)."""
    if settings.n_redraws <= 0:
        return {}
    return redraw_baselines(
        np.concatenate([images.real, images.train]),
        real_feats,
        d2_real,
        subjects.real,
        subjects.train,
        n=n,
        n_redraws=settings.n_redraws,
        bandwidth=bandwidth,
        nn_k=settings.nn_k,
        msssim_pairs=settings.msssim_pairs,
        seed=settings.seed,
        device=settings.device,
        strata=strata,
    )


def _strata(real: SplitLabels, train: SplitLabels) -> np.ndarray | None:
    """The stratum of each pooled real image (test, then train): site, and group where both
    splits have groups, as the split stratifies; None without sites (unstratified redraws)."""
    if real.sites is None or train.sites is None:
        return None
    groups = None
    if real.groups is not None and train.groups is not None:
        groups = np.concatenate([np.asarray(real.groups), np.asarray(train.groups)])
    return strata_of(np.concatenate([np.asarray(real.sites), np.asarray(train.sites)]), groups)


def _synthetic_test(
    real_feats: np.ndarray,
    synthetic_feats: np.ndarray,
    subjects: Sets[np.ndarray | None],
    observed: np.ndarray,
    strata: np.ndarray | None,
    bandwidth: float,
    settings: EvalSettings,
) -> tuple[LayoutTest | None, str]:
    """The synthetic-vs-real MMD test calibrated on ``settings.n_redraws`` real-vs-real redraws
    (:func:`~neurodiff.measures.layout_test.calibrated_mmd_test`) of the real test subset
    ``observed`` against the synthetic subset; None, and why, when it cannot be run."""
    if settings.n_redraws <= 0:
        return None, "not run: needs subject-level redraws (n_redraws > 0)"
    pooled = np.concatenate([subjects.real, subjects.train])
    try:
        test = calibrated_mmd_test(
            real_feats,
            pooled,
            observed,
            np.arange(len(pooled)) < len(subjects.real),
            synthetic_feats,
            bandwidth=bandwidth,
            n_redraws=settings.n_redraws,
            seed=settings.seed + 3,
            strata=strata,
        )
    except MetricError as err:  # too few real subjects for the layout
        return None, f"not run: {err}"
    return test, ""


def _features(
    images: Sets[np.ndarray], extractor: FeatureExtractor, name: str, settings: EvalSettings
) -> dict[str, np.ndarray]:
    """The features of each set (extracted once), with a log line."""
    log.info(
        "metrics on %s: %d real, %d synthetic, %d train; features %s; %d bootstrap",
        settings.device,
        len(images.real),
        len(images.synthetic),
        len(images.train),
        name,
        settings.n_bootstrap,
    )
    return {k: extractor(x) for k, x in images.as_dict().items()}


def _check_inputs(images: Sets[Any], nn_k: int) -> Sets[np.ndarray]:
    """The three image sets checked (shape, range, size) and made float32 arrays."""
    names = ("real (test)", "synthetic", "train")
    n_min = max(2, nn_k + 1)
    why = (
        f"precision/recall/density/coverage with nn_k={nn_k} need nn_k + 1 = {nn_k + 1}; "
        "MMD, FID and MS-SSIM need 2"
    )
    real, synthetic, train = (
        check_images(x, nm, min_samples=n_min, why=why)
        for x, nm in zip((images.real, images.synthetic, images.train), names)
    )
    check_pair(real, synthetic, names[:2])
    check_pair(real, train, (names[0], names[2]))
    return Sets(real, synthetic, train)


def _extractor(extractor: Any, seed: int, device, image_dims: int) -> FeatureExtractor:
    """A :class:`FeatureExtractor` from a name or an extractor, checked against the images."""
    if isinstance(extractor, str):
        extractor = get_extractor(extractor, seed=seed, device=device)
    elif not isinstance(extractor, FeatureExtractor):
        raise MetricError(
            f"argument 'extractor' must be a name or a FeatureExtractor; "
            f"got {type(extractor).__name__}"
        )
    extractor.check(image_dims)
    return extractor


def _per_site(data: MetricsData, seed: int) -> pd.DataFrame | None:
    """Per-site MMD of the synthetic set (None without site labels)."""
    if data.real_sites is None or data.train_sites is None:
        return None
    feats = data.features
    return per_site_mmd(
        np.concatenate([feats["real"], feats["train"]]),
        np.concatenate([data.real_sites, data.train_sites]),
        feats["synthetic"],
        seed=seed,
    )


def evaluate_inputs(
    inputs: MetricsInputs,
    cfg: MetricsConfig,
    extractor,
    device,
    per_group: bool = False,
    params_hash: str | None = None,
) -> MetricsResult:
    """:func:`evaluate` of :func:`load_inputs`' sets with ``cfg``'s settings, subjects (and sites)
    from their index tables; the result carries the index tables, ``params_hash`` and ``cfg``
    (with its hash). ``per_group``: the per-group view's settings -- no per-site view (the
    redraws, stratified by site, and the synthetic-vs-real test stay)."""
    return _evaluate(
        Sets(inputs.test, inputs.synthetic, inputs.train),
        extractor,
        EvalSettings.from_config(cfg, device, per_site=not per_group),
        inputs.labels("test"),
        inputs.labels("train"),
        params_hash=params_hash,
        config={**cfg.to_dict(), "config_hash": cfg.hash()},
    )


def run(params: Any) -> MetricsResult:
    """Stage 5: every metric, written to ``metrics.json`` in ``artifacts.metrics_dir(params)``.

    Real = the held-out **test** split vs the synthetic set. Baseline = the same test samples vs
    an equal-size subset of the **training** split. Why this baseline: train and test hold
    different subjects from the same sites and pipeline, so their distance is what two
    independent real samples of this size show -- the value a perfect generator would reach. Using
    the test set as the reference in both comparisons makes them differ only in the second set.
    Training samples are also what a memorising model would reproduce, which the audit checks.

    The JSON holds, per metric, the value, CI, baseline and its CI, extractor, n_real,
    n_synthetic and the parameters hash; it is written atomically
    (:func:`neurodiff.artifacts.write_metrics_json`). The result returned carries its path.
    """
    cfg = params.stage(MetricsConfig)
    device = resolve_device(cfg.device)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=device)  # fail early
    inputs = load_inputs(params)
    if inputs.group is not None:
        log.info("realism of group %r (real test vs synthetic %s)", inputs.group, inputs.group)
    result = evaluate_inputs(inputs, cfg, extractor, device, params_hash=params.hash())
    path = artifacts.write_metrics_json(params, jsonable(result.to_dict()))
    record_run(params, registry.METRICS)
    return dataclasses.replace(result, path=path)
