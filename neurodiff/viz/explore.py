"""Figures of chapter 1 (the cohort). Each function takes a table, a site summary or images
(from :mod:`neurodiff.explore`) and returns a Figure; none reads a file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "CUT_COORDS",
    "plot_demographics",
    "plot_site_examples",
    "plot_site_intensity_histograms",
    "plot_site_means",
]


def _triplet(t: Any) -> str:
    return " x ".join(f"{x:g}" for x in t)


#: A point near the centre of the brain in MNI space (mm), where the views cut.
CUT_COORDS = (0.0, -17.0, 12.0)


def _site_colours(sites: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(sites)}


def plot_demographics(df) -> Figure:
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


def plot_site_intensity_histograms(summary) -> Figure:
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


def plot_site_examples(examples: Sequence[tuple[str, Any, Any]]) -> Figure:
    """Orthogonal views (nilearn ``plot_anat``) of one subject per site, each in its own scanner
    space and intensity scale.

    ``examples`` are ``(site, cohort table row, nibabel image)`` triples, as
    :func:`neurodiff.explore.site_examples` returns them.
    """
    import matplotlib.pyplot as plt
    from nilearn import plotting

    fig = plt.figure(figsize=(10, 3.3 * len(examples)))
    n = len(examples)
    for i, (site, row, img) in enumerate(examples):
        data = img.get_fdata(dtype=np.float32)
        lo, hi = np.percentile(data[::2, ::2, ::2], [1, 99.5])
        title = (
            f"site {site} - {row['subject']}: stored {row['orientation']}, "
            f"{_triplet(row['voxel_size'])} mm, {row['dtype']}"
        )
        ax = fig.add_axes((0.0, 1.0 - (i + 1) / n, 1.0, 0.98 / n))
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


def plot_site_means(summary) -> Figure:
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
