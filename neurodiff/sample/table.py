"""Comparing samplers on one trained model: speed and a quick quality figure per sampler, and the
reverse process of one sample (chapter 4's table and teaching figures)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..artifacts import load_split
from ..config import ModelConfig, Params, sampler_fits, samplers_for
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..intensity import to_unit_range
from ..measures.checks import sq_dists
from ..measures.mmd import median_bandwidth, mmd_linear, mmd_rbf
from ..model import ClassGuided, load_ema_model, null_class
from ..sampling import (
    ReverseProcess,
    check_sampler_args,
    generate,
    network_evaluations,
    reverse_process,
)

__all__ = [
    "DDIM_BACKGROUND_FILE",
    "TABLE_STEPS",
    "background_mean",
    "compare_samplers",
    "ddim_background",
    "ddim_background_reading",
    "recommend",
    "default_table_rows",
    "reverse_processes",
    "sampler_table",
    "speedup",
]


#: The candidate rows of the sampler table: step counts per sampler (``None``: all T). The
#: samplers that fit the model (:func:`neurodiff.config.sampler_fits`) and the counts <= T are
#: kept.
TABLE_STEPS: dict[str, tuple[int | None, ...]] = {
    "ddpm": (None,),
    "ddim": (250, 100, 50, 20, 10),
    "pndm": (50, 20),
    "euler": (5, 10, 20),
    "heun": (5, 10, 20),
}
#: Bootstrap replicates of each row's FID interval.
TABLE_BOOTSTRAP = 200


def default_table_rows(
    timesteps: int, process: str = "ddpm", prediction_type: str = "epsilon"
) -> list[tuple[str, int]]:
    """``(sampler, steps)`` rows of :data:`TABLE_STEPS` that fit the model (the sampler rules of
    :mod:`neurodiff.config.samplers`), with steps <= T.

    DDPM models: DDPM with all T steps, DDIM 250/100/50/20/10 and PNDM 50/20 (PNDM for an
    epsilon-prediction model only). Rectified-flow models: Euler and Heun 5/10/20.
    """
    return [
        (sampler, timesteps if steps is None else steps)
        for sampler, counts in TABLE_STEPS.items()
        if sampler_fits(process, prediction_type, sampler)
        for steps in counts
        if steps is None or steps <= timesteps
    ]


def sampler_table(
    model: torch.nn.Module,
    model_config: ModelConfig,
    real: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    n: int = 8,
    rows: Sequence[tuple[str, int]] | None = None,
    eta: float = 0.0,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = False,
    extractor=None,
):
    """Seconds per sample and quality figures for several samplers, same model and seed.

    Parameters
    ----------
    real : np.ndarray
        Real images ``(M, 1, *spatial)`` in [0, 1] (e.g. the test split mapped to [0, 1]).
    reference : np.ndarray, optional
        Other real images in [0, 1] (e.g. the train split): ``n`` of them give a ``real`` row,
        the same statistics between two real sets, against which the synthetic rows are read.
    n : int
        Samples per row (>= 2), compared with ``n`` real images drawn once (seeded).
    rows : sequence of (sampler, steps), optional
        Default :func:`default_table_rows`.
    extractor : str or FeatureExtractor, optional
        Feature extractor of stage 5 (e.g. ``"random"``): adds ``fid``, ``precision`` and
        ``recall`` in its feature space (k = min(5, n - 2); from n = 3), the figures that rank
        the rows.

    Returns
    -------
    pandas.DataFrame
        One row per sampler: ``sampler``, ``steps`` (network evaluations per sample), ``label``,
        ``seconds``, ``seconds_per_sample``, ``mmd_rbf`` (unbiased MMD² with a Gaussian kernel
        on the pixels, :func:`neurodiff.measures.mmd_rbf`, one bandwidth for every row: the
        median heuristic on the real images) and ``mmd_linear`` (MONAI's linear-kernel MMD², the
        statistic the paper most likely reported, :func:`neurodiff.measures.mmd_linear`). Both are
        unbiased estimates and can be slightly negative when the sets are alike. With an
        ``extractor``: ``fid`` with its bootstrap 95 % interval (``fid_ci_low``,
        ``fid_ci_high``: chapter 5's rule, :func:`neurodiff.measures.percentile_ci`),
        ``precision``, ``recall`` against the same real images.
    """
    import pandas as pd

    real = _check_table_inputs(model_config, real, n)
    rows = _table_rows(model_config, rows, eta)
    rng = np.random.default_rng(seed)
    k = min(n, len(real))
    real_k = real[rng.choice(len(real), k, replace=False)]
    ref_k = None
    if reference is not None and len(reference) >= k:
        ref = np.asarray(reference, dtype=np.float32)
        ref_k = ref[rng.choice(len(ref), k, replace=False)]
    pool = real_k if ref_k is None else np.concatenate([real_k, ref_k])
    bandwidth = median_bandwidth(sq_dists(pool.reshape(len(pool), -1).astype(np.float64)))

    quality = _quality(real_k, bandwidth, extractor, seed, device)
    records = []
    if ref_k is not None:
        records.append(
            {
                "sampler": "real",
                "steps": 0,
                "label": "real (reference)",
                "seconds": 0.0,
                "seconds_per_sample": 0.0,
                **quality(ref_k),
            }
        )
    sample_args = {
        "eta": eta,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "precision": precision,
        "progress": progress,
    }
    for sampler, steps in rows:
        t0 = time.perf_counter()
        x = generate(model, model_config, k, sampler=sampler, steps=steps, **sample_args)
        seconds = time.perf_counter() - t0
        n_evals = network_evaluations(model_config, sampler, steps)
        steps_label = steps if sampler == "heun" else n_evals
        records.append(
            {
                "sampler": sampler,
                "steps": n_evals,
                "label": f"{sampler}-{steps_label}",
                "seconds": seconds,
                "seconds_per_sample": seconds / k,
                **quality(to_unit_range(x)),
            }
        )
    table = pd.DataFrame.from_records(records)
    table.attrs["bandwidth"] = bandwidth
    table.attrs["n"] = k
    return table


def _quality(real_k: np.ndarray, bandwidth: float, extractor, seed: int, device):
    """``quality(images)``: the table's statistics of ``images`` against ``real_k`` (pixel MMDs;
    with an extractor, FID, precision and recall in its features from 3 images on)."""
    from ..features import get_extractor
    from ..measures.frechet import fid
    from ..measures.manifold import prdc_metrics

    k = len(real_k)
    if isinstance(extractor, str):
        extractor = get_extractor(extractor, seed=seed, device=device or "cpu")
    # k-NN radii need nn_k + 1 other samples: feature metrics from 3 samples per row
    real_f = extractor(real_k) if extractor is not None and k >= 3 else None
    nn_k = max(1, min(5, k - 2))

    def quality(images: np.ndarray) -> dict[str, float]:
        out = {
            "mmd_rbf": mmd_rbf(
                real_k.reshape(k, -1), images.reshape(len(images), -1), bandwidth=bandwidth
            ).value,
            "mmd_linear": mmd_linear(real_k, images),
        }
        if real_f is not None:
            feats = extractor(images)
            prdc = prdc_metrics(real_f, feats, nn_k)
            value = fid(real_f, feats)
            low, high = _fid_interval(real_f, feats, value, seed)
            out.update(
                fid=value,
                fid_ci_low=low,
                fid_ci_high=high,
                precision=prdc["precision"],
                recall=prdc["recall"],
            )
        return out

    return quality


def _fid_interval(
    real_f: np.ndarray, feats: np.ndarray, value: float, seed: int
) -> tuple[float, float]:
    """The FID's bootstrap 95 % interval, by chapter 5's rule (both sets resampled with
    replacement, :func:`neurodiff.measures.percentile_ci` on the replicates), so that rows whose
    intervals overlap are read as a tie."""
    from ..measures.frechet import fid_replicates
    from ..measures.intervals import percentile_ci

    n, m = len(real_f), len(feats)
    rng = np.random.default_rng([seed, TABLE_BOOTSTRAP])  # apart from the table's own draws
    pooled = np.concatenate([real_f, feats]).astype(np.float64)
    ia = rng.integers(0, n, (TABLE_BOOTSTRAP, n))
    ib = n + rng.integers(0, m, (TABLE_BOOTSTRAP, m))
    reps = fid_replicates(pooled @ pooled.T, ia, ib)
    return percentile_ci(value, reps, bounds=(0.0, None))


def _table_rows(
    model_config: ModelConfig, rows: Sequence[tuple[str, int]] | None, eta: float
) -> list[tuple[str, int]]:
    """The rows asked for, or :func:`default_table_rows`, each checked against the model."""
    if rows is None:
        rows = default_table_rows(
            model_config.timesteps, model_config.process, model_config.prediction_type
        )
    rows = list(rows)
    for sampler, steps in rows:
        check_sampler_args(model_config, sampler, steps, eta)
    return rows


def _check_table_inputs(model_config: ModelConfig, real, n: int) -> np.ndarray:
    """The real images as float32, checked against the model; ``n`` checked to be >= 2."""
    if n < 2:
        raise ConfigError(
            f"sampler_table(): argument 'n' (the parameter sampler_table_samples in a run) must "
            f"be >= 2: the MMD needs two samples per set; got {n}",
            parameter="sampler_table_samples",
        )
    real = np.asarray(real, dtype=np.float32)
    want = (1,) + (model_config.image_size,) * model_config.spatial_dims
    if real.ndim != 2 + model_config.spatial_dims or tuple(real.shape[1:]) != want:
        raise DataError(
            f"real images must have shape (M, {', '.join(map(str, want))}) to match "
            f"the model; got {real.shape}"
        )
    if len(real) < 2:
        raise DataError(f"need at least 2 real images for the MMD; got {len(real)}")
    return real


def compare_samplers(params: Params, rows: Sequence[tuple[str, int]] | None = None):
    """:func:`sampler_table` for the run of ``params``: its EMA model, its real test images (the
    reference) and real training images (the ``real`` row), ``sampler_table_samples`` samples per
    row, with the run's ``eta``, ``sample_batch_size``, ``seed``, ``device`` and ``precision``.
    A class-conditional model samples its first group (the healthy controls), against that
    group's real images (:func:`reference_model`)."""
    device = resolve_device(params.device)
    model, model_config, group = reference_model(params, device)
    return sampler_table(
        model,
        model_config,
        to_unit_range(load_split(params, "test", group=group)[0]),
        to_unit_range(load_split(params, "train", group=group)[0]),
        n=params.sampler_table_samples,
        rows=rows,
        eta=params.eta,
        batch_size=params.sample_batch_size,
        seed=params.seed,
        device=device,
        precision=params.precision,
        extractor=params.extractor,
    )


def reference_model(params: Params, device) -> tuple[Any, ModelConfig, str | None]:
    """The EMA model of ``params`` as chapter 4 shows it: ``(model, model config, group)``. A
    class-conditional model is fixed to its first group (the healthy controls, whose realism the
    report measures) with the run's ``guidance_scale``; ``group`` is None for an unconditional
    model."""
    model, model_config, _checkpoint = load_ema_model(params, device)
    if not model_config.groups:
        return model, model_config, None
    guided = ClassGuided(model, 0, null_class(model_config), params.guidance_scale)
    return guided, model_config, model_config.groups[0]


def recommend(table, tolerance: float = 0.05) -> dict[str, str | float]:
    """The best row by FID and the fastest row within ``tolerance`` (relative) of that FID.

    Returns ``{"metric": "fid", "best": label, "best_value": ..., "fast": label,
    "fast_value": ..., "fast_seconds_per_sample": ...}``. A table without FID (made without an
    extractor, or with fewer than 3 samples per row) is read by its pixel RBF-MMD instead, and
    ``metric`` says so.
    """
    rows = table[table["sampler"] != "real"]
    if rows.empty:
        raise DataError("recommend(): the sampler table has no sampler rows")
    metric = "fid" if "fid" in rows and rows["fid"].notna().all() else "mmd_rbf"
    best = rows.loc[rows[metric].idxmin()]
    near = rows[rows[metric] <= best[metric] + abs(best[metric]) * tolerance]
    fast = near.loc[near["seconds_per_sample"].idxmin()]
    return {
        "metric": metric,
        "best": str(best["label"]),
        "best_value": float(best[metric]),
        "fast": str(fast["label"]),
        "fast_value": float(fast[metric]),
        "fast_seconds_per_sample": float(fast["seconds_per_sample"]),
    }


def reverse_processes(params: Params, n_snapshots: int = 6) -> dict[str, ReverseProcess]:
    """One sample's reverse process with two samplers of the model, same seed, from the EMA
    model of ``params``: DDPM (all T steps) and DDIM (``steps``, eta = 0) for a DDPM model
    (``{"ddpm": ..., "ddim": ...}``), Euler and Heun (``steps`` each) for a rectified-flow model
    (``{"euler": ..., "heun": ...}``)."""
    device = resolve_device(params.device)
    model, model_config, _group = reference_model(params, device)
    common = {
        "n_snapshots": n_snapshots,
        "seed": params.seed,
        "device": device,
        "precision": params.precision,
    }
    steps = min(params.steps, model_config.timesteps)
    # the process's first two samplers (the rules' order): ddpm and ddim, or euler and heun
    return {
        k: reverse_process(model, model_config, sampler=k, steps=steps, **common)
        for k in samplers_for(model_config.process)[:2]
    }


def speedup(table, fast: str, slow: str) -> float | None:
    """How many times faster per sample row ``fast`` (e.g. ``"ddim-50"``) is than row ``slow``
    (e.g. ``"ddpm-250"``) in a :func:`sampler_table`; None when either row is missing."""
    rows = table.set_index("label")["seconds_per_sample"]
    if fast not in rows.index or slow not in rows.index or rows[fast] <= 0:
        return None
    return float(rows[slow] / rows[fast])


#: Where ``benchmarks/ddim_background.py`` writes its rows (relative to the project root).
DDIM_BACKGROUND_FILE = "benchmarks/results/ddim_background.json"


def ddim_background():
    """The rows of ``benchmarks/ddim_background.py`` (background mean and FID per DDIM variant)
    as a DataFrame with ``attrs`` (cpu, command, n), or None when the file is absent."""
    import json

    import pandas as pd

    from ..config import project_root

    path = project_root() / DDIM_BACKGROUND_FILE
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    table = pd.DataFrame(found["rows"]).set_index("variant")
    table.attrs.update({k: found.get(k) for k in ("cpu", "command", "n")})
    return table


def background_mean(images: np.ndarray, real: np.ndarray, level: float = 0.02) -> float:
    """Mean intensity of ``images`` (in [0, 1]) over the background: the pixels where the mean
    ``real`` image is under ``level`` (real data: about 0; a grey veil shows as more)."""
    mask = np.asarray(real, dtype=np.float32).mean(0) < level
    return float(np.asarray(images, dtype=np.float32)[:, mask].mean())


def ddim_background_reading(table) -> str:
    """Chapter 4's reading of :func:`ddim_background` (Markdown, numbers from the table)."""
    b = table["background_mean"]
    d50, d250 = b["ddim-50, clip x0 only"], b["ddim-250, clip x0 only"]
    alike = abs(d50 - d250) <= 0.25 * max(d50, d250)
    steps_say = (
        "alike: the grey veil belongs to deterministic DDIM with this epsilon-prediction model "
        "at any number of steps, not to 250 steps (the earlier ranking was the noise of 8 samples)"
        if alike
        else "different: the number of steps matters here"
    )
    return (
        f"On {table.attrs['cpu']}, {table.attrs['n']} samples per variant: real backgrounds "
        f"average {b['real test images']:.3f}, DDPM-250 {b['ddpm-250']:.3f}, DDIM-50 "
        f"{d50:.3f} and DDIM-250 {d250:.3f} — {steps_say}. Without clipping the background "
        f"is {b['ddim-250, no clipping']:.3f}: the clean-image estimate divides by the square "
        "root of alpha-bar_t, nearly zero at the noisy end of the cosine schedule, so a small "
        "error in the predicted noise becomes a large one in the image; clipping to [-1, 1] "
        "hides most of it and the rest stays as haze. Re-deriving the noise from the clipped "
        f"estimate gives {b['ddim-250, re-derived eps']:.3f}. DDPM's fresh noise at every "
        "step washes part of it out. A rectified-flow model has no such division (its "
        "estimate is $x_t + (t/T)\\,v$)."
    )
