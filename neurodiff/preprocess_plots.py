"""Figures and tables of the preprocessing stage (notebook 02).

Each function takes ``Params`` or the preprocessed folder, reads what :func:`neurodiff.preprocess.
run` wrote there, and returns a :class:`matplotlib.figure.Figure` (or a DataFrame for tables). None
calls ``plt.show()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .config import Params
from .preprocess import (
    STEPS,
    load_manifest,
    load_qc,
    load_split,
    load_split_table,
    stage_folder,
)

__all__ = [
    "example_subjects",
    "plot_before_after",
    "plot_intensity_histograms",
    "plot_qc",
    "plot_split",
    "plot_timing",
    "plot_training_grid",
    "split_summary",
    "summary_table",
    "timing_table",
]

_SPLIT_COLOURS = {"train": "#4477aa", "test": "#ee6677", "excluded": "#bbbbbb"}
_GREY = {"cmap": "gray", "interpolation": "nearest", "origin": "lower"}


def _cohort(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "cohort.tsv", sep="\t", dtype={"subject": str, "site": str})


def example_subjects(params_or_dir: Params | str | Path) -> list[str]:
    """The first subject (by name) of each site: the examples the figures show."""
    folder = stage_folder(params_or_dir)
    load_manifest(params_or_dir)
    cohort = _cohort(folder).sort_values("subject")
    return cohort.groupby("site", sort=True)["subject"].first().tolist()


def _three_views(
    ax_row, vol: np.ndarray, zooms: Sequence[float], vmin: float, vmax: float, labels: Sequence[str]
) -> None:
    """Middle slices across each array axis, drawn with the voxel aspect ratio."""
    for axis, ax in enumerate(ax_row):
        sl = np.take(vol, vol.shape[axis] // 2, axis=axis)
        rest = [i for i in range(3) if i != axis]
        ax.imshow(sl.T, vmin=vmin, vmax=vmax, aspect=zooms[rest[1]] / zooms[rest[0]], **_GREY)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(labels[axis], fontsize=7)


def plot_before_after(
    params_or_dir: Params | str | Path, subjects: Sequence[str] | None = None
) -> Figure:
    """Orthogonal views of one scan per site, as stored on disk and after preprocessing.

    Left: the middle slice across each *stored* array axis, with the voxel aspect ratio -- so an
    LPS or LIA scan looks flipped or turned, as it would to code that ignores the header. Right:
    the preprocessed volume (RAS: sagittal, coronal, axial) in [0, 1].
    """
    import nibabel as nib

    folder = stage_folder(params_or_dir)
    load_manifest(params_or_dir)
    cohort = _cohort(folder).set_index("subject")
    subjects = list(subjects) if subjects is not None else example_subjects(params_or_dir)
    fig = Figure(figsize=(11, 2.0 * len(subjects) + 0.6), layout="constrained")
    axes = fig.subplots(len(subjects), 6, squeeze=False)
    for row, subject in zip(axes, subjects, strict=True):
        rec = cohort.loc[subject]
        raw = nib.load(rec["path"])
        data = np.asarray(raw.dataobj, dtype=np.float32)
        codes = "".join(nib.aff2axcodes(raw.affine))
        zooms = [float(z) for z in raw.header.get_zooms()[:3]]
        lo, hi = np.percentile(data, [1, 99.5])
        _three_views(
            row[:3], data, zooms, lo, hi, [f"across stored axis {i} ({codes[i]})" for i in range(3)]
        )
        row[0].set_ylabel(f"{subject}\nsite {rec['site']}", fontsize=9)
        row[1].set_title(
            f"stored {codes}, {'x'.join(f'{z:g}' for z in zooms)} mm, "
            f"{raw.get_data_dtype()}, p99.5 = {hi:.4g}",
            fontsize=8,
        )
        out = nib.load(folder / "volumes" / f"{subject}.nii.gz")
        vol = np.asarray(out.dataobj, dtype=np.float32)
        ozooms = [float(z) for z in out.header.get_zooms()[:3]]
        _three_views(row[3:], vol, ozooms, 0.0, 1.0, ["sagittal", "coronal", "axial"])
        row[4].set_title(
            f"preprocessed RAS, {vol.shape[0]}^3 at {ozooms[0]:.3g} mm, [0, 1]", fontsize=8
        )
    fig.suptitle("One scan per site: as stored (left) and preprocessed (right)", fontsize=11)
    return fig


def plot_intensity_histograms(params_or_dir: Params | str | Path) -> Figure:
    """Per-site intensity distributions of head voxels before and after normalisation.

    Before: scanner units on the target grid (log scale: the sites differ by orders of
    magnitude); after: [0, 1]. The same voxels (above 10 % of the normalised range, i.e. the
    head without the background) are sampled in both panels.
    """
    folder = stage_folder(params_or_dir)
    manifest = load_manifest(params_or_dir)
    h = np.load(folder / "histograms.npz")
    sites = h["site"].astype(str)
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    ax_before, ax_after = fig.subplots(1, 2)
    for site in sorted(set(sites)):
        before = h["before"][sites == site].ravel()
        after = h["after"][sites == site].ravel()
        before = before[np.isfinite(before) & (before > 0)]
        after = after[np.isfinite(after)]
        if before.size:
            # density of log10(intensity), so sites at any scale get comparable heights
            counts, edges = np.histogram(np.log10(before), bins=50, density=True)
            ax_before.stairs(counts, 10.0**edges, lw=1.5, label=f"site {site}")
        ax_after.hist(
            after,
            bins=np.linspace(0, 1, 51),
            histtype="step",
            density=True,
            lw=1.5,
            label=f"site {site}",
        )
    ax_before.set_xscale("log")
    ax_before.set_xlabel("intensity (scanner units, log scale)")
    ax_before.set_ylabel("density of log10(intensity)")
    ax_before.set_title("before normalisation")
    p = manifest["params"]
    how = (
        f"percentile {p['clip_percentiles'][0]:g}-{p['clip_percentiles'][1]:g} % -> [0, 1]"
        if p["normalise"] == "percentile"
        else "min-max -> [0, 1]"
    )
    ax_after.set_xlabel("intensity")
    ax_after.set_ylabel("density")
    ax_after.set_title(f"after normalisation ({how})")
    for ax in (ax_before, ax_after):
        ax.legend(fontsize=8)
    return fig


def split_summary(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """Subjects per site and split (``train``, ``test``, ``excluded``), with totals."""
    split = load_split_table(params_or_dir)
    table = pd.crosstab(split["site"], split["split"], margins=True, margins_name="total")
    cols = [c for c in ("train", "test", "excluded") if c in table.columns] + ["total"]
    table = table[cols]
    table.index.name = "site"
    table.columns.name = None
    return table


def plot_split(params_or_dir: Params | str | Path) -> Figure:
    """Stacked bars: subjects per site in train, test (and excluded by QC)."""
    table = split_summary(params_or_dir).drop(index="total").drop(columns="total")
    fig = Figure(figsize=(5.5, 2.8), layout="constrained")
    ax = fig.subplots()
    bottom = np.zeros(len(table))
    for col in table.columns:
        ax.bar(table.index, table[col], bottom=bottom, color=_SPLIT_COLOURS[col], label=col)
        bottom += table[col].to_numpy()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("site")
    ax.set_ylabel("subjects")
    ax.set_title("Subject-level split, stratified by site")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_qc(params_or_dir: Params | str | Path) -> Figure:
    """QC score (NCC with the template) per subject, by site, with the threshold."""
    manifest = load_manifest(params_or_dir)
    qc = load_qc(params_or_dir)
    sites = sorted(qc["site"].unique())
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # horizontal jitter only
    for i, site in enumerate(sites):
        part = qc[qc["site"] == site]
        x = i + rng.uniform(-0.15, 0.15, len(part))
        y = part["ncc"].fillna(-1.0).to_numpy()
        colours = np.where(part["flagged"].to_numpy(bool), "#cc3311", "#4477aa")
        ax.scatter(x, y, c=colours, s=18)
        for xi, yi, r in zip(x, y, part.itertuples(), strict=True):
            if r.flagged:
                ax.annotate(
                    r.subject, (xi, yi), fontsize=7, xytext=(4, 2), textcoords="offset points"
                )
    thr = manifest["qc"]["threshold"]
    ax.axhline(thr, color="#cc3311", ls="--", lw=1, label=f"qc_threshold = {thr:g}")
    ax.set_xticks(range(len(sites)), [f"site {s}" for s in sites])
    ax.set_ylim(min(-0.1, float(np.nanmin(qc["ncc"].fillna(-1.0))) - 0.05), 1.0)
    ax.set_ylabel("NCC with template")
    ax.set_title(
        "Registration QC (red: flagged"
        + (", left out)" if manifest["qc"]["exclude"] else ", kept)")
    )
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_training_grid(
    params_or_dir: Params | str | Path, n: int = 16, split: str = "train"
) -> Figure:
    """``n`` model inputs spread over the split: 2D slices, or the middle axial slice of volumes.

    Drawn in the model's range [-1, 1].
    """
    images, index = load_split(params_or_dir, split)
    n = min(n, len(images))
    rows = np.unique(np.linspace(0, len(images) - 1, n).round().astype(int))
    cols = min(8, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig = Figure(figsize=(1.4 * cols, 1.55 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, r in zip(axes, rows, strict=False):
        img = images[r, 0]
        if img.ndim == 3:
            img = img[:, :, img.shape[2] // 2]
        ax.imshow(img.T, vmin=-1, vmax=1, **_GREY)
        rec = index.iloc[r]
        ax.set_title(
            f"{rec['subject']} ({rec['site']})"
            + (f" z={rec['slice']}" if rec["slice"] >= 0 else ""),
            fontsize=7,
        )
    kind = "axial slices" if images.ndim == 4 else "volumes (middle axial slice)"
    fig.suptitle(
        f"{split}: {len(images)} {kind} of {'x'.join(map(str, images.shape[2:]))}, in [-1, 1]",
        fontsize=10,
    )
    return fig


def plot_timing(params_or_dir: Params | str | Path) -> Figure:
    """Seconds per subject spent in each step (summed over worker processes)."""
    manifest = load_manifest(params_or_dir)
    timing = manifest["timing"]
    per = timing["seconds_per_subject"]
    steps = [s for s in STEPS if s in per]
    fig = Figure(figsize=(6.5, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.barh(steps[::-1], [per[s] for s in steps[::-1]], color="#4477aa")
    ax.set_xlabel("seconds per subject (one process)")
    n = manifest["n"]["subjects"]
    ax.set_title(
        f"{n} subjects in {timing['wall_seconds']:.0f} s wall with "
        f"{timing['workers']} worker process(es)",
        fontsize=10,
    )
    return fig


def summary_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """The key facts of a build, from its manifest: grid, sizes, counts, cache key, time."""
    m = load_manifest(params_or_dir)
    t, ds, n, p = m["target"], m["downsampling"], m["n"], m["params"]
    dims = "2D axial slices" if p["spatial_dims"] == 2 else "3D volumes"
    rows = [
        ("space", t["space"]),
        ("registration", p["register"]),
        ("brain mask", "yes" if p["mask_brain"] else "no (whole head)"),
        (
            "normalisation",
            p["normalise"]
            + (
                f" {p['clip_percentiles'][0]:g}-{p['clip_percentiles'][1]:g} %"
                if p["normalise"] == "percentile"
                else ""
            ),
        ),
        (
            "field of view",
            f"{t['fov_mm']:g} mm cube = {t['fov_voxels']}^3 voxels of {t['spacing_mm']:g} mm",
        ),
        (
            "resized to",
            f"{ds['image_size']}^3 (x{1 / ds['resize_factor']:.3g}), voxels of "
            f"{t['volume_spacing_mm']:.3g} mm",
        ),
        ("model input", f"{dims}, {m['shapes']['train'][1:]} float32 in [-1, 1]"),
        (
            "UNet downsampling factor",
            f"{ds['unet_downsample_factor']} (image_size divisible: {ds['divisible']})",
        ),
        (
            "subjects",
            f"{n['subjects']}: {n['train_subjects']} train, {n['test_subjects']} test, "
            f"{n['excluded']} excluded by QC",
        ),
        ("images", f"{n['train_images']} train, {n['test_images']} test"),
        ("source files (checksummed)", str(len(m["sources"]))),
        ("parameters hash", m["params_hash"]),
        (
            "built",
            f"{m['created']} in {m['timing']['wall_seconds']:.1f} s with "
            f"{m['timing']['workers']} process(es)",
        ),
    ]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def timing_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """Seconds per subject and share of the total for each step."""
    per = load_manifest(params_or_dir)["timing"]["seconds_per_subject"]
    table = pd.DataFrame(
        {"seconds per subject": [per[s] for s in STEPS if s in per]},
        index=pd.Index([s for s in STEPS if s in per], name="step"),
    )
    table["share"] = table["seconds per subject"] / table["seconds per subject"].sum()
    return table.round({"seconds per subject": 3, "share": 3})
