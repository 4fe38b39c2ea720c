"""The pools of chapter 6's experiment, simulated: every subject in exactly one pool.

``make_pools_cohort`` writes one BIDS cohort whose ``participants.tsv`` has a ``pool`` column:

* ``pretrain`` -- a healthy multi-site cohort (controls only, ages 20-86, sites A-C): the
  generator is pretrained on it, as the paper's generator was trained on healthy subjects;
* ``train`` -- the training pool (patients and controls, sites A-C): the draws are taken from it;
* ``validation`` -- tunes the classifiers' hyper-parameters, once;
* ``test`` -- the large test set every arm is judged on;
* ``ood`` -- test subjects of a site whose protocol no other pool contains (site D, a variation
  of the reference sites, :func:`~neurodiff.demo_data.site_protocols`).

Controls of the train, validation, test and ood pools are **age-matched** to the patients: their
ages are drawn from the patients' distribution (mean 62, SD 8, 45-80 years), so that age, which
thins grey matter in every subject, cannot tell the groups apart. Every pool is stratified by
site (an equal share of each site per class, up to rounding). The subjects come from random
streams of their own, so none of them is a subject of the demo cohort or its new subjects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .anatomy import _Subject
from .cohort import _check_arguments, _description, _n_workers, write_cohort
from .protocols import GENERATOR_NAME, site_protocols

__all__ = ["POOLS", "make_pools_cohort"]

#: The pools, in the order of ``--pools`` (sizes per class; ``pretrain``: controls only).
POOLS: tuple[str, ...] = ("pretrain", "train", "validation", "test", "ood")

#: Random streams of the pools' subjects (the demo cohort uses 0-7).
_STREAM = 8
#: The in-distribution sites (A, B, C) and the out-of-distribution one (D).
_SITES_IN, _SITE_OOD = (0, 1, 2), 3


def _ages(rng: np.random.Generator, n: int, healthy_cohort: bool) -> np.ndarray:
    if healthy_cohort:
        return rng.integers(20, 87, n)
    return np.clip(np.rint(rng.normal(62.0, 8.0, n)), 45, 80).astype(int)


def _draw_pool_subjects(sizes: dict[str, int], seed: int) -> tuple[list[_Subject], list[str]]:
    people: list[_Subject] = []
    pools: list[str] = []
    width = max(4, len(str(sum(sizes.values()) * 2)))
    for p_index, pool in enumerate(POOLS):
        groups = ("control",) if pool == "pretrain" else ("control", "patient")
        sites = (_SITE_OOD,) if pool == "ood" else _SITES_IN
        for g_index, group in enumerate(groups):
            n = sizes[pool]
            rng = np.random.default_rng([seed, _STREAM, p_index, g_index])
            site_of = rng.permutation(np.asarray(sites)[np.arange(n) % len(sites)])
            ages = _ages(rng, n, pool == "pretrain")
            male = rng.uniform(size=n) < (0.6 if group == "patient" else 0.5)
            for i in range(n):
                people.append(
                    _Subject(
                        f"sub-p{len(people) + 1:0{width}d}",
                        int(site_of[i]),
                        int(ages[i]),
                        "M" if male[i] else "F",
                        group,
                        (seed, _STREAM + 1 + p_index * 2 + g_index, i),
                    )
                )
                pools.append(pool)
    return people, pools


def make_pools_cohort(
    out: str | Path,
    sizes: dict[str, int] | tuple[int, ...],
    seed: int = 0,
    *,
    resolution: int = 1,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the pools of chapter 6 as one simulated BIDS cohort with a ``pool`` column.

    Parameters
    ----------
    out : str or Path
        Output folder (replaced atomically, like :func:`~neurodiff.demo_data.make_demo_cohort`).
    sizes : dict or tuple
        Subjects per class of each pool of :data:`POOLS` (``pretrain``: healthy controls only),
        e.g. ``(24, 12, 6, 24, 6)``. Every pool needs at least one subject per class.
    seed : int
        Same seed, same bytes.
    resolution : {1, 2}
        Template resolution in mm (2: eight times fewer voxels, for tests).
    """
    if not isinstance(sizes, dict):
        sizes = dict(zip(POOLS, sizes, strict=False))
    missing = [p for p in POOLS if p not in sizes]
    bad = {p: v for p, v in sizes.items() if p not in POOLS or not isinstance(v, int) or v < 1}
    if missing or bad or len(sizes) != len(POOLS):
        raise ConfigError(
            f"pools: expected a positive size for each of {list(POOLS)}; got {sizes}",
            parameter="pools",
        )
    total = sizes["pretrain"] + 2 * sum(sizes[p] for p in POOLS[1:])
    protocols = site_protocols(_SITE_OOD + 1)
    _check_arguments(out, total, len(protocols), seed, 0, resolution)
    out = Path(out)
    people, pools = _draw_pool_subjects(sizes, int(seed))
    patients = sum(sizes[p] for p in POOLS[1:])
    desc = _description(total - patients, protocols, int(seed), patients, resolution)
    desc["SimulationParameters"].update(
        pools=dict(sizes),
        pool_sites={
            p: [protocols[s].name for s in ((_SITE_OOD,) if p == "ood" else _SITES_IN)]
            for p in POOLS
        },
        controls_age_matched="controls of train, validation, test and ood drawn from the "
        "patients' age distribution",
    )
    command = f"{GENERATOR_NAME} --pools {','.join(str(sizes[p]) for p in POOLS)} --seed {seed}"
    workers = _n_workers(workers, len(people))
    extra = {"pool": pools}
    write_cohort(out, people, protocols, desc, command, resolution, workers, progress, extra)
    return out
