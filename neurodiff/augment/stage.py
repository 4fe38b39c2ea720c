"""Stage 6 itself: pools, the healthy-pretrained generator, every draw, then the tables.

The order of the work is the order of a resumable run: pools loaded and checked (before any fit),
the pretrained generator, C_pool's generator, the ceiling, then the draws interleaved across
``n`` (draw 0 of every n, then draw 1 ...) so that a run stopped early -- by ``budget_seconds``
or by a kill -- has used its time evenly. Each finished unit is kept in ``work/``; the next run
of the same parameters continues from there. The tables are written once every draw is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import AugmentConfig, Params
from ..errors import DataError
from ..io import shown_path
from ..registry import AUGMENT
from ..runs import record_run
from .arms import arms_of
from .experiment import eval_sets, load_scores, plan_draw, run_ceiling, run_draw
from .generators import generator_config, pool_generator, pretrained
from .pools import POOL_NAMES, Pools, cannot_run, experiment_params, load_pools
from .summary import primary_statement, summarise_draws

__all__ = ["AugmentResult", "load", "run", "schedule", "summarise"]

log = logging.getLogger(__name__)


@dataclass
class AugmentResult:
    """What :func:`run` produced, or :func:`load` found."""

    tables: dict[str, pd.DataFrame]
    info: dict[str, Any]
    out_dir: Path
    cached: bool = False
    seconds: float = 0.0

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    @property
    def primary(self) -> dict[str, Any]:
        return self.info["primary"]

    def __str__(self) -> str:
        p = self.primary
        return "\n".join(
            [
                f"augmentation experiment: {self.info['n_test_subjects']} test subjects, draws "
                f"{self.info['draws']} per n, arms {', '.join(self.info['arms'])}"
                + (" (found)" if self.cached else f" in {self.seconds:.1f} s"),
                f"  primary endpoint: {p['gain']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]"
                f" (half-width {p['half_width']:.3f}, {p['draws']} draws)",
                f"outputs in {shown_path(self.out_dir)}",
            ]
        )


def load(params: Params | str | Path) -> AugmentResult | None:
    """The finished experiment of ``params`` (or of a run folder), read back without computing
    anything; None when it has not run (or did not finish, or cannot run: :func:`cannot_run`)."""
    if isinstance(params, Params):
        if cannot_run(params) is not None:
            return None
        params = experiment_params(params)
    files = artifacts.load_augment(params)
    if files is None:
        return None
    return AugmentResult(files.tables, files.info, files.out_dir, cached=True)


def schedule(acfg: AugmentConfig) -> list[tuple[int, int]]:
    """``(n, draw)`` in the order they run: draw 0 of every n, then draw 1, ..."""
    top = max(acfg.draws_of(n) for n in acfg.augment_n)
    return [(n, d) for d in range(top) for n in acfg.augment_n if d < acfg.draws_of(n)]


def _finished(params: Params, acfg: AugmentConfig) -> dict[int, list[dict]]:
    """The records of the draws finished so far, per n."""
    out: dict[int, list[dict]] = {n: [] for n in acfg.augment_n}
    for n, d in schedule(acfg):
        rec = artifacts.load_work_record(params, f"n{n}-d{d}")
        if rec is not None:
            out[n].append(rec)
    return out


def summarise(
    params: Params, pools: Pools | None = None, evals: dict | None = None
) -> dict[str, Any]:
    """The tables and ``augment.json`` of the draws finished so far (at least two per n): what
    :func:`run` writes at the end, and what a benchmark reports between sittings."""
    params = experiment_params(params)
    acfg: AugmentConfig = params.stage(AugmentConfig)
    pools = pools if pools is not None else load_pools(params)
    marker = artifacts.load_work_record(params, "source")
    if marker is not None and marker.get("fingerprint") != pools.fingerprint:
        raise DataError(
            f"the draws in {artifacts.augment_work_dir(params)} were made from other pools than "
            f"{params['pools_cohort']!r} holds now: run the experiment again"
        )
    records = _finished(params, acfg)
    counts = {n: len(r) for n, r in records.items()}
    if min(counts.values()) < 2 or artifacts.load_work_record(params, "ceiling") is None:
        raise DataError(
            f"too few finished draws to summarise (per n: {counts}; at least 2 each, and the "
            "ceiling): run the experiment further"
        )
    draws = {n: [load_scores(params, r["name"]) for r in recs] for n, recs in records.items()}
    evals = evals if evals is not None else eval_sets(pools)
    pool_size = min(len(pools["train"].subjects(k)) for k in (0, 1))
    out = summarise_draws(draws, load_scores(params, "ceiling"), evals, acfg, pool_size)
    out["pools"] = pools.summary()
    out["memorisation"] = pd.DataFrame(
        [
            {
                "n": r["n"],
                "draw": r["draw"],
                **r["memorisation"],
                **{f"{k} s": v for k, v in r["seconds"].items()},
            }
            for recs in records.values()
            for r in recs
        ]
    )
    out["info"] = _info(params, acfg, pools, records, out, evals)
    return out


def run(
    params: Params, force: bool = False, budget_seconds: float | None = None
) -> AugmentResult | None:
    """Stage 6: the whole experiment for ``params``, kept in its run folder and reused when the
    same parameters ran before (unless ``force``); the number of draws is not part of the key,
    so a run asked for more draws computes only the new ones and then its tables again. With
    ``budget_seconds``, stops starting new draws after that long and returns None when draws
    remain (run again to continue). A pools cohort the experiment cannot use (a healthy-only
    one: :func:`cannot_run`) is refused with the reason before anything is computed."""
    params = experiment_params(params)  # the pools' groups: the key says what the generators are
    acfg: AugmentConfig = params.stage(AugmentConfig)
    found = None if force else load(params)
    planned = {str(n): acfg.draws_of(n) for n in acfg.augment_n}
    if found is not None and found.info["draws"] == planned:
        return found
    t0 = time.perf_counter()
    pools = load_pools(params)  # every pool checked before any fit
    artifacts.check_work_source(params, pools.fingerprint)
    log.info(
        "augmentation experiment: pools %s; n = %s per class, draws %s",
        {p: len(pools[p].subjects()) for p in POOL_NAMES},
        list(acfg.augment_n),
        [acfg.draws_of(n) for n in acfg.augment_n],
    )
    init = pretrained(params, pools)
    pool_samples = pool_generator(params, pools, init)
    evals = eval_sets(pools)
    run_ceiling(params, pools, evals)
    k_max = max(acfg.augment_real_k)
    for n, d in schedule(acfg):
        plan = plan_draw(pools, n, d, acfg.seed, k_max)
        spent = budget_seconds is not None and time.perf_counter() - t0 > budget_seconds
        if spent and artifacts.load_work_record(params, plan.name) is None:
            log.info("time budget spent: stopping before draw %s (run again to go on)", plan.name)
            return None
        run_draw(params, pools, plan, init, pool_samples, evals)
    out = summarise(params, pools, evals)  # the pools' features, prepared once
    seconds = time.perf_counter() - t0
    info = {**out.pop("info"), "seconds": round(seconds, 1)}
    out.pop("primary")
    artifacts.write_augment(params, info, out)
    record_run(params, AUGMENT)  # run.json follows, once the folder is complete
    found = load(params)
    if found is None:  # cannot happen: written and recorded just above
        raise DataError(f"the augmentation outputs in {artifacts.augment_dir(params)} vanished")
    found.cached, found.seconds = False, seconds
    return found


def _info(params, acfg: AugmentConfig, pools: Pools, records, out, evals) -> dict[str, Any]:
    """``augment.json``: what ran, on which subjects, the primary endpoint and every draw."""
    m_max = max(acfg.augment_synthetic)
    return {
        "format": AUGMENT.format,
        "params_hash": params.hash(),
        "groups": list(pools.groups),
        "arms": [a.name for a in arms_of(acfg)],
        "arm_descriptions": {a.name: a.describe(m_max) for a in arms_of(acfg)},
        "n": list(acfg.augment_n),
        "draws": {str(n): len(r) for n, r in records.items()},
        "primary_n": acfg.primary_n,
        "primary_statement": primary_statement(acfg),
        "primary": out["primary"],
        "synthetic_per_class": list(acfg.augment_synthetic),
        "real_k": list(acfg.augment_real_k),
        "slices_per_subject": pools.slices_per_subject,
        "n_test_subjects": len(evals["test"].order),
        "pool_subjects": {p: pools[p].subjects() for p in POOL_NAMES},
        "pool_sizes": {
            p: {g: len(pools[p].subjects(k)) for k, g in enumerate(pools.groups)}
            for p in POOL_NAMES
        },
        "generator": {
            "channels": list(generator_config(params).channels),
            "pretrain_steps": acfg.pretrain_steps,
            "finetune_steps": acfg.finetune_steps,
            "pool_finetune_steps": acfg.pool_finetune_steps,
            "finetune_lr": acfg.finetune_lr,
        },
        "draw_records": [r for recs in records.values() for r in recs],
        "memorised_fraction": float(
            np.mean(
                [r["memorisation"]["flagged_fraction"] for recs in records.values() for r in recs]
            )
        ),
        "bootstrap": acfg.augment_bootstrap,
        "pools_fingerprint": pools.fingerprint,
    }
