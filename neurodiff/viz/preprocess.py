"""Figures of chapter 2 (preprocessing). Each function takes arrays or tables and returns a
Figure; :mod:`neurodiff.preprocess` and :mod:`neurodiff.artifacts` provide them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._base import GREY, figure, show

__all__ = [
    "plot_before_after",
    "plot_model_inputs",
    "plot_normalisation_histograms",
    "plot_qc",
    "plot_qc_overlays",
    "plot_skull_strip",
]


def _three_views(
    ax_row, vol: np.ndarray, zooms: Sequence[float], vmin: float, vmax: float, labels: Sequence[str]
) -> None:
    """Middle slices across each array axis, drawn with the voxel aspect ratio."""
    for axis, ax in enumerate(ax_row):
        sl = np.take(vol, vol.shape[axis] // 2, axis=axis)
        rest = [i for i in range(3) if i != axis]
        ax.imshow(sl.T, vmin=vmin, vmax=vmax, aspect=zooms[rest[1]] / zooms[rest[0]], **GREY)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(labels[axis], fontsize=7)


def plot_before_after(examples: Sequence[Mapping[str, Any]]) -> Figure:
    """Orthogonal views of one scan per site, as stored on disk and after preprocessing.

    ``examples`` are the records of :func:`neurodiff.preprocess.before_after_examples`: per
    subject the stored array with its axis codes, voxel size and dtype, and the preprocessed
    volume with its voxel size.

    Left: the middle slice across each *stored* array axis, with the voxel aspect ratio -- so an
    LPS or LIA scan looks flipped or turned, as it would to code that ignores the header. Right:
    the preprocessed volume (RAS: sagittal, coronal, axial) in [0, 1].
    """
    examples = list(examples)
    fig = figure(figsize=(11, 2.0 * len(examples) + 0.6), layout="constrained")
    axes = fig.subplots(len(examples), 6, squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        data, codes, zooms = ex["stored"], ex["stored_codes"], ex["stored_zooms"]
        lo, hi = np.percentile(data, [1, 99.5])
        _three_views(
            row[:3], data, zooms, lo, hi, [f"across stored axis {i} ({codes[i]})" for i in range(3)]
        )
        row[0].set_ylabel(f"{ex['subject']}\nsite {ex['site']}", fontsize=9)
        row[1].set_title(
            f"stored {codes}, {'x'.join(f'{z:g}' for z in zooms)} mm, "
            f"{ex['stored_dtype']}, p99.5 = {hi:.4g}",
            fontsize=8,
        )
        vol, ozooms = ex["volume"], ex["volume_zooms"]
        _three_views(row[3:], vol, ozooms, 0.0, 1.0, ["sagittal", "coronal", "axial"])
        row[4].set_title(
            f"preprocessed RAS, {vol.shape[0]}^3 at {ozooms[0]:.3g} mm, [0, 1]", fontsize=8
        )
    fig.suptitle("One scan per site: as stored (left) and preprocessed (right)", fontsize=11)
    return fig


def plot_normalisation_histograms(
    histograms: Mapping[str, np.ndarray],
    normalise: str = "percentile",
    clip_percentiles: Sequence[float] = (0.5, 99.5),
) -> Figure:
    """Per-site intensity distributions of head voxels before and after normalisation.

    Before: scanner units on the target grid (log scale: the sites differ by orders of
    magnitude); after: [0, 1]. The same voxels (above 10 % of the normalised range, i.e. the
    head without the background) are sampled in both panels. ``histograms`` is what
    :func:`neurodiff.artifacts.load_histograms` returns; ``normalise`` and ``clip_percentiles``
    name the normalisation in the title.
    """
    h = histograms
    sites = h["site"].astype(str)
    fig = figure(figsize=(10, 3.4), layout="constrained")
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
    how = (
        f"percentile {clip_percentiles[0]:g}-{clip_percentiles[1]:g} % -> [0, 1]"
        if normalise == "percentile"
        else "min-max -> [0, 1]"
    )
    ax_after.set_xlabel("intensity")
    ax_after.set_ylabel("density")
    ax_after.set_title(f"after normalisation ({how})")
    for ax in (ax_before, ax_after):
        ax.legend(fontsize=8)
    return fig


def plot_qc(
    qc: pd.DataFrame, threshold: float, exclude: bool = True, min_overlap: float | None = None
) -> Figure:
    """The QC measures per subject, by site: NCC with the template (with ``threshold``) and,
    when the scans have brain masks, the Dice overlap of each mask with the template's.

    ``qc`` is :func:`neurodiff.artifacts.load_qc`; ``exclude`` says whether flagged subjects were
    left out (``qc_exclude``); ``min_overlap`` (``qc_min_overlap``) is drawn on the overlap
    panel. Flagged subjects are red and named.
    """
    sites = sorted(qc["site"].unique())
    panels = [("ncc", "NCC with template (inside its brain)")]
    if "overlap" in qc and qc["overlap"].notna().any():
        panels.append(("overlap", "Dice of brain mask with template's"))
    fig = figure(figsize=(6.5 if len(panels) == 1 else 10, 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (column, label) in zip(axes, panels, strict=True):
        rng = np.random.default_rng(0)  # horizontal jitter only
        for i, site in enumerate(sites):
            part = qc[qc["site"] == site]
            x = i + rng.uniform(-0.15, 0.15, len(part))
            y = part[column].fillna(-1.0).to_numpy()
            colours = np.where(part["flagged"].to_numpy(bool), "#cc3311", "#4477aa")
            ax.scatter(x, y, c=colours, s=18)
            for xi, yi, r in zip(x, y, part.itertuples(), strict=True):
                if r.flagged:
                    ax.annotate(
                        r.subject, (xi, yi), fontsize=7, xytext=(4, 2), textcoords="offset points"
                    )
        ax.set_xticks(range(len(sites)), [f"site {s}" for s in sites])
        ax.set_ylim(min(-0.1, float(np.nanmin(qc[column].fillna(-1.0))) - 0.05), 1.0)
        ax.set_ylabel(label)
    axes[0].axhline(
        threshold, color="#cc3311", ls="--", lw=1, label=f"qc_threshold = {threshold:g}"
    )
    axes[0].legend(fontsize=8, loc="lower right")
    if min_overlap is not None and len(axes) > 1:
        axes[1].axhline(
            min_overlap, color="#cc3311", ls="--", lw=1, label=f"qc_min_overlap = {min_overlap:g}"
        )
        axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Registration QC (red: flagged" + (", left out)" if exclude else ", kept)"))
    return fig


def _views(vol: np.ndarray) -> list[np.ndarray]:
    """Mid sagittal, coronal and axial slices of a RAS volume, oriented for imshow."""
    c = [n // 2 for n in vol.shape]
    return [vol[c[0], :, :].T, vol[:, c[1], :].T, vol[:, :, c[2]].T]


def plot_skull_strip(examples: Sequence[Mapping[str, Any]]) -> Figure:
    """Skull stripping of one scan per site: the scan with deepbet's brain outline (red), the
    stripped brain, and the preprocessed volume (sagittal and coronal middle slices).

    ``examples`` are the records of :func:`neurodiff.preprocess.report.strip_examples`.
    """
    examples = list(examples)
    fig = figure(figsize=(11, 2.1 * len(examples) + 0.6), layout="constrained")
    axes = fig.subplots(len(examples), 6, squeeze=False)
    for row, ex in zip(axes, examples, strict=True):
        hi = float(np.percentile(ex["scan"], 99.5)) or 1.0
        scan, stripped = _views(ex["scan"]), _views(ex["stripped"])
        mask = _views(ex["mask"].astype(np.float32)) if ex["mask"] is not None else None
        for j in range(2):
            row[j].imshow(scan[j], vmin=0, vmax=hi, **GREY)
            if mask is not None and mask[j].any():
                row[j].contour(mask[j], levels=[0.5], colors="#cc3311", linewidths=0.8)
            row[2 + j].imshow(stripped[j], vmin=0, vmax=hi, **GREY)
            row[4 + j].imshow(_views(ex["volume"])[j], vmin=0, vmax=1, **GREY)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        decision = "head: stripped" if ex["head"] else "no skull found: kept"
        if ex["mask"] is None:
            decision = "no brain found"
        if not ex.get("applied", True):
            decision = "not applied in this run (skull_strip=off)"
        row[0].set_ylabel(f"{ex['subject']}\nsite {ex['site']}", fontsize=9)
        row[0].set_title(decision, fontsize=8)
        if np.isfinite(ex["outside"]):
            row[2].set_title(f"stripped ({ex['outside']:.0%} outside)", fontsize=8)
        row[4].set_title("preprocessed", fontsize=8)
    fig.suptitle("Skull stripping (deepbet), one scan per site", fontsize=11)
    return fig


def plot_qc_overlays(records: Sequence[Mapping[str, Any]]) -> Figure:
    """Every flagged scan (and the lowest-scoring scans that passed) with the template's brain
    outline (red) and the scan's own brain mask (yellow), with the reasons QC gave.

    ``records`` are those of :func:`neurodiff.preprocess.report.qc_overlays`.
    """
    records = [r for r in records if r["volume"] is not None]
    fig = figure(figsize=(9, 2.6 * max(len(records), 1) + 0.4), layout="constrained")
    if not records:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no scan to show", ha="center", va="center")
        return fig
    axes = fig.subplots(len(records), 3, squeeze=False)
    for row, rec in zip(axes, records, strict=True):
        vol, tm = _views(rec["volume"]), _views(rec["template_mask"].astype(np.float32))
        own = _views(rec["mask"].astype(np.float32)) if rec["mask"] is not None else None
        for j, ax in enumerate(row):
            ax.imshow(vol[j], vmin=0, vmax=1, **GREY)
            ax.contour(tm[j], levels=[0.5], colors="#cc3311", linewidths=0.8)
            if own is not None:
                ax.contour(own[j], levels=[0.5], colors="#ddcc77", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        verdict = "FLAGGED" if rec["flagged"] else "passed"
        row[0].set_ylabel(f"{rec['subject']}\nsite {rec['site']}", fontsize=9)
        text = f"{verdict}: NCC {rec['ncc']:.2f}, Dice {rec['overlap']:.2f}"
        if rec["note"]:
            text += "\n" + "\n".join(rec["note"].split("; "))
        row[1].set_title(text, fontsize=7)
    fig.suptitle("QC overlays: template brain (red), the scan's brain mask (yellow)", fontsize=11)
    return fig


def plot_model_inputs(
    images: np.ndarray, index: pd.DataFrame, n: int = 16, split: str = "train"
) -> Figure:
    """``n`` model inputs spread over a split: 2D slices, or the middle axial slice of volumes.

    ``images`` ``(N, 1, *spatial)`` in the model's range [-1, 1] and their ``index`` table, as
    :func:`neurodiff.artifacts.load_split` returns them; ``split`` names them in the title.
    """
    n = min(n, len(images))
    rows = np.unique(np.linspace(0, len(images) - 1, n).round().astype(int))
    cols = min(8, len(rows))
    nrows = math.ceil(len(rows) / cols)
    fig = figure(figsize=(1.4 * cols, 1.55 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, r in zip(axes, rows, strict=False):
        show(ax, images[r], -1.0, 1.0)
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
