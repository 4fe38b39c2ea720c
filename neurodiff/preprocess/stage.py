"""Stage 2 itself: the cached build of the preprocessed dataset (:func:`run`) and its pieces."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..artifacts import (
    PREPROCESSED_FORMAT,
    load_split,
    preprocessed_dir,
    write_manifest,
    write_split_arrays,
    write_tables,
)
from ..cohort import load_cohort
from ..config import DEMO_COHORT, ConfigError, ModelConfig, Params, PreprocessConfig
from ..errors import CohortError, DataError
from ..io import atomic_dir, file_sha256, shown_path
from ..registry import PREPROCESS
from ..runs import read_run, record_run
from ..templates import target_affine
from .cache import cache_key, cached_manifest, file_stat, source_files
from .pipeline import (
    HIST_SAMPLES,
    REG_FACTORS,
    REG_LEVEL_ITERS,
    REG_SIGMAS,
    REG_SPACING,
    STEPS,
    ScanResult,
)
from .split import qc_table, split_subjects
from .strip import strip_settings
from .workers import default_workers, map_scans

if TYPE_CHECKING:  # pragma: no cover
    from monai.data import CacheDataset

__all__ = ["PreprocessResult", "check_params", "run", "training_dataset"]

log = logging.getLogger(__name__)


@dataclass
class PreprocessResult:
    """What :func:`run` built (or found in the cache)."""

    out_dir: Path
    cached: bool
    spatial_dims: int
    shape: tuple[int, ...]
    n_subjects: int
    n_train_subjects: int
    n_test_subjects: int
    n_train: int
    n_test: int
    excluded: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    seconds: float = 0.0
    build_seconds: float = 0.0
    params_hash: str = ""

    def __str__(self) -> str:
        how = (
            f"reused the cache (built in {self.build_seconds:.1f} s)"
            if self.cached
            else f"built in {self.seconds:.1f} s"
        )
        kind = "slices" if self.spatial_dims == 2 else "volumes"
        lines = [
            f"preprocessed {self.n_subjects} subjects -> {shown_path(self.out_dir)} ({how})",
            f"  train: {self.n_train_subjects} subjects, {self.n_train} {kind} of shape "
            f"{self.shape}",
            f"  test:  {self.n_test_subjects} subjects, {self.n_test} {kind}",
            f"  QC flagged {len(self.flagged)}"
            + (f": {', '.join(self.flagged)}" if self.flagged else ""),
            f"  excluded {len(self.excluded)}"
            + (f": {', '.join(self.excluded)}" if self.excluded else ""),
            f"  parameters hash {self.params_hash}",
        ]
        return "\n".join(lines)


def check_params(params: Params) -> PreprocessConfig:
    """Every check that needs no data, so mistakes surface before any work starts."""
    cfg: PreprocessConfig = params.stage(PreprocessConfig)
    params.stage(ModelConfig)  # validated: image_size vs the UNet's downsampling factor
    root = params.path(cfg.cohort)
    if not root.is_dir():
        raise ConfigError(
            f"parameter 'cohort' must be a folder of scans; {str(root)!r} "
            + ("is not a folder" if root.exists() else "does not exist")
            + f" (`neurodiff demo-data --out {DEMO_COHORT}` writes the demo cohort)",
            parameter="cohort",
            path=root,
        )
    if cfg.cohort_table and not params.path(cfg.cohort_table).is_file():
        raise ConfigError(
            f"parameter 'cohort_table': {cfg.cohort_table!r} is not a file",
            parameter="cohort_table",
            path=params.path(cfg.cohort_table),
        )
    return cfg


def _histograms(cohort: pd.DataFrame, results: dict[str, ScanResult]) -> dict[str, np.ndarray]:
    """Per subject, intensity samples of the same head voxels before and after normalisation."""
    subjects = sorted(results)
    return {
        "subject": np.array(subjects),
        "site": np.array([cohort.set_index("subject").loc[s, "site"] for s in subjects]),
        "before": _stack([results[s].before for s in subjects]),
        "after": _stack([results[s].after for s in subjects]),
    }


def _stack(samples: list[np.ndarray]) -> np.ndarray:
    """Ragged 1D samples -> ``(n, HIST_SAMPLES)`` float32 padded with NaN."""
    out = np.full((len(samples), HIST_SAMPLES), np.nan, dtype=np.float32)
    for i, s in enumerate(samples):
        out[i, : s.size] = s
    return out


def _result_from_manifest(
    out_dir: Path, manifest: dict, cached: bool, seconds: float
) -> PreprocessResult:
    """The :class:`PreprocessResult` a manifest describes."""
    n = manifest["n"]
    return PreprocessResult(
        out_dir=out_dir,
        cached=cached,
        spatial_dims=manifest["params"]["spatial_dims"],
        shape=tuple(manifest["shapes"]["train"][1:]),
        n_subjects=n["subjects"],
        n_train_subjects=n["train_subjects"],
        n_test_subjects=n["test_subjects"],
        n_train=n["train_images"],
        n_test=n["test_images"],
        excluded=list(manifest["qc"]["excluded"]),
        flagged=list(manifest["qc"]["flagged"]),
        seconds=seconds,
        build_seconds=manifest["timing"]["wall_seconds"],
        params_hash=manifest["params_hash"],
    )


def training_dataset(
    params_or_dir: Params | str | Path, split: str = "train", cache_rate: float = 1.0
) -> CacheDataset:
    """A MONAI ``CacheDataset`` of ``{"image": tensor (1, *spatial) float32 in [-1, 1]}``.

    Deterministic: the items come in the order of ``<split>_index.tsv``; shuffling is the
    ``DataLoader``'s job (give it a seeded ``torch.Generator``).
    """
    import torch
    from monai.data import CacheDataset
    from monai.transforms import EnsureTyped

    images, _index = load_split(params_or_dir, split)
    data = [{"image": images[i]} for i in range(len(images))]
    transform = EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False)
    return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, progress=False)


def run(params: Params, *, workers: int | None = None, force: bool = False) -> PreprocessResult:
    """Build (or reuse) the preprocessed dataset of ``params``.

    Parameters
    ----------
    params : Params
        The run's parameters (the :class:`~neurodiff.config.PreprocessConfig` fields matter).
    workers : int, optional
        Worker processes (default: the available CPUs, at most 8 and at most one per scan).
    force : bool
        Rebuild even when the cache is valid.

    Returns
    -------
    PreprocessResult
        Counts, shapes, QC exclusions, and whether the cache was reused.

    Raises
    ------
    ConfigError
        The cohort folder or table is missing. (Parameters that cannot work -- an unreachable
        ``image_size``, a slice range, ``mask_brain`` without registration, an ``image_size`` the
        UNet cannot halve -- are refused when ``params`` is built.)
    CohortError
        A scan cannot be read (see :func:`neurodiff.cohort.load_cohort`).
    DataError
        Too few subjects left for a split, or a registration failed with ``qc_exclude`` off.
    """
    start = time.perf_counter()
    cfg = check_params(params)
    root = params.path(cfg.cohort)
    out_dir = preprocessed_dir(params)
    key = cache_key(cfg)
    table_path = params.path(cfg.cohort_table) if cfg.cohort_table else None
    files = source_files(root, table_path)
    if not force:
        manifest = cached_manifest(out_dir, key, files)
        if manifest is not None:
            log.info("preprocessed data in %s are up to date (parameters hash %s)", out_dir, key)
            if not read_run(out_dir).complete:  # built before its record was written
                record_run(params, PREPROCESS)
            return _result_from_manifest(out_dir, manifest, True, time.perf_counter() - start)

    cohort = _read_cohort(root, table_path, cfg)
    sources = {rel: {**file_stat(p), "sha256": file_sha256(p)} for rel, p in files.items()}
    workers = default_workers(len(cohort)) if workers is None else max(1, int(workers))
    log.info(
        "preprocessing %d scans from %s with %d worker(s): register=%s, %dD at %d, spacing %g mm",
        len(cohort),
        root,
        workers,
        cfg.register,
        cfg.spatial_dims,
        cfg.image_size,
        cfg.target_spacing,
    )
    with atomic_dir(out_dir) as tmp:
        results = _preprocess_all(cohort, cfg, tmp, workers)
        qc, split = _qc_and_split(cohort, results, cfg, root)
        slices = cfg.slice_indices() if cfg.spatial_dims == 2 else [-1]
        arrays = write_split_arrays(tmp, split, slices, (cfg.image_size,) * cfg.spatial_dims)
        write_tables(
            tmp, split=split, qc=qc, cohort=cohort, histograms=_histograms(cohort, results)
        )
        wall = time.perf_counter() - start
        manifest = {
            "format": PREPROCESSED_FORMAT,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "params": cfg.to_dict(),
            "params_hash": key,
            "pipeline": _pipeline_record(),
            "target": _target_record(cfg, results),
            "downsampling": _downsampling_record(cfg, params.stage(ModelConfig)),
            "sources": sources,
            "cohort": {
                "path": str(root),
                "n_scans": len(cohort),
                "skipped": [[str(p), m] for p, m in cohort.attrs.get("skipped", [])],
            },
            **_counts_record(cohort, qc, split, arrays, cfg),
            "timing": _timing_record(results, wall, workers),
        }
        manifest["outputs"] = {
            p.relative_to(tmp).as_posix(): p.stat().st_size
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        write_manifest(tmp, manifest)  # last: marks the folder complete
    record_run(params, PREPROCESS)
    log.info("preprocessed data written to %s in %.1f s", out_dir, wall)
    return _result_from_manifest(out_dir, manifest, False, time.perf_counter() - start)


def _read_cohort(root: Path, table_path: Path | None, cfg: PreprocessConfig) -> pd.DataFrame:
    """The cohort table, sorted by subject, with string subject and site columns."""
    cohort = load_cohort(root, table=table_path, skip_bad=cfg.skip_bad)
    if len(cohort) == 0:
        raise DataError(f"no usable scans in {root}", path=root)
    cohort = cohort.sort_values("subject", kind="stable").reset_index(drop=True)
    cohort["subject"] = cohort["subject"].astype(str)
    cohort["site"] = cohort["site"].astype(str)
    return cohort


def _preprocess_all(
    cohort: pd.DataFrame, cfg: PreprocessConfig, folder: Path, workers: int
) -> dict[str, ScanResult]:
    """Every scan through the pipeline; one CohortError naming all scans that failed."""
    jobs = [(str(r.path), r.subject, cfg.to_dict(), str(folder)) for r in cohort.itertuples()]
    results: dict[str, ScanResult] = {}
    errors: list[tuple[str, str]] = []
    for res in map_scans(jobs, workers, cfg):
        if isinstance(res, ScanResult):
            results[res.subject] = res
        else:
            errors.append(res)
    if errors:
        problems = [(Path(cohort.set_index("subject").loc[s, "path"]), m) for s, m in errors]
        raise CohortError(
            f"{len(errors)} scan(s) could not be preprocessed: " + "; ".join(m for _s, m in errors),
            problems=problems,
        )
    return results


def _qc_and_split(
    cohort: pd.DataFrame, results: dict[str, ScanResult], cfg: PreprocessConfig, root: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The QC table and the split (excluded subjects listed as ``excluded``)."""
    qc = qc_table(cohort, results, cfg)
    failed = qc[qc["note"].str.contains("registration failed", regex=False)]
    if len(failed) and not cfg.qc_exclude:
        raise DataError(
            "registration failed for "
            + "; ".join(f"subject {r.subject} ({r.note})" for r in failed.itertuples())
            + ". Set qc_exclude=true to leave such subjects out.",
            path=root,
        )
    excluded = qc.loc[qc["excluded"], "subject"].tolist()
    flagged = qc.loc[qc["flagged"], "subject"].tolist()
    if flagged:
        log.warning(
            "QC flagged %d subject(s)%s: %s",
            len(flagged),
            " (excluded)" if cfg.qc_exclude else " (kept: qc_exclude is off)",
            "; ".join(f"{r.subject} ({r.note})" for r in qc[qc["flagged"]].itertuples()),
        )
    kept = cohort[~cohort["subject"].isin(excluded)]
    columns = ["subject", "site"] + (["group"] if "group" in kept.columns else [])
    split = split_subjects(kept[columns], cfg.test_fraction, cfg.seed)
    n_train = int((split["split"] == "train").sum())
    n_test = int((split["split"] == "test").sum())
    if n_train < 1 or n_test < 1:
        raise DataError(
            f"a train/test split needs at least 2 subjects; {len(kept)} left "
            f"of {len(cohort)} after QC (excluded: {excluded or 'none'}). "
            "Add scans, or check skull_strip, register and the qc_* parameters.",
            path=root,
        )
    if excluded:
        split = pd.concat(
            [
                split,
                cohort.loc[cohort["subject"].isin(excluded), columns].assign(split="excluded"),
            ]
        )
        split = split.sort_values("subject", kind="stable").reset_index(drop=True)
    return qc, split


# --------------------------------------------------------------------------------------------
# The manifest's records
# --------------------------------------------------------------------------------------------


def _pipeline_record() -> dict[str, Any]:
    return {
        "steps": list(STEPS),
        "registration": {
            "library": "dipy.align.imaffine",
            "template": "MNI152 2009 (nilearn, 2 mm)",
            "metric": "mutual information",
            "spacing_mm": REG_SPACING,
            "level_iters": REG_LEVEL_ITERS,
            "sigmas": REG_SIGMAS,
            "factors": REG_FACTORS,
        },
        "skull_strip": {
            "library": "deepbet",
            "settings": dict(
                zip(("grid", "head_outside", "head_margin_mm", "version"), strip_settings())
            ),
        },
        "qc": "NCC with the template put through the same steps inside its brain mask, at "
        "image_size, against qc_threshold and the cohort's median (robust z); Dice of the "
        "scan's brain mask with the template's against qc_min_overlap",
    }


def _target_record(cfg: PreprocessConfig, results: dict[str, ScanResult]) -> dict[str, Any]:
    fov = cfg.fov_voxels
    registered = cfg.register != "none"
    return {
        "space": "MNI152 2009 (rigid)"
        if cfg.register == "rigid"
        else "MNI152 2009 (affine)"
        if cfg.register == "affine"
        else "scanner (RAS, head centred; affine per volume)",
        "spacing_mm": cfg.target_spacing,
        "fov_mm": cfg.fov_mm,
        "fov_voxels": fov,
        "fov_affine": target_affine(cfg.target_spacing, fov).tolist() if registered else None,
        "volume_shape": [cfg.image_size] * 3,
        "volume_spacing_mm": cfg.target_spacing * fov / cfg.image_size,
        "volume_affine": (next(iter(results.values())).affine.tolist() if registered else None),
        "slices": cfg.slice_indices() if cfg.spatial_dims == 2 else None,
    }


def _downsampling_record(cfg: PreprocessConfig, model: ModelConfig) -> dict[str, Any]:
    fov = cfg.fov_voxels
    return {
        "fov_voxels": fov,
        "image_size": cfg.image_size,
        "resize_factor": fov / cfg.image_size,
        "upsampling": False,
        "unet_downsample_factor": model.downsample_factor,
        "divisible": cfg.image_size % model.downsample_factor == 0,
    }


def _counts_record(
    cohort: pd.DataFrame,
    qc: pd.DataFrame,
    split: pd.DataFrame,
    arrays: dict[str, dict],
    cfg: PreprocessConfig,
) -> dict[str, Any]:
    """The manifest's ``n``, ``shapes``, ``ranges`` and ``qc`` records."""
    excluded = qc.loc[qc["excluded"], "subject"].tolist()
    return {
        "n": {
            "subjects": len(cohort),
            "train_subjects": int((split["split"] == "train").sum()),
            "test_subjects": int((split["split"] == "test").sum()),
            "train_images": arrays["train"]["shape"][0],
            "test_images": arrays["test"]["shape"][0],
            "excluded": len(excluded),
        },
        "shapes": {k: v["shape"] for k, v in arrays.items()},
        "ranges": {k: v["range"] for k, v in arrays.items()},
        "qc": {
            "threshold": cfg.qc_threshold,
            "exclude": cfg.qc_exclude,
            "flagged": qc.loc[qc["flagged"], "subject"].tolist(),
            "excluded": excluded,
            "notes": {r.subject: r.note for r in qc.itertuples() if r.note},
        },
    }


def _timing_record(results: dict[str, ScanResult], wall: float, workers: int) -> dict[str, Any]:
    step_total = {s: float(sum(r.timings[s] for r in results.values())) for s in STEPS}
    return {
        "wall_seconds": wall,
        "workers": workers,
        "step_seconds": step_total,
        "seconds_per_subject": {s: t / len(results) for s, t in step_total.items()},
    }
