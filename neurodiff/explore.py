"""Stage 1: a first look at a multi-site T1 cohort (notebook 01): tables and site summaries.

:func:`open_cohort` loads the cohort named by the parameters; the tables describe it per site;
:func:`summarise_sites` reads every scan once and keeps what the intensity and mean-image figures
need, so a 48-scan cohort is read in seconds; :func:`site_examples` picks one scan per site. The
figures are in :mod:`neurodiff.viz.explore`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .io import shown_path

__all__ = [
    "SiteSummary",
    "acquisition_table",
    "cohort_summary",
    "demographics_table",
    "describe_source",
    "open_cohort",
    "site_examples",
    "summarise_sites",
]

log = logging.getLogger(__name__)


def open_cohort(params: Mapping[str, Any]):
    """Load the cohort named by the parameters (``cohort``, ``cohort_table``, ``skip_bad``).

    A missing folder is an error naming it (:func:`neurodiff.notebook.prepare` writes the
    simulated demo cohort first when the parameter has its default).
    """
    from .cohort import load_cohort
    from .config import Params

    path = params.path(params.cohort) if isinstance(params, Params) else Path(params["cohort"])
    table = params.get("cohort_table") or None
    if table and isinstance(params, Params):
        table = params.path(table)
    return load_cohort(path, table=table, skip_bad=bool(params.get("skip_bad", False)))


def describe_source(df) -> str:
    """One Markdown paragraph on where the cohort comes from (says so when it is simulated)."""
    import json

    root = Path(df.attrs.get("root", ""))
    layout = df.attrs.get("layout", "?")
    text = (
        f"**Cohort:** `{shown_path(root)}` ({layout} layout), {len(df)} scans from "
        f"{df['site'].nunique()} site(s)."
    )
    try:
        desc = json.loads((root / "dataset_description.json").read_text())
    except (OSError, ValueError):
        return text
    text += f" Dataset: *{desc.get('Name', 'unnamed')}*."
    if desc.get("Simulated"):
        how = (desc.get("GeneratedBy") or [{}])[0].get("Description", "")
        text += f"\n\n**These images are simulated.** {how}"
    return text


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _fmt_unique(values: Any, fmt: Any = str) -> str:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return ", ".join(fmt(v) for v in seen)


def _fmt_triplet(t: Any) -> str:
    return " x ".join(f"{x:g}" for x in t)


def cohort_summary(df):
    """The cohort table in one row per site: scans, subjects, the storage orientations, data
    types and array shapes found there (the full table has one row per scan)."""
    import pandas as pd

    rows = []
    for site, g in df.groupby("site", sort=True):
        rows.append(
            {
                "site": site,
                "scans": len(g),
                "subjects": g["subject"].nunique(),
                "orientation": _fmt_unique(g["orientation"]),
                "dtype": _fmt_unique(g["dtype"]),
                "shapes": g["shape"].astype(str).nunique(),
            }
        )
    return pd.DataFrame(rows).set_index("site")


def demographics_table(df):
    """Per site: number of subjects, age (mean, SD, range), share of women, groups."""
    import pandas as pd

    rows = []
    for site, g in df.groupby("site", sort=True):
        row: dict[str, Any] = {"site": site, "subjects": len(g)}
        if "age" in g and g["age"].notna().any():
            age = pd.to_numeric(g["age"], errors="coerce")
            row["age mean"] = round(float(age.mean()), 1)
            row["age SD"] = round(float(age.std()), 1) if len(g) > 1 else float("nan")
            row["age range"] = f"{age.min():g}-{age.max():g}"
        if "sex" in g and g["sex"].notna().any():
            sex = g["sex"].astype(str).str.upper().str[0]
            row["women %"] = round(100.0 * float((sex == "F").mean()), 0)
        if "group" in g:
            row["groups"] = ", ".join(
                f"{k}: {v}" for k, v in g["group"].value_counts().sort_index().items()
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("site")


def acquisition_table(df):
    """Per site: storage orientation, voxel size (mm), matrix, field of view (mm), dtype and
    the median of each scan's 99th intensity percentile."""
    import pandas as pd

    rows = []
    for site, g in df.groupby("site", sort=True):
        fov = [
            tuple(round(n * v) for n, v in zip(s, z)) for s, z in zip(g["shape"], g["voxel_size"])
        ]
        rows.append(
            {
                "site": site,
                "orientation": _fmt_unique(g["orientation"]),
                "voxel size (mm)": _fmt_unique(g["voxel_size"], _fmt_triplet),
                "matrix": _fmt_unique(g["shape"], _fmt_triplet),
                "field of view (mm)": _fmt_unique(fov, _fmt_triplet),
                "dtype": _fmt_unique(g["dtype"]),
                "median p99": float(np.median(g["p99"])),
            }
        )
    return pd.DataFrame(rows).set_index("site")


# --------------------------------------------------------------------------------------------
# Reading the scans once
# --------------------------------------------------------------------------------------------


@dataclass
class SiteSummary:
    """What the intensity and mean-image figures need, per site.

    ``raw_hist[site]``: list of per-scan densities over ``raw_edges[site]`` (raw intensities).
    ``brain_hist[site]``: list of per-scan densities over ``brain_edges`` of the intensities
    inside the template brain mask, after the scan is divided by its 99th percentile and
    naively resampled to the template. ``mean[site]``: mean of those resampled, scaled scans,
    ``(X, Y, Z)`` float32 on the 2 mm MNI152 grid (``template``).
    """

    sites: list[str]
    raw_edges: dict[str, np.ndarray] = field(default_factory=dict)
    raw_hist: dict[str, list[np.ndarray]] = field(default_factory=dict)
    brain_edges: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 1.4, 71))
    brain_hist: dict[str, list[np.ndarray]] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    template: Any = None


def _read_one(
    path: str, edges: np.ndarray, brain_edges: np.ndarray, template: Any, mask: np.ndarray
):
    from nilearn.image import resample_to_img

    from .cohort import check_scan

    img = check_scan(path)
    data = img.get_fdata(dtype=np.float32)
    sub = data[::2, ::2, ::2]  # every 8th voxel: the same histogram shape, 8x cheaper
    raw, _ = np.histogram(sub, bins=edges, density=True)
    p99 = float(np.percentile(sub, 99))
    scaled = type(img)(data / max(p99, 1e-12), img.affine)
    # "Naive": the scan's own affine only, no registration, as a first look would do.
    res = resample_to_img(
        scaled, template, interpolation="linear", force_resample=True, copy_header=True
    ).get_fdata(dtype=np.float32)
    brain, _ = np.histogram(res[mask], bins=brain_edges, density=True)
    return raw, brain, res


def summarise_sites(df, max_per_site: int | None = None, workers: int = 2) -> SiteSummary:
    """Read each scan of the cohort table once (at most ``max_per_site`` per site).

    Returns per-scan intensity histograms and per-site mean images on the 2 mm MNI152 grid.
    """
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    template = load_mni152_template(resolution=2)
    mask = load_mni152_brain_mask(resolution=2).get_fdata() > 0.5
    sites = sorted(df["site"].unique())
    summary = SiteSummary(sites=sites, template=template)
    jobs = []
    for site in sites:
        g = df[df["site"] == site]
        if max_per_site is not None:
            g = g.head(max_per_site)
        hi = float(np.max(g["p99"])) * 1.5
        summary.raw_edges[site] = np.linspace(0.0, hi, 81)
        jobs += [(site, p) for p in g["path"]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(
            pool.map(
                lambda job: _read_one(
                    job[1], summary.raw_edges[job[0]], summary.brain_edges, template, mask
                ),
                jobs,
            )
        )
    for (site, _), (raw, brain, res) in zip(jobs, results):
        summary.raw_hist.setdefault(site, []).append(raw)
        summary.brain_hist.setdefault(site, []).append(brain)
        if site in summary.mean:
            summary.mean[site] += res
        else:
            summary.mean[site] = res.copy()
        summary.count[site] = summary.count.get(site, 0) + 1
    for site in sites:
        summary.mean[site] /= summary.count[site]
    return summary


def site_examples(df, seed: int = 0) -> list[tuple[str, Any, Any]]:
    """One randomly chosen (seeded) scan per site: ``(site, cohort table row, nibabel image)``.

    For :func:`neurodiff.viz.explore.plot_site_examples`.
    """
    from .cohort import check_scan

    rng = np.random.default_rng(seed)
    out = []
    for site in sorted(df["site"].unique()):
        g = df[df["site"] == site].reset_index(drop=True)
        row = g.iloc[int(rng.integers(len(g)))]
        out.append((site, row, check_scan(row["path"])))
    return out
