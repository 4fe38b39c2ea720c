"""Finding and checking the T1 scans of a cohort (``neurodiff cohort PATH``).

Three layouts are recognised, in this order:

BIDS
    a folder with ``dataset_description.json`` or ``sub-*/anat/`` folders; scans are
    ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``; demographics from ``participants.tsv``.
IXI-style
    file names like ``IXI002-Guys-0828-T1.nii.gz`` (subject ``IXI002``, site ``Guys``; the IXI
    sites are Guys, HH and IOP); demographics from ``IXI.xls`` / ``IXI.xlsx`` / ``IXI.csv`` when
    present (columns ``IXI_ID``, ``SEX_ID (1=m, 2=f)``, ``AGE``).
flat
    ``*.nii`` / ``*.nii.gz`` files in one folder (subject = file name without extension and
    without a trailing ``_T1w`` / ``-T1``), with an optional CSV/TSV table that has a
    ``subject`` (or ``participant_id``) column and optionally ``site``, ``age``, ``sex``,
    ``group`` and anything else; site ``unknown`` without one.

Every scan is checked by :func:`check_scan`. A file that cannot be used gets one line naming it
and the problem; by default all such lines are collected into one :class:`~neurodiff.errors.
CohortError` (``.problems``), with ``skip_bad=True`` the good scans are returned and the bad ones
listed in ``table.attrs["skipped"]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import CohortError
from .scans import (
    _COLUMNS,
    _NIFTI_SUFFIXES,
    _OTHER_IMAGE_SUFFIXES,
    _SUBJECT_COLUMNS,
    _TABLE_SUFFIXES,
    IXI_PATTERN,
    _Scan,
    _summarise,
)

__all__ = ["detect_layout", "load_cohort"]

log = logging.getLogger(__name__)

#: The demographics tables of an IXI-style folder, in the order they are looked for.
_IXI_TABLES = ("IXI.xls", "IXI.xlsx", "IXI.csv")


def detect_layout(path: str | Path) -> str:
    """``"bids"``, ``"ixi"`` or ``"flat"`` for a cohort folder (see the module docstring)."""
    root = Path(path)
    if (
        (root / "dataset_description.json").is_file()
        or any(p.is_dir() for p in root.glob("sub-*/anat"))
        or any(p.is_dir() for p in root.glob("sub-*/ses-*/anat"))
    ):
        return "bids"
    if any(IXI_PATTERN.match(p.name) for p in root.iterdir()):
        return "ixi"
    return "flat"


def _strip_suffix(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _bids_scans(root: Path) -> list[_Scan]:
    files = sorted([*root.glob("sub-*/anat/*_T1w.*"), *root.glob("sub-*/ses-*/anat/*_T1w.*")])
    files = [f for f in files if not f.name.lower().endswith((".json", ".tsv", ".bval", ".bvec"))]
    scans = []
    for f in files:
        entities = _strip_suffix(f.name)
        if entities.endswith("_T1w"):
            entities = entities[: -len("_T1w")]
        scans.append(_Scan(entities, "unknown", f))
    # one scan per subject: the subject label alone; several (sessions, runs): keep entities
    per_subject: dict[str, int] = {}
    for s in scans:
        sub = s.subject.split("_")[0]
        per_subject[sub] = per_subject.get(sub, 0) + 1
    return [
        _Scan(
            s.subject.split("_")[0] if per_subject[s.subject.split("_")[0]] == 1 else s.subject,
            s.site,
            s.path,
        )
        for s in scans
    ]


def _ixi_scans(root: Path) -> list[_Scan]:
    scans = []
    for f in sorted(root.iterdir()):
        m = IXI_PATTERN.match(f.name)
        if m and m.group("mod").upper() == "T1":
            scans.append(_Scan(f"IXI{m.group('num')}", m.group("site"), f))
    return scans


def _flat_scans(root: Path) -> list[_Scan]:
    scans = []
    for f in sorted(root.iterdir()):
        name = f.name
        if name.startswith("."):
            continue
        lower = name.lower()
        if lower.endswith(_NIFTI_SUFFIXES) or lower.endswith(_OTHER_IMAGE_SUFFIXES):
            subject = _strip_suffix(name)
            for tail in ("_T1w", "-T1", "_T1"):
                if subject.endswith(tail) and len(subject) > len(tail):
                    subject = subject[: -len(tail)]
                    break
            scans.append(_Scan(subject, "unknown", f))
    return scans


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise CohortError(f"demographics table {path} does not exist", path=path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xls", ".xlsx"):
            return pd.read_excel(path)
        sep = "\t" if suffix == ".tsv" else None
        return pd.read_csv(
            path, sep=sep, engine="python", dtype={"participant_id": str, "subject": str}
        )
    except ImportError as exc:
        raise CohortError(
            f"demographics table {path}: reading {suffix} needs an extra package "
            f"({exc}); save it as CSV instead",
            path=path,
        ) from None
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CohortError(f"demographics table {path} cannot be read: {exc}", path=path) from None


def _subject_column(df, path: Path) -> str:
    for c in _SUBJECT_COLUMNS:
        if c in df.columns:
            return c
    raise CohortError(
        f"demographics table {path} has no subject column: expected one of "
        f"{list(_SUBJECT_COLUMNS)}, found columns {list(df.columns)}",
        path=path,
    )


def _check_table(df, path: Path, key: str, scanned: Iterable[str]):
    """Duplicates and subjects without scans -> CohortError naming the table."""
    df = df.copy()
    df[key] = df[key].astype(str).str.strip()
    dup = sorted(set(df.loc[df[key].duplicated(), key]))
    if dup:
        raise CohortError(
            f"demographics table {path} lists {len(dup)} subject(s) more than "
            f"once: {', '.join(dup[:10])}{' ...' if len(dup) > 10 else ''}",
            path=path,
        )
    missing = sorted(set(df[key]) - set(scanned))
    if missing:
        raise CohortError(
            f"demographics table {path} lists {len(missing)} subject(s) without "
            f"a scan in the cohort folder: {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}",
            path=path,
        )
    if "age" in df.columns:
        import pandas as pd

        age = pd.to_numeric(df["age"], errors="coerce")
        bad = df.loc[age.isna() & df["age"].notna(), key].tolist()
        if bad:
            raise CohortError(
                f"demographics table {path}: column 'age' must be numeric; "
                f"subject {bad[0]} has {df.loc[df[key] == bad[0], 'age'].iloc[0]!r}",
                path=path,
            )
        df["age"] = age
    return df.rename(columns={key: "subject"})


def _bids_table(root: Path, scans: list[_Scan], table: Path | None):
    path = table if table is not None else root / "participants.tsv"
    if table is None and not path.is_file():
        return None, None
    df = _read_table(path)
    key = _subject_column(df, path)
    scanned = {s.subject.split("_")[0] for s in scans}
    df = _check_table(df, path, key, scanned)
    return df, path


def _ixi_table(root: Path, scans: list[_Scan], table: Path | None):
    """The IXI demographics: lenient about the real IXI.xls, strict about a user's table."""
    import pandas as pd

    if table is not None:
        path = table
    else:
        found = [root / n for n in _IXI_TABLES if (root / n).is_file()]
        if not found:
            return None, None
        path = found[0]
    df = _read_table(path)
    if "IXI_ID" not in df.columns:
        if table is not None:
            key = _subject_column(df, path)
            return _check_table(df, path, key, {s.subject for s in scans}), path
        raise CohortError(
            f"IXI table {path} has no IXI_ID column; found {list(df.columns)}", path=path
        )
    ids = pd.to_numeric(df["IXI_ID"], errors="coerce")
    out = pd.DataFrame({"subject": [f"IXI{int(i):03d}" if pd.notna(i) else "" for i in ids]})
    sex_col = next((c for c in df.columns if str(c).upper().startswith("SEX")), None)
    if sex_col is not None:
        out["sex"] = pd.to_numeric(df[sex_col], errors="coerce").map({1: "M", 2: "F"})
    if "AGE" in df.columns:
        out["age"] = pd.to_numeric(df["AGE"], errors="coerce").round(1)
    # The published IXI.xls lists subjects without a T1 scan and a few IDs twice (e.g. a row
    # without age next to a complete one): keep the scanned subjects, the most complete row each.
    out = out[out["subject"].isin({s.subject for s in scans})]
    out = (
        out.assign(_n=out.notna().sum(axis=1))
        .sort_values(["subject", "_n"], ascending=[True, False], kind="stable")
        .drop_duplicates("subject")
        .drop(columns="_n")
    )
    return out, path


def _flat_table(root: Path, scans: list[_Scan], table: Path | None):
    if table is None:
        candidates = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES and not p.name.startswith(".")
        )
        if not candidates:
            return None, None
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise CohortError(
                f"{root} holds several tables ({names}); say which one holds the "
                "demographics with --table / cohort_table",
                path=root,
            )
        table = candidates[0]
    df = _read_table(table)
    key = _subject_column(df, table)
    return _check_table(df, table, key, {s.subject for s in scans}), table


# --------------------------------------------------------------------------------------------
# The cohort
# --------------------------------------------------------------------------------------------


def load_cohort(path: str | Path, table: str | Path | None = None, skip_bad: bool = False):
    """Discover, check and describe the T1 scans of a cohort folder.

    Parameters
    ----------
    path : str or Path
        A BIDS dataset, an IXI-style folder or a flat folder of NIfTI files.
    table : str or Path, optional
        CSV/TSV (or IXI .xls) of demographics; default: the layout's own (``participants.tsv``,
        ``IXI.xls``, the only CSV/TSV of a flat folder). Needs a ``subject`` or
        ``participant_id`` column (``IXI_ID`` for IXI); its subjects must all have a scan.
    skip_bad : bool
        Return the usable scans and list the others in ``table.attrs["skipped"]`` instead of
        raising.

    Returns
    -------
    pandas.DataFrame
        One row per scan, sorted by subject: ``subject``, ``site``, ``path``, ``shape``,
        ``voxel_size`` (mm), ``orientation`` (e.g. ``"RAS"``, ``"LPS"``), ``dtype`` (on disk),
        ``p1``, ``p50``, ``p99`` (intensity percentiles over the whole volume), then the
        demographics found (``age``, ``sex``, ``group`` and any other table column).
        ``attrs``: ``layout``, ``root``, ``table`` (path or None), ``skipped``
        (list of ``(path, problem)``).

    Raises
    ------
    CohortError
        The folder is missing or holds no scans; the table is unreadable, lacks a subject
        column, repeats a subject or lists subjects without a scan; or (unless ``skip_bad``)
        some scans cannot be used: ``.problems`` lists ``(path, problem)`` for each.
    """
    import pandas as pd

    root, table_path = _check_paths(path, table)
    layout = detect_layout(root)
    scans = _find_scans(root, layout)
    demo, used_table = {"bids": _bids_table, "ixi": _ixi_table, "flat": _flat_table}[layout](
        root, scans, table_path
    )
    rows, problems = _summarise_all(root, scans, skip_bad)
    df = pd.DataFrame(rows, columns=_COLUMNS)
    if demo is not None:
        df = _merge_demographics(df, demo, layout, used_table)
    cols = _COLUMNS + [c for c in df.columns if c not in _COLUMNS]
    df = df[cols].sort_values("subject", kind="stable").reset_index(drop=True)
    df.attrs.update(
        layout=layout,
        root=str(root),
        table=str(used_table) if used_table is not None else None,
        skipped=problems,
    )
    for p, problem in problems:
        log.warning("skipped %s: %s", p, problem)
    return df


def _check_paths(path: str | Path, table: str | Path | None) -> tuple[Path, Path | None]:
    """The cohort folder and the table path, checked to exist."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CohortError(
            f"cohort folder {root} does not exist (for the simulated cohort run "
            "`neurodiff demo-data` or `make data`)",
            path=root,
        )
    if not root.is_dir():
        raise CohortError(f"cohort path {root} is a file; expected a folder of scans", path=root)
    table_path = Path(table).expanduser() if table not in (None, "") else None
    if table_path is not None and not table_path.is_file():
        raise CohortError(f"demographics table {table_path} does not exist", path=table_path)
    return root, table_path


def _find_scans(root: Path, layout: str) -> list[_Scan]:
    """The scans of a layout; at least one, at most one per subject."""
    scans = {"bids": _bids_scans, "ixi": _ixi_scans, "flat": _flat_scans}[layout](root)
    if not scans:
        raise CohortError(
            f"no T1 scans found in {root}: expected a BIDS dataset (sub-*/anat/*_T1w.nii.gz), "
            "IXI-style names (IXI002-Guys-0828-T1.nii.gz) or .nii/.nii.gz files",
            path=root,
        )
    subjects = [s.subject for s in scans]
    dup = sorted({s for s in subjects if subjects.count(s) > 1})
    if dup:
        raise CohortError(
            f"{root}: several scans for subject(s) {', '.join(dup[:10])}; "
            "expected one T1 scan per subject",
            path=root,
        )
    return scans


def _summarise_all(root: Path, scans: list[_Scan], skip_bad: bool):
    """Every scan checked and summarised: ``(rows, problems)``; CohortError unless ``skip_bad``."""
    # Reading is mostly gzip inflation, which releases the GIL: a few threads help.
    workers = min(4, os.cpu_count() or 1, len(scans))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_summarise, scans))
    rows, problems = [], []
    for scan, res in zip(scans, results):
        if isinstance(res, str):
            problems.append((scan.path, res))
        else:
            rows.append(res)
    if problems and not skip_bad:
        first = f"{problems[0][0]}: {problems[0][1]}"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CohortError(
            f"{len(problems)} of {len(scans)} scans in {root} cannot be used: {first}{more}. "
            "Fix or remove them, or continue without them with --skip-bad (skip_bad=True).",
            path=root,
            problems=problems,
        )
    if not rows:
        raise CohortError(
            f"none of the {len(scans)} scans in {root} can be used", path=root, problems=problems
        )
    return rows, problems


def _merge_demographics(df, demo, layout: str, used_table: Path | None):
    """The scan table with the demographics table's columns joined on the subject."""
    extra = demo.drop(columns=["path"], errors="ignore").rename(columns={"subject": "_key"})
    if layout == "ixi":  # the site is in the file name
        extra = extra.drop(columns=["site"], errors="ignore")
    values = [c for c in extra.columns if c != "_key"]
    # BIDS: sessions/runs of one participant share the participants.tsv row
    df["_key"] = df["subject"].str.split("_").str[0] if layout == "bids" else df["subject"]
    if "site" in values:
        df = df.drop(columns="site")
    df = df.merge(extra, on="_key", how="left")
    if "site" in values:
        df["site"] = df["site"].astype(object).where(df["site"].notna(), "unknown").astype(str)
    if values:
        unlisted = df.loc[df[values].isna().all(axis=1), "subject"].tolist()
        if unlisted:
            log.warning(
                "%d scan(s) have no row in %s: %s",
                len(unlisted),
                used_table,
                ", ".join(unlisted[:10]),
            )
    return df.drop(columns="_key")
