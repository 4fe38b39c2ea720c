"""Tables and figures of notebook 01 (exploring a multi-site T1 cohort).

Each ``plot_*`` function takes data and returns a :class:`matplotlib.figure.Figure` (it never
shows it). :func:`summarise_sites` reads every scan once and keeps what the intensity and mean
image figures need, so a 48-scan cohort is read in seconds.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CohortError

__all__ = [
    "SiteSummary",
    "acquisition_table",
    "demographics_table",
    "describe_source",
    "open_cohort",
    "plot_demographics",
    "plot_intensity_histograms",
    "plot_site_examples",
    "plot_site_means",
    "summarise_sites",
]

log = logging.getLogger(__name__)

DEMO_COHORT = "data/raw/demo"
#: A point near the centre of the brain in MNI space (mm), where the views cut.
CUT_COORDS = (0.0, -17.0, 12.0)


def _site_colours(sites: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(sites)}


def open_cohort(params: Mapping[str, Any]):
    """Load the cohort named by the parameters (``cohort``, ``cohort_table``, ``skip_bad``).

    The simulated demo cohort (``data/raw/demo``) is written first if it is missing, with the
    defaults of ``neurodiff demo-data``; any other missing folder is an error.
    """
    from .config import Params, project_root
    from .data import load_cohort

    path = params.path(params["cohort"]) if isinstance(params, Params) else Path(params["cohort"])
    if not path.exists() and path.resolve() == (project_root() / DEMO_COHORT).resolve():
        # In a separate process: the generator forks workers, which is unsafe inside a
        # multi-threaded Jupyter kernel.
        log.info("writing the simulated demo cohort to %s (once, ~20 s)", path)
        res = subprocess.run(
            [sys.executable, "-m", "neurodiff", "demo-data", "--out", str(path)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise CohortError(f"writing the demo cohort to {path} failed: {last}", path=path)
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
        f"**Cohort:** `{root}` ({layout} layout), {len(df)} scans from "
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

    from .data import check_scan

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


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def plot_demographics(df):
    """Subjects per site (split by sex, or group) and the age distribution per site."""
    import matplotlib.pyplot as plt

    sites = sorted(df["site"].unique())
    colours = _site_colours(sites)
    has_age = "age" in df and df["age"].notna().any()
    fig, axes = plt.subplots(
        1,
        2 if has_age else 1,
        figsize=(10 if has_age else 5, 3.6),
        squeeze=False,
        layout="constrained",
    )
    ax = axes[0, 0]
    split = "group" if "group" in df else ("sex" if "sex" in df else None)
    bottom = np.zeros(len(sites))
    if split is not None:
        from matplotlib.patches import Patch

        levels = sorted(df[split].dropna().astype(str).unique())
        hatches = ["", "//", "..", "xx", "--"]
        handles = []
        for k, level in enumerate(levels):
            counts = np.array(
                [(df.loc[df["site"] == s, split].astype(str) == level).sum() for s in sites]
            )
            hatch = hatches[k % len(hatches)]
            ax.bar(
                sites,
                counts,
                bottom=bottom,
                color=[colours[s] for s in sites],
                hatch=hatch,
                edgecolor="white",
            )
            handles.append(
                Patch(facecolor="grey", edgecolor="white", hatch=hatch, label=f"{split} {level}")
            )
            bottom += counts
        ax.set_ylim(0, max(bottom.max(), 1) * 1.3)
        ax.legend(handles=handles, frameon=False, fontsize=8, ncols=len(levels), loc="upper center")
    else:
        counts = np.array([(df["site"] == s).sum() for s in sites])
        ax.bar(sites, counts, color=[colours[s] for s in sites])
    ax.set(xlabel="site", ylabel="subjects", title="Subjects per site")
    if has_age:
        ax = axes[0, 1]
        rng = np.random.default_rng(0)
        for i, s in enumerate(sites):
            ages = df.loc[df["site"] == s, "age"].astype(float).dropna().to_numpy()
            ax.boxplot(
                [ages], positions=[i], widths=0.5, showfliers=False, medianprops={"color": "black"}
            )
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, len(ages)), ages, s=14, color=colours[s], zorder=3
            )
        ax.set_xticks(range(len(sites)), sites)
        ax.set(xlabel="site", ylabel="age (years)", title="Age per site")
    return fig


def plot_intensity_histograms(summary: SiteSummary):
    """Top: raw intensity histograms per site (one line per scan, each site on its own scale).
    Bottom: brain-tissue histograms after dividing each scan by its 99th percentile."""
    import matplotlib.pyplot as plt

    sites = summary.sites
    colours = _site_colours(sites)
    fig = plt.figure(figsize=(3.2 * max(len(sites), 3), 6.2), layout="constrained")
    grid = fig.add_gridspec(2, len(sites))
    for i, site in enumerate(sites):
        ax = fig.add_subplot(grid[0, i])
        edges = summary.raw_edges[site]
        centres = 0.5 * (edges[1:] + edges[:-1])
        for h in summary.raw_hist[site]:
            ax.semilogy(centres, np.maximum(h, 1e-12), color=colours[site], alpha=0.6, lw=1)
        ax.set(
            title=f"site {site}: raw",
            xlabel="stored intensity",
            ylabel="density (log)" if i == 0 else None,
        )
        top = max(float(np.max(h)) for h in summary.raw_hist[site])
        ax.set_ylim(top * 1e-5, top * 2)
    ax = fig.add_subplot(grid[1, :])
    edges = summary.brain_edges
    centres = 0.5 * (edges[1:] + edges[:-1])
    for site in sites:
        hists = np.array(summary.brain_hist[site])
        for h in hists:
            ax.plot(centres, h, color=colours[site], alpha=0.25, lw=0.8)
        ax.plot(
            centres,
            hists.mean(axis=0),
            color=colours[site],
            lw=2.5,
            label=f"site {site} (n={len(hists)})",
        )
    ax.set(
        xlabel="intensity / the scan's 99th percentile",
        ylabel="density",
        title="Inside the template brain mask, after scaling each scan by its 99th percentile",
    )
    ax.legend(frameon=False)
    return fig


def plot_site_examples(df, seed: int = 0):
    """Orthogonal views (nilearn ``plot_anat``) of one randomly chosen subject per site, each in
    its own scanner space and intensity scale."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    from .data import check_scan

    sites = sorted(df["site"].unique())
    rng = np.random.default_rng(seed)
    fig = plt.figure(figsize=(10, 3.3 * len(sites)))
    for i, site in enumerate(sites):
        g = df[df["site"] == site].reset_index(drop=True)
        row = g.iloc[int(rng.integers(len(g)))]
        img = check_scan(row["path"])
        data = img.get_fdata(dtype=np.float32)
        lo, hi = np.percentile(data[::2, ::2, ::2], [1, 99.5])
        title = (
            f"site {site} - {row['subject']}: stored {row['orientation']}, "
            f"{_fmt_triplet(row['voxel_size'])} mm, {row['dtype']}"
        )
        ax = fig.add_axes((0.0, 1.0 - (i + 1) / len(sites), 1.0, 0.98 / len(sites)))
        plotting.plot_anat(
            img,
            cut_coords=CUT_COORDS,
            axes=ax,
            figure=fig,
            title=title,
            vmin=float(lo),
            vmax=float(hi),
            dim=0,
            black_bg=True,
            colorbar=True,
            draw_cross=False,
        )
    return fig


def plot_site_means(summary: SiteSummary):
    """Per-site mean of the scaled scans after a naive resample to the 2 mm MNI152 template
    (rows: sites; columns: sagittal, coronal, axial), and the spread between site means."""
    import matplotlib.pyplot as plt

    sites = summary.sites
    tpl = summary.template
    inv = np.linalg.inv(tpl.affine)
    ijk = np.rint(inv[:3, :3] @ np.array(CUT_COORDS) + inv[:3, 3]).astype(int)

    def views(vol: np.ndarray) -> list[np.ndarray]:
        return [vol[ijk[0], :, :].T, vol[:, ijk[1], :].T, vol[:, :, ijk[2]].T]

    means = np.stack([summary.mean[s] for s in sites])
    spread = means.std(axis=0) if len(sites) > 1 else np.zeros_like(means[0])
    nrows = len(sites) + 1
    fig, axes = plt.subplots(
        nrows, 3, figsize=(9, 2.9 * nrows), layout="constrained", squeeze=False
    )
    for r, site in enumerate(sites):
        for c, v in enumerate(views(summary.mean[site])):
            im = axes[r, c].imshow(v, origin="lower", cmap="gray", vmin=0.0, vmax=1.1)
        axes[r, 0].set_ylabel(f"site {site}\n(mean of {summary.count[site]})")
    fig.colorbar(im, ax=axes[:-1, -1], shrink=0.6, label="mean intensity / p99")
    for c, v in enumerate(views(spread)):
        im = axes[-1, c].imshow(
            v,
            origin="lower",
            cmap="magma",
            vmin=0.0,
            vmax=max(float(np.percentile(spread, 99.9)), 1e-6),
        )
    axes[-1, 0].set_ylabel("SD between\nsite means")
    fig.colorbar(im, ax=axes[-1, -1], shrink=0.8, label="SD")
    for ax, name in zip(axes[0], ("sagittal", "coronal", "axial")):
        ax.set_title(name)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
