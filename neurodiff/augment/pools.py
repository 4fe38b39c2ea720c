"""The experiment's pools of real subjects, loaded and checked before any fit.

The pools cohort (``pools_cohort``; simulated by ``neurodiff demo-data --pools``, or a user's own
cohort with ``group`` and ``pool`` columns) is preprocessed exactly like the cohort
(:meth:`~neurodiff.config.Params.for_cohort`). Its ``pool`` column puts every subject in exactly
one pool (:data:`POOL_NAMES`): ``pretrain`` (healthy controls the generator is pretrained on),
``train`` (the draws are taken from it), ``validation`` (tunes the classifiers), ``test`` (judges
every arm) and ``ood`` (a site no other pool contains). :func:`check_pools` refuses overlapping
pools, a pool of the wrong groups or one too small for the parameters. The experiment compares
two groups: :func:`cannot_run` says why a pools cohort without them (a healthy-only one) cannot
be used, before anything is computed, and the generators are conditioned on the pools cohort's
groups (:func:`experiment_params`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..artifacts import load_preprocessed_cohort, load_split
from ..cohort import read_groups
from ..config import AugmentConfig, ModelConfig, Params
from ..errors import ConfigError, DataError

__all__ = [
    "POOL_NAMES",
    "Pool",
    "Pools",
    "cannot_run",
    "check_pools",
    "experiment_params",
    "load_pools",
    "pools_params",
]

#: The pools, in order (the values of the cohort's ``pool`` column).
POOL_NAMES: tuple[str, ...] = ("pretrain", "train", "validation", "test", "ood")


@dataclass
class Pool:
    """The images of one pool in the model range [-1, 1]: label (0 = first group), subject and
    slice level of each."""

    images: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    level: np.ndarray

    def of(self, subjects: list[str] | np.ndarray) -> np.ndarray:
        """Row indices of the images of ``subjects``."""
        return np.flatnonzero(np.isin(self.subject, np.asarray(subjects)))

    def subjects(self, label: int | None = None) -> list[str]:
        """Sorted subjects (of one class)."""
        keep = np.ones(len(self.y), bool) if label is None else self.y == label
        return sorted(set(self.subject[keep].tolist()))

    def subject_labels(self, order: list[str]) -> np.ndarray:
        """The class of each subject of ``order``."""
        label = dict(zip(self.subject.tolist(), self.y.tolist(), strict=True))
        return np.array([label[s] for s in order], dtype=np.int64)


@dataclass
class Pools:
    """Every pool, the groups and the cohort table (``subject, site, age, sex, group, pool``)."""

    groups: tuple[str, str]
    parts: dict[str, Pool]
    table: pd.DataFrame

    def __getitem__(self, name: str) -> Pool:
        return self.parts[name]

    @property
    def fingerprint(self) -> str:
        """A hash of the pools' table and images: work made from other pools is not reused."""
        import hashlib

        h = hashlib.sha256(self.table.to_csv(index=False).encode())
        for name in POOL_NAMES:
            p = self.parts[name]
            h.update(name.encode())
            h.update(np.ascontiguousarray(p.images).tobytes())
            h.update("|".join(p.subject.tolist()).encode())
        return h.hexdigest()[:16]

    @property
    def slices_per_subject(self) -> float:
        train = self.parts["train"]
        return len(train.y) / max(len(set(train.subject.tolist())), 1)

    def summary(self) -> pd.DataFrame:
        """Subjects, sites and ages per pool and group (the table chapter 6 shows first)."""
        t = self.table
        rows = []
        for (pool, group), g in t.groupby(["pool", "group"], sort=False):
            rows.append(
                {
                    "pool": pool,
                    "group": group,
                    "subjects": len(g),
                    "sites": ", ".join(
                        f"{s} {n}" for s, n in sorted(g["site"].value_counts().items())
                    ),
                    "age mean": round(float(g["age"].mean()), 1) if "age" in g else np.nan,
                    "age sd": round(float(g["age"].std(ddof=1)), 1) if len(g) > 1 else np.nan,
                }
            )
        out = pd.DataFrame(rows)
        order = {p: i for i, p in enumerate(POOL_NAMES)}
        return out.sort_values("pool", key=lambda s: s.map(order), kind="stable").reset_index(
            drop=True
        )


def pools_params(params: Params) -> Params:
    """The parameters that preprocess the pools cohort exactly like the cohort."""
    other = params.for_cohort("pools_cohort")
    if other is None:
        raise ConfigError(
            "chapter 6 needs a pools cohort (parameter 'pools_cohort'): a cohort with 'group' "
            "and 'pool' columns, e.g. `neurodiff demo-data --pools 12,6,4,12,4`",
            parameter="pools_cohort",
        )
    return other


def cannot_run(params: Params) -> str | None:
    """Why the experiment cannot run on the pools cohort of ``params``, in a sentence; None when
    it can, or when the pools folder is not there yet (the simulated one is written on demand,
    another is refused by :func:`neurodiff.notebook.prepare`). It compares two groups, so a
    healthy-only pools cohort (no ``group`` column, or one group) cannot. Reads the pools'
    table only and raises nothing: chapter 6 shows the reason instead of its live run, and
    ``neurodiff run`` says it before any notebook starts."""
    if not params["pools_cohort"]:
        return "there is no pools cohort (parameter 'pools_cohort' is empty)"
    try:
        other = pools_params(params)
        other.check_groups()  # groups set by a profile or an override must fit the pools
    except ConfigError as exc:
        return f"the pools cohort {params['pools_cohort']!r} does not fit: {exc}"
    given = "groups" not in other.from_cohort
    if given and len(other.groups) != 2:
        return (
            "chapter 6 needs a generator conditioned on two groups (control, patient); "
            f"parameter 'groups' is {list(other.groups)}. Run it with -p "
            "groups='[control, patient]' on a cohort with a 'group' column"
        )
    root = other.path(other["cohort"])
    if not root.is_dir() or len(other.groups) == 2:
        return None
    found = read_groups(root, other.path(other["cohort_table"]) if other["cohort_table"] else None)
    has = f"only the group {found.groups[0]!r}" if found.groups else "no 'group' column"
    return (
        f"the pools cohort {params['pools_cohort']!r} has {has} ({found.where}): the experiment "
        "compares two groups, healthy controls and patients, and a healthy-only cohort has "
        "one. Give it a pools cohort with 'group' and 'pool' columns (-p pools_cohort=FOLDER; "
        "`neurodiff demo-data --pools` simulates one)"
    )


def experiment_params(params: Params) -> Params:
    """``params`` with the groups of the pools cohort, which the experiment's generators are
    conditioned on (they are trained on the pools, not on the cohort); ``params`` itself when
    they are the cohort's (the demo cohorts), so that the key of the run says what ran.

    Raises :class:`~neurodiff.errors.ConfigError` with :func:`cannot_run`'s reason."""
    reason = cannot_run(params)
    if reason is not None:
        raise ConfigError(reason, parameter="pools_cohort")
    groups = pools_params(params).groups
    if tuple(groups) == tuple(params["groups"]):
        return params
    source = "the groups of parameter 'pools_cohort'"
    return Params({**params.to_dict(), "groups": list(groups)}, source=source)


def _groups(params: Params) -> tuple[str, str]:
    mcfg: ModelConfig = params.stage(ModelConfig)
    if len(mcfg.groups) != 2:  # cannot happen after experiment_params
        raise ConfigError(
            f"chapter 6 needs two groups; parameter 'groups' is {list(mcfg.groups)}",
            parameter="groups",
        )
    return mcfg.groups[0], mcfg.groups[1]


def load_pools(params: Params) -> Pools:
    """Every pool's images (both preprocessing splits of the pools cohort, regrouped by its
    ``pool`` column), checked by :func:`check_pools`; the groups are the pools cohort's
    (:func:`experiment_params`)."""
    params = experiment_params(params)
    groups = _groups(params)
    other = pools_params(params)
    table = load_preprocessed_cohort(other).rename(columns={"participant_id": "subject"})
    where = f"the pools cohort {other['cohort']!r}"
    for col in ("group", "pool"):
        if col not in table.columns:
            raise DataError(
                f"{where} has no {col!r} column: chapter 6 needs each subject's group and pool "
                f"({list(POOL_NAMES)}); `neurodiff demo-data --pools` writes such a cohort"
            )
    table = table[["subject", "site", "age", "sex", "group", "pool"]].copy()
    table["subject"] = table["subject"].astype(str)
    images, index = [], []
    for split in ("train", "test"):
        im, idx = load_split(other, split)
        images.append(np.asarray(im, dtype=np.float32))
        index.append(idx)
    x, idx = np.concatenate(images), pd.concat(index, ignore_index=True)
    pool_of = dict(zip(table["subject"], table["pool"].astype(str), strict=True))
    image_pool = idx["subject"].map(pool_of).to_numpy()
    orphans = sorted(set(idx["subject"][pd.isna(image_pool)]))
    if orphans:
        raise DataError(f"{where}: subjects {orphans[:3]} have images but no row in its table")
    table = table[table["subject"].isin(set(idx["subject"]))].reset_index(drop=True)  # QC-kept
    parts = {}
    for name in POOL_NAMES:
        keep = image_pool == name
        group = idx["group"].astype(str).to_numpy()[keep]
        unknown = sorted(set(group) - set(groups))
        if unknown:
            raise DataError(f"{where}: pool {name!r} has groups {unknown}; expected {list(groups)}")
        parts[name] = Pool(
            x[keep],
            (group == groups[1]).astype(np.int64),
            idx["subject"].astype(str).to_numpy()[keep],
            idx["slice"].to_numpy()[keep],
        )
    pools = Pools(groups, parts, table)
    check_pools(pools, params.stage(AugmentConfig))
    return pools


def check_pools(pools: Pools, acfg: AugmentConfig) -> None:
    """Every subject in one pool only; the pretraining pool healthy; every other pool with both
    classes; the training pool large enough for the largest draw plus its new subjects."""
    seen: dict[str, str] = {}
    for name in POOL_NAMES:
        for s in pools[name].subjects():
            if s in seen:
                raise DataError(
                    f"subject {s} is in both the {seen[s]} and the {name} pool; the experiment "
                    "needs disjoint pools"
                )
            seen[s] = name
    unknown = sorted(set(pools.table["pool"].astype(str)) - set(POOL_NAMES))
    if unknown:
        raise DataError(
            f"the pools cohort has unknown pools {unknown}; expected {list(POOL_NAMES)}"
        )
    if pools["pretrain"].subjects(1):
        raise DataError(
            f"the pretraining pool holds {pools.groups[1]} subjects "
            f"{pools['pretrain'].subjects(1)[:3]}: it must be healthy ({pools.groups[0]}) only"
        )
    if not pools["pretrain"].subjects(0):
        raise DataError("the pretraining pool is empty")
    t = pools.table
    ood_sites = set(t.loc[t["pool"] == "ood", "site"])
    shared_sites = ood_sites & set(t.loc[t["pool"] != "ood", "site"])
    if shared_sites:
        raise DataError(
            f"the out-of-distribution pool's sites {sorted(shared_sites)} are in other pools too; "
            "its site must be one no other pool contains"
        )
    need = max(acfg.augment_n) + max(acfg.augment_real_k)
    for name in POOL_NAMES[1:]:
        for label, group in enumerate(pools.groups):
            have = len(pools[name].subjects(label))
            if have < 1:
                raise DataError(f"the {name} pool has no subject of group {group!r}")
            if name == "train" and have < need:
                raise DataError(
                    f"the training pool has {have} subjects of group {group!r}; the largest draw "
                    f"(augment_n {max(acfg.augment_n)}) plus the largest E_k "
                    f"(augment_real_k {max(acfg.augment_real_k)}) needs {need}"
                )
