"""Quality control and the subject-level train/test split of stage 2."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..config import PreprocessConfig
from .pipeline import ScanResult

__all__ = ["qc_table", "split_subjects"]


def split_subjects(table: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Seeded subject-level train/test split, stratified by site.

    In each site (subjects sorted, then shuffled by a generator seeded with ``seed`` and the site
    name, so adding a site leaves the others' splits unchanged), ``round(test_fraction * n)``
    subjects go to test -- at least one and at most ``n - 1`` when the site has two or more.
    Written by hand because the whole rule is these few lines and scikit-learn is not a
    dependency.

    Returns a table ``subject, site, split`` (``train`` | ``test``) sorted by subject.
    """
    rows = []
    for site, group in table.groupby("site", sort=True):
        subjects = sorted(group["subject"].astype(str))
        n = len(subjects)
        n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        rng = np.random.default_rng([seed, zlib.crc32(str(site).encode())])
        order = rng.permutation(n)
        test = {subjects[i] for i in order[:n_test]}
        rows += [(s, site, "test" if s in test else "train") for s in subjects]
    out = pd.DataFrame(rows, columns=["subject", "site", "split"])
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
