"""Running the per-scan pipeline over a cohort, in worker processes when there are cores."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
from typing import Any

import numpy as np

from ..config import PreprocessConfig
from ..errors import NeurodiffError
from .pipeline import (
    REG_SPACING,
    ScanResult,
    _template_final,
    _template_static,
    preprocess_scan,
)

__all__ = ["default_workers", "map_scans"]


def _init_worker() -> None:
    """One torch thread per worker process: the processes, not the threads, use the cores."""
    import torch

    torch.set_num_threads(1)


def _work(args: tuple[str, str, dict[str, Any], str]) -> ScanResult | tuple[str, str]:
    """One scan in a worker: its result without the volume, or ``(subject, error message)``."""
    path, subject, cfg_dict, out = args
    try:
        res = preprocess_scan(path, PreprocessConfig(**cfg_dict), subject, out)
    except NeurodiffError as exc:  # reported by the parent, naming the subject
        return subject, str(exc)
    # the volume is on disk; the parent reads it back when it assembles the arrays, so memory
    # stays at one volume per process however large the cohort
    return dataclasses.replace(res, volume=np.zeros(0, np.float32))


def default_workers(n: int) -> int:
    """Worker processes for ``n`` scans: the available CPUs, at most 8 and at most ``n``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n, 8))


def _warm_up(cfg: PreprocessConfig) -> None:
    """Import the libraries and build the template grids once, before workers fork from us."""
    import dipy.align.imaffine  # noqa: F401
    import monai.transforms  # noqa: F401

    if cfg.register != "none":
        _template_static(REG_SPACING)
    _template_final(cfg.register, cfg.target_spacing, cfg.fov_voxels, cfg.image_size)


def map_scans(jobs: list[tuple], workers: int, cfg: PreprocessConfig):
    """Yield per-scan results in completion order, in worker processes when workers > 1."""
    from tqdm.auto import tqdm

    _warm_up(cfg)
    bar = tqdm(total=len(jobs), desc="preprocess", unit="scan", file=sys.stderr)
    if workers <= 1:
        for job in jobs:
            yield _work(job)
            bar.update()
    else:
        # fork (Linux) shares the already imported MONAI/dipy with the workers; elsewhere spawn.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
        )
        try:
            for fut in concurrent.futures.as_completed([pool.submit(_work, j) for j in jobs]):
                yield fut.result()
                bar.update()
        finally:  # on an error or interrupt, drop the scans not started yet
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()
