"""Stage 5 itself: every metric with its real-vs-real baseline and CI, from arrays
(:func:`evaluate`) or from a run's outputs (:func:`run`, which writes ``metrics.json``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import artifacts
from ..artifacts import metrics_dir
from ..config import MetricsConfig
from ..device import resolve_device
from ..errors import MetricError
from ..features import FeatureExtractor, get_extractor
from ..io import atomic_write_json
from ..runs import record_run
from .bootstrap import percentile_ci, resampled_means, subset
from .checks import check_images, check_pair, gram, sq_dists, subject_labels
from .frechet import fid, fid_replicates
from .inputs import _index_column, load_inputs, reference_group
from .manifold import prdc_metrics, prdc_per_sample
from .memorisation import MemorisationAudit, audit_fraction_replicates, memorisation_audit
from .mmd import median_bandwidth, mmd2_replicates, mmd_linear, mmd_rbf, per_site_mmd
from .redraws import redraw_baselines
from .results import METRICS, MetricsData, MetricsResult, MetricValue, jsonable
from .similarity import diversity, ms_ssim_settings

__all__ = ["evaluate", "evaluate_inputs", "load_inputs", "reference_group", "run"]

log = logging.getLogger(__name__)

_PIXELS = "pixels"


def _entry(
    name: str,
    value: float,
    reps: np.ndarray,
    baseline: float,
    base_reps: np.ndarray,
    extractor: str,
    n_real: int,
    n_syn: int,
    **extra: Any,
) -> MetricValue:
    bounds = METRICS[name][2:]
    return MetricValue(
        name,
        float(value),
        percentile_ci(value, reps, bounds),
        float(baseline),
        percentile_ci(baseline, base_reps, bounds),
        extractor,
        n_real,
        n_syn,
        {k: v for k, v in extra.items() if v is not None},
    )


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
        Site of each real / training sample, for the per-site view.
    real_subjects, train_subjects : array-like, optional
        Subject of each real / training sample: the MMD permutation test moves whole subjects,
        and the real-vs-real range redraws subjects. Without them every image counts as its own
        subject (right for independent images, too optimistic for several slices per subject).
    n_redraws : int
        Subject-level redraws of the train/test split for the real-vs-real range of every set
        metric (:mod:`.redraws`); 0 keeps the one split's value with a bootstrap interval.

    Notes
    -----
    Set-level metrics compare equal-size sets: ``n = min(N_test, N_synthetic, N_train)`` samples
    are drawn (seeded) from each, so that the synthetic comparison (test vs synthetic) and the
    baseline (test vs train) share their reference and their sizes. The memorisation audit uses
    every sample. Features are extracted once per set. One RBF bandwidth serves the whole report
    (value, intervals, baseline and redraws): the median heuristic on the pooled real features.
    """
    real, synthetic, train = _check_inputs(real, synthetic, train, nn_k)
    kernel, weights = ms_ssim_settings(real.shape[2:])  # fails early for tiny images
    ext_name, feats = _features(
        {"real": real, "synthetic": synthetic, "train": train}, extractor, seed, device, n_bootstrap
    )
    subjects = {
        "real": subject_labels(real_subjects, len(real), "real_subjects", "r"),
        "train": subject_labels(train_subjects, len(train), "train_subjects", "t"),
    }
    real_pool, d2_pool, bandwidth = _pooled_real(feats)
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), len(train))
    sub = {
        k: subset(len(x), n, rng)
        for k, x in (("real", real), ("synthetic", synthetic), ("train", train))
    }
    images = (real[sub["real"]], synthetic[sub["synthetic"]], train[sub["train"]])
    features = tuple(feats[k][sub[k]] for k in ("real", "synthetic", "train"))
    units = (subjects["real"][sub["real"]], None, subjects["train"][sub["train"]])
    mmd_test = (n_permutations, units, bandwidth)
    metrics = _set_metrics(
        images, features, ext_name, n_bootstrap, mmd_test, msssim_pairs, nn_k, seed, device, rng
    )
    if n_redraws > 0:
        sizes = (n, n_redraws, bandwidth, nn_k, msssim_pairs, seed)
        pooled = np.concatenate([real, train])
        redraw_baselines(metrics, pooled, real_pool, d2_pool, subjects, sizes, device)
    audit = memorisation_audit(
        train, real, synthetic, feats["train"], feats["real"], feats["synthetic"], device=device
    )
    metrics.update(_audit_metrics(audit, ext_name, n_bootstrap, rng))

    sites = [None if x is None else np.asarray(x) for x in (real_sites, train_sites)]
    data = MetricsData(real, synthetic, train, feats, sub, *sites)
    return MetricsResult(
        metrics,
        ext_name,
        n,
        len(real),
        len(synthetic),
        len(train),
        n_bootstrap,
        kernel,
        weights,
        audit,
        per_site=_per_site(data, seed),
        n_redraws=n_redraws,
        bandwidth=bandwidth,
        data=data,
    )


def _pooled_real(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """The real features pooled (test, then train), their squared distances and the report's one
    RBF bandwidth (median heuristic on them)."""
    pooled = np.concatenate([feats["real"], feats["train"]])
    d2 = sq_dists(pooled)
    return pooled, d2, median_bandwidth(d2)


def _features(sets: dict[str, np.ndarray], extractor, seed, device, n_bootstrap):
    """The extractor's name and the features of each set (extracted once), with a log line."""
    dims = sets["real"].ndim - 2
    extractor = _extractor(extractor, seed, device, dims)
    ext_name = extractor.name_for(dims)
    log.info(
        "metrics on %s: %d real, %d synthetic, %d train; features %s; %d bootstrap",
        device,
        len(sets["real"]),
        len(sets["synthetic"]),
        len(sets["train"]),
        ext_name,
        n_bootstrap,
    )
    return ext_name, {k: extractor(x) for k, x in sets.items()}


def _check_inputs(real, synthetic, train, nn_k: int) -> tuple[np.ndarray, ...]:
    """The three image sets checked (shape, range, size) and made float32 arrays."""
    names = ("real (test)", "synthetic", "train")
    n_min = max(2, nn_k + 1)
    why = (
        f"precision/recall/density/coverage with nn_k={nn_k} need nn_k + 1 = {nn_k + 1}; "
        "MMD, FID and MS-SSIM need 2"
    )
    real, synthetic, train = (
        check_images(x, nm, min_samples=n_min, why=why)
        for x, nm in zip((real, synthetic, train), names)
    )
    check_pair(real, synthetic, names[:2])
    check_pair(real, train, (names[0], names[2]))
    return real, synthetic, train


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


def _set_metrics(
    images, features, ext_name, b, mmd_test, msssim_pairs, nn_k, seed, device, rng
) -> dict[str, MetricValue]:
    """MMD (images, features), FID, MS-SSIM diversity and PRDC on the equal-size subsets
    ``(real, synthetic, train)``: value = real vs synthetic, baseline = real vs train.
    ``mmd_test`` is ``(n_permutations, subjects of each subset, bandwidth)``.

    The order of the draws from ``rng`` is part of the result (same seed, same numbers): the four
    bootstrap index arrays first, then the diversity and PRDC resamples.
    """
    n = len(images[0])
    # Bootstrap indices into the pooled order [real_n; synthetic_n; train_n].
    ia = rng.integers(0, n, (b, n))
    ib = rng.integers(0, n, (b, n)) + n  # synthetic
    ja = rng.integers(0, n, (b, n))
    jb = rng.integers(0, n, (b, n)) + 2 * n  # train
    boot = (ia, ib, ja, jb)
    metrics: dict[str, MetricValue] = {}
    metrics.update(_mmd_entries(images, features, ext_name, boot, mmd_test, seed))
    metrics["fid"] = _fid_entry(features, ext_name, boot)
    metrics["ms_ssim_diversity"] = _diversity_entry(images, msssim_pairs, b, seed, device, rng)
    metrics.update(_prdc_entries(features, ext_name, nn_k, b, rng))
    return metrics


def _mmd_entries(images, features, ext_name, boot, mmd_test, seed) -> dict[str, MetricValue]:
    """Linear MMD on images (MONAI) and RBF MMD^2 on features with the report's one bandwidth and
    a subject-level permutation test; replicates from pooled kernels."""
    n_permutations, (u_real, u_syn, u_train), bandwidth = mmd_test
    r_img, s_img, t_img = images
    r_f, s_f, t_f = features
    ia, ib, ja, jb = boot
    n = len(r_img)
    g_img = gram(np.concatenate([r_img, s_img, t_img]))
    linear = _entry(
        "mmd_linear",
        mmd_linear(r_img, s_img),
        mmd2_replicates(g_img, ia, ib),
        mmd_linear(r_img, t_img),
        mmd2_replicates(g_img, ja, jb),
        _PIXELS,
        n,
        n,
    )
    # RBF kernel: one bandwidth for value, baseline and replicates; subjects move together
    d2 = sq_dists(np.concatenate([r_f, s_f, t_f]))
    common = {"bandwidth": bandwidth, "n_permutations": n_permutations, "real_units": u_real}
    test_s = mmd_rbf(r_f, s_f, seed=seed, synthetic_units=u_syn, **common)
    test_b = mmd_rbf(r_f, t_f, seed=seed + 1, synthetic_units=u_train, **common)
    kernel = np.exp(-d2 / (2 * bandwidth**2))
    rbf = _entry(
        "mmd_rbf",
        test_s.value,
        mmd2_replicates(kernel, ia, ib),
        test_b.value,
        mmd2_replicates(kernel, ja, jb),
        ext_name,
        n,
        n,
        p_value=test_s.p_value,
        baseline_p_value=test_b.p_value,
        bandwidth=bandwidth,
        n_permutations=n_permutations,
        permuted="subjects",
    )
    return {"mmd_linear": linear, "mmd_rbf": rbf}


def _fid_entry(features, ext_name, boot) -> MetricValue:
    """FID (MONAI), replicates from the pooled feature Gram matrix."""
    r_f, s_f, t_f = features
    ia, ib, ja, jb = boot
    pooled = np.concatenate([r_f, s_f, t_f])
    g_f = pooled @ pooled.T
    n = len(r_f)
    return _entry(
        "fid",
        fid(r_f, s_f),
        fid_replicates(g_f, ia, ib),
        fid(r_f, t_f),
        fid_replicates(g_f, ja, jb),
        ext_name,
        n,
        n,
    )


def _diversity_entry(images, msssim_pairs, b, seed, device, rng) -> MetricValue:
    """MS-SSIM diversity within the synthetic and within the train subset; replicates resample
    the pairs."""
    _r_img, s_img, t_img = images
    kernel, weights = ms_ssim_settings(s_img.shape[2:])
    div_s = diversity(s_img, msssim_pairs, seed=seed, device=device)
    div_t = diversity(t_img, msssim_pairs, seed=seed + 1, device=device)
    n = len(s_img)
    return _entry(
        "ms_ssim_diversity",
        div_s.mean(),
        resampled_means(div_s, b, rng),
        div_t.mean(),
        resampled_means(div_t, b, rng),
        _PIXELS,
        n,
        n,
        n_pairs=len(div_s),
        kernel_size=kernel,
        scales=len(weights),
    )


def _prdc_entries(features, ext_name, nn_k, b, rng) -> dict[str, MetricValue]:
    """Precision / recall / density / coverage (prdc); replicates resample per-sample terms."""
    r_f, s_f, t_f = features
    n = len(r_f)
    p_s, p_t = prdc_metrics(r_f, s_f, nn_k), prdc_metrics(r_f, t_f, nn_k)
    per_s, per_t = prdc_per_sample(r_f, s_f, nn_k), prdc_per_sample(r_f, t_f, nn_k)
    out = {}
    for key in ("precision", "recall", "density", "coverage"):
        out[key] = _entry(
            key,
            p_s[key],
            resampled_means(per_s[key], b, rng),
            p_t[key],
            resampled_means(per_t[key], b, rng),
            ext_name,
            n,
            n,
            nn_k=nn_k,
        )
    return out


def _audit_metrics(
    audit: MemorisationAudit, ext_name: str, b: int, rng: np.random.Generator
) -> dict[str, MetricValue]:
    """The memorisation audit's three metrics, on every synthetic and test sample."""
    n_s, n_t = len(audit.syn_distance), len(audit.test_distance)
    i_syn = rng.integers(0, n_s, (b, n_s))
    i_test = rng.integers(0, n_t, (b, n_t))
    loo = audit.loo_test_flags().astype(float)
    metrics: dict[str, MetricValue] = {}
    metrics["memorised_fraction"] = _entry(
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
    metrics["nn_distance"] = _entry(
        "nn_distance",
        np.median(audit.syn_distance),
        np.median(audit.syn_distance[i_syn], axis=1),
        np.median(audit.test_distance),
        np.median(audit.test_distance[i_test], axis=1),
        ext_name,
        n_t,
        n_s,
    )
    metrics["nn_ssim"] = _entry(
        "nn_ssim",
        audit.syn_ssim.mean(),
        audit.syn_ssim[i_syn].mean(1),
        audit.test_ssim.mean(),
        audit.test_ssim[i_test].mean(1),
        f"{_PIXELS} (nearest by {ext_name})",
        n_t,
        n_s,
    )
    return metrics


def evaluate_inputs(
    inputs: dict[str, Any], cfg: MetricsConfig, extractor, device, per_group: bool = False
) -> MetricsResult:
    """:func:`evaluate` of :func:`load_inputs`' sets with ``cfg``'s settings, subjects (and sites)
    from their index tables. ``per_group``: the per-group view's settings -- no per-site view and
    no redraws (a group of a few subjects is too small to redraw)."""
    column = {
        c: {s: _index_column(inputs, s, c) for s in ("test", "train")} for c in ("site", "subject")
    }
    sites = column["site"] if not per_group else {"test": None, "train": None}
    return evaluate(
        inputs["test"],
        inputs["synthetic"],
        inputs["train"],
        extractor=extractor,
        n_bootstrap=cfg.n_bootstrap,
        n_permutations=cfg.n_permutations,
        msssim_pairs=cfg.msssim_pairs,
        nn_k=cfg.nn_k,
        seed=cfg.seed,
        device=device,
        real_sites=sites["test"],
        train_sites=sites["train"],
        real_subjects=column["subject"]["test"],
        train_subjects=column["subject"]["train"],
        n_redraws=0 if per_group else cfg.n_redraws,
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
    n_synthetic and the parameters hash; it is written atomically.
    """
    cfg = params.stage(MetricsConfig)
    device = resolve_device(cfg.device)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=device)  # fail early
    inputs = load_inputs(params)
    group = reference_group(params)
    if group is not None:
        log.info("realism of group %r (real test vs synthetic %s)", group, group)
    result = evaluate_inputs(inputs, cfg, extractor, device)
    result.params_hash = params.hash()
    result.data.train_index = inputs["train_index"]
    result.data.real_index = inputs["test_index"]
    result.config = {**cfg.to_dict(), "config_hash": cfg.hash()}
    path = metrics_dir(params) / "metrics.json"
    atomic_write_json(path, jsonable(result.to_dict()))
    record_run(params, artifacts.METRICS)
    result.path = path
    return result
