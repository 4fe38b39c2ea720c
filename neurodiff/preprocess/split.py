"""Quality control and the subject-level train/test split of stage 2."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..config import PreprocessConfig
from .pipeline import ScanResult

__all__ = ["qc_table", "split_subjects"]


def split_subjects(table: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Seeded subject-level train/test split, stratified by site (and by group, when the table
    has a ``group`` column).

    In each stratum (subjects sorted, then shuffled by a generator seeded with ``seed`` and the
    stratum's name, so adding a site or a group leaves the others' splits unchanged; controls and
    a table without groups use the site's name alone, so adding patients to a cohort leaves the
    controls' split as it was), ``round(test_fraction * n)`` subjects go to test -- at least one
    and at most ``n - 1`` when the stratum has two or more. Written by hand because the whole
    rule is these few lines.

    Returns a table ``subject, site[, group], split`` (``train`` | ``test``) sorted by subject.
    """
    grouped = "group" in table.columns
    if grouped:  # a subject without a group is its own stratum, not dropped
        table = table.assign(group=table["group"].fillna("unknown").astype(str))
    keys = ["site", "group"] if grouped else ["site"]
    rows = []
    for key, stratum in table.groupby(keys, sort=True):
        site, group = (
            (key[0], key[1]) if grouped else (key[0] if isinstance(key, tuple) else key, "")
        )
        subjects = sorted(stratum["subject"].astype(str))
        n = len(subjects)
        n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        name = str(site) if group in ("", "control") else f"{site}/{group}"
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        order = rng.permutation(n)
        test = {subjects[i] for i in order[:n_test]}
        extra = (str(group),) if grouped else ()
        rows += [(s, site, *extra, "test" if s in test else "train") for s in subjects]
    columns = ["subject", "site", *(["group"] if grouped else []), "split"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values("subject", kind="stable").reset_index(drop=True)


def qc_table(
    cohort: pd.DataFrame, results: dict[str, ScanResult], cfg: PreprocessConfig
) -> pd.DataFrame:
    """One row per scan: subject, site, ncc, flagged, excluded, note."""
    rows = []
    for r in cohort.itertuples():
        res = results[r.subject]
        # a note means the registration failed or nothing landed in the field of view
        flagged = bool(res.note) or not (np.isfinite(res.ncc) and res.ncc >= cfg.qc_threshold)
        rows.append(
            (
                r.subject,
                r.site,
                round(res.ncc, 4) if np.isfinite(res.ncc) else np.nan,
                flagged,
                flagged and cfg.qc_exclude,
                res.note,
            )
        )
    return pd.DataFrame(rows, columns=["subject", "site", "ncc", "flagged", "excluded", "note"])
