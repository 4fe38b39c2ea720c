"""Quality control and the subject-level train/test split of stage 2."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..config import PreprocessConfig
from .pipeline import ScanResult

__all__ = ["qc_reasons", "qc_table", "robust_z", "split_subjects"]


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


def robust_z(values: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 MAD)`` over the finite values (NaN where undefined).

    A robust z-score, so that the scans being judged cannot widen their own yardstick; the MAD
    is floored at 0.01 so that a cohort of near-identical scans does not flag a tiny difference.
    """
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.full_like(x, np.nan)
    med = float(np.median(x[ok]))
    mad = max(1.4826 * float(np.median(np.abs(x[ok] - med))), 0.01)
    return (x - med) / mad


def qc_reasons(ncc: float, overlap: float, z: float, note: str, cfg: PreprocessConfig) -> list[str]:
    """Every reason a scan fails QC (empty when it passes), in words for ``qc.tsv``."""
    reasons = [note] if note else []
    if not np.isfinite(ncc):
        if not note:
            reasons.append("no QC score (flat scan)")
        return reasons
    if ncc < cfg.qc_threshold:
        reasons.append(f"NCC with the template {ncc:.2f} < qc_threshold {cfg.qc_threshold:g}")
    if np.isfinite(z) and z < -cfg.qc_outlier_z:
        reasons.append(
            f"NCC {ncc:.2f} is {-z:.1f} robust SD below the cohort's median (qc_outlier_z "
            f"{cfg.qc_outlier_z:g})"
        )
    if np.isfinite(overlap) and overlap < cfg.qc_min_overlap:
        reasons.append(
            f"brain mask overlaps the template's by Dice {overlap:.2f} < qc_min_overlap "
            f"{cfg.qc_min_overlap:g}"
        )
    return reasons


def qc_table(
    cohort: pd.DataFrame, results: dict[str, ScanResult], cfg: PreprocessConfig
) -> pd.DataFrame:
    """One row per scan: subject, site, ncc, ncc_z, overlap, head, stripped, outside, flagged,
    excluded, note (``head``: a skull was found; ``stripped``: it was removed; ``outside``: the
    share of the scan's foreground outside its brain that decided it, see :mod:`.strip`).

    A scan is flagged when its pipeline left a note (registration failed, nothing in the field
    of view), its NCC with the template is under ``qc_threshold`` or is an outlier of the
    cohort (robust z under ``-qc_outlier_z``), or its brain mask overlaps the template's by less
    than ``qc_min_overlap``. ``note`` lists every reason. ``qc_outlier_z`` defaults to 6: on
    the demo cohort, where no scan is misregistered, the lowest z is -5.1 (large heads that a
    rigid registration cannot scale); a header 90 degrees wrong (Colin27: NCC 0.17) is about -13.
    """
    res = [results[s] for s in cohort["subject"]]
    z = robust_z(np.array([r.ncc for r in res]))
    rows = []
    for r, zi, site in zip(res, z, cohort["site"], strict=True):
        reasons = qc_reasons(r.ncc, r.overlap, zi, r.note, cfg)
        rows.append(
            (
                r.subject,
                site,
                _round(r.ncc),
                _round(zi, 2),
                _round(r.overlap),
                bool(r.head),
                bool(r.stripped),
                _round(r.outside, 3),
                bool(reasons),
                bool(reasons) and cfg.qc_exclude,
                "; ".join(reasons),
            )
        )
    columns = [
        *("subject", "site", "ncc", "ncc_z", "overlap", "head", "stripped", "outside"),
        *("flagged", "excluded", "note"),
    ]
    return pd.DataFrame(rows, columns=columns)


def _round(x: float, digits: int = 4) -> float:
    return round(float(x), digits) if np.isfinite(x) else np.nan
