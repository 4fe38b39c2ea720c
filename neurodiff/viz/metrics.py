"""Figures of chapter 5 (metrics). Each function takes arrays, a table or a metrics result and
returns a Figure.

``result`` arguments are :class:`neurodiff.metrics.MetricsResult` objects (their numbers, and for
some figures the arrays kept in ``result.data``); this module reads them and imports no stage.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import MetricError
from ._base import central_slice, figure, show

__all__ = [
    "plot_anatomy",
    "plot_calibration_ladder",
    "plot_levels_side_by_side",
    "plot_metric_bars",
    "plot_nearest_neighbours",
    "plot_nn_distances",
    "plot_per_site",
    "plot_real_vs_synthetic_histograms",
]

_REAL, _SYN, _BASE = "#1f77b4", "#d62728", "#7f7f7f"
#: How the tissue classes are named in figures (the order of ``measures.plausibility.TISSUES``).
_TISSUE_NAMES = {"csf": "CSF", "gm": "grey matter", "wm": "white matter"}


def _data(result):
    if result.data is None:
        raise MetricError(
            "this figure needs the arrays of the run (result.data); results read "
            "back from metrics.json only hold the numbers"
        )
    return result.data


def plot_real_vs_synthetic_histograms(
    real: np.ndarray, synthetic: np.ndarray, *, bins: int = 60, foreground: float = 0.02
) -> Figure:
    """Voxel intensity histograms (foreground, > ``foreground``) and per-image mean intensity.

    Parameters
    ----------
    real, synthetic : np.ndarray
        ``(N, 1, *spatial)`` in [0, 1].
    """
    fig = figure(figsize=(11, 3.6), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    edges = np.linspace(0, 1, bins + 1)
    for x, name, color in ((real, "real (test)", _REAL), (synthetic, "synthetic", _SYN)):
        v = x.reshape(-1)
        ax1.hist(
            v[v > foreground],
            bins=edges,
            density=True,
            histtype="step",
            lw=1.5,
            color=color,
            label=name,
        )
        ax2.hist(v, bins=edges, density=True, histtype="step", lw=1.5, color=color, label=name)
        ax3.hist(
            x.reshape(len(x), -1).mean(1), bins=20, density=True, alpha=0.5, color=color, label=name
        )
    ax1.set(title=f"foreground voxels (> {foreground})", xlabel="intensity", ylabel="density")
    ax2.set(title="all voxels (log scale)", xlabel="intensity", yscale="log")
    ax3.set(title="mean intensity per image", xlabel="mean intensity")
    ax1.legend(frameon=False)
    return fig


def _pca2(x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Project onto the first two principal axes of ``x`` (plain SVD; no model to fit)."""
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    return [(a - mu) @ vt[:2].T for a in (x, *others)]


def plot_per_site(result) -> Figure:
    """Left: 2D PCA of the features, real coloured by site, synthetic as crosses. Right: MMD^2
    of the synthetic set to each site, beside the site's MMD^2 to the other sites' real data."""
    data = _data(result)
    real_f = np.concatenate([data.features["real"], data.features["train"]])
    syn_f = data.features["synthetic"]
    has_sites = data.real_sites is not None and data.train_sites is not None
    fig = figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    p_real, p_syn = _pca2(real_f, syn_f)
    if has_sites:
        sites = np.concatenate([data.real_sites, data.train_sites]).astype(str)
        for s in sorted(set(sites)):
            m = sites == s
            ax1.scatter(*p_real[m].T, s=10, alpha=0.5, label=f"real, {s}")
    else:
        ax1.scatter(*p_real.T, s=10, alpha=0.5, color=_REAL, label="real")
    ax1.scatter(*p_syn.T, s=22, marker="x", color="k", label="synthetic")
    ax1.set(title=f"features ({result.extractor}), PCA of real", xlabel="PC 1", ylabel="PC 2")
    ax1.legend(frameon=False, fontsize=8)
    if has_sites and result.per_site is not None:
        table = result.per_site
        x = np.arange(len(table))
        ax2.bar(x - 0.2, table["mmd_synthetic"], 0.4, color=_SYN, label="synthetic vs site")
        ax2.bar(
            x + 0.2, table["mmd_other_sites"], 0.4, color=_BASE, label="other sites' real vs site"
        )
        ax2.set_xticks(x, [f"{s}\n(n={n})" for s, n in zip(table.index, table["n_real"])])
        ax2.axhline(0, color="k", lw=0.6)
        ax2.set(title="MMD^2 (RBF, features) to each site's real data", ylabel="MMD^2")
        ax2.legend(frameon=False, fontsize=8)
    else:
        ax2.axis("off")
        ax2.text(0.5, 0.5, "no site labels", ha="center", va="center")
    return fig


def plot_metric_bars(result) -> Figure:
    """One panel per metric: synthetic vs real and real vs real, with 95 % CIs."""
    names = list(result.metrics)
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig = figure(figsize=(3.0 * cols, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, name in zip(axes, names):
        m = result.metrics[name]
        vals = np.array([m.value, m.baseline])
        lo = vals - np.array([m.ci[0], m.baseline_ci[0]])
        hi = np.array([m.ci[1], m.baseline_ci[1]]) - vals
        ax.bar(
            [0, 1],
            vals,
            color=[_SYN, _BASE],
            yerr=[np.maximum(lo, 0), np.maximum(hi, 0)],
            capsize=4,
        )
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks([0, 1], ["synthetic\nvs real", "real\nvs real"], fontsize=8)
        ax.set_title(f"{name}\n(better: {m.better})", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"95% bootstrap CIs ({result.n_bootstrap} resamples); features: {result.extractor}",
        fontsize=10,
    )
    return fig


def plot_nearest_neighbours(result, n_pairs: int = 6) -> Figure:
    """The synthetic samples closest to a training sample (top) above that sample (bottom).

    Titles give the feature distance and the SSIM; pairs flagged by the audit are marked red.
    """
    data = _data(result)
    closest = result.audit.closest(min(n_pairs, len(data.synthetic)))
    k = len(closest)
    fig = figure(figsize=(1.9 * k, 4.4), layout="constrained")
    axes = np.array(fig.subplots(2, k, squeeze=False))
    for c, row in enumerate(closest.itertuples(index=False)):
        top, bottom = axes[0, c], axes[1, c]
        show(top, data.synthetic[row.synthetic])
        show(bottom, data.train[row.train])
        color = "red" if row.flagged else "black"
        top.set_title(f"synthetic {row.synthetic}\nd={row.distance:.3g}", fontsize=8, color=color)
        bottom.set_title(f"train {row.train}\nSSIM={row.ssim:.2f}", fontsize=8, color=color)
    axes[0, 0].set_ylabel("synthetic")
    axes[1, 0].set_ylabel("nearest training")
    fig.suptitle(
        f"closest synthetic-training pairs ({result.audit.flagged.sum()} flagged of "
        f"{len(data.synthetic)})",
        fontsize=10,
    )
    return fig


def plot_nn_distances(result) -> Figure:
    """Distances to the nearest training sample: synthetic vs real test, with the threshold."""
    audit = result.audit
    fig = figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    both = np.concatenate([audit.syn_distance, audit.test_distance])
    edges = np.linspace(0, both.max() * 1.05 if both.max() > 0 else 1, 30)
    ax.hist(
        audit.test_distance,
        bins=edges,
        density=True,
        alpha=0.5,
        color=_REAL,
        label=f"real test -> train (n={len(audit.test_distance)})",
    )
    ax.hist(
        audit.syn_distance,
        bins=edges,
        density=True,
        alpha=0.5,
        color=_SYN,
        label=f"synthetic -> train (n={len(audit.syn_distance)})",
    )
    ax.axvline(
        audit.threshold,
        color="k",
        ls="--",
        label=f"1% quantile of test ({audit.fraction:.1%} of synthetic below)",
    )
    ax.set(xlabel=f"distance to nearest training sample ({result.extractor})", ylabel="density")
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_levels_side_by_side(result, levels: int = 4, per_level: int = 3) -> Figure:
    """Real test slices and synthetic slices at the same anatomical levels, side by side.

    Synthetic images carry no slice position; each is given the level of its nearest training
    slice in feature space (the memorisation audit's neighbour). ``levels`` levels evenly spread
    over those present; each row shows ``per_level`` real test slices of that level (left) and
    the synthetic slices assigned to it (right; fewer when fewer were).
    """
    data = _data(result)
    train_index, real_index = data.train_index, data.real_index
    if train_index is None or real_index is None or "slice" not in train_index:
        raise ValueError("plot_levels_side_by_side() needs the split index tables (a stage run)")
    syn_level = train_index["slice"].to_numpy()[result.audit.syn_nearest]
    real_level = real_index["slice"].to_numpy()
    present = np.unique(real_level)
    chosen = present[
        np.linspace(0, len(present) - 1, min(levels, len(present))).round().astype(int)
    ]
    fig = figure(
        figsize=(1.45 * 2 * per_level + 0.6, 1.55 * len(chosen) + 0.5), layout="constrained"
    )
    axes = np.array(fig.subplots(len(chosen), 2 * per_level, squeeze=False))
    for r, level in enumerate(chosen):
        real_i = np.flatnonzero(real_level == level)[:per_level]
        syn_i = np.flatnonzero(syn_level == level)[:per_level]
        for c in range(2 * per_level):
            ax = axes[r, c]
            ax.set_axis_off()
            pick = real_i if c < per_level else syn_i
            k = c if c < per_level else c - per_level
            if k < len(pick):
                show(ax, (data.real if c < per_level else data.synthetic)[pick[k]])
        axes[r, 0].set_axis_on()
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        axes[r, 0].set_ylabel(f"slice {level}", fontsize=9)
    axes[0, 0].set_title("real test", fontsize=9, loc="left")
    axes[0, per_level].set_title(
        "synthetic (level of nearest training slice)", fontsize=9, loc="left"
    )
    return fig


def plot_calibration_ladder(
    ladder,
    result,
    metrics: tuple[str, ...] = ("fid", "mmd_rbf", "precision", "recall", "density", "coverage"),
) -> Figure:
    """Each metric for real data degraded in known ways (bars), with the synthetic value (red
    line) and the real-vs-real range (grey band): where on the ladder the synthetic set sits.

    ``ladder`` is the table of :func:`neurodiff.measures.calibration_ladder`, ``result`` the
    :class:`~neurodiff.metrics.MetricsResult` of the same run.
    """
    k = len(metrics)
    cols = 3
    rows = int(np.ceil(k / cols))
    fig = figure(figsize=(9.5, 2.6 * rows + 0.4), layout="constrained")
    axes = np.array(fig.subplots(rows, cols, squeeze=False)).ravel()
    names = list(ladder.index)
    y = np.arange(len(names))
    for ax, key in zip(axes, metrics, strict=False):
        m = result.metrics[key]
        ax.barh(y, ladder[key].to_numpy(dtype=float), color="0.55")
        ax.axvspan(*m.baseline_ci, color=_REAL, alpha=0.25, lw=0)
        ax.axvline(m.value, color=_SYN, lw=2)
        ax.set_yticks(y, names if key == metrics[0] or ax in axes[::cols] else [""] * len(y))
        ax.invert_yaxis()
        ax.set_title(key, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes[k:]:
        ax.set_axis_off()
    fig.suptitle(
        "grey bars: real vs degraded real; band: real-vs-real range; red line: synthetic",
        fontsize=10,
    )
    return fig


def plot_anatomy(result, difference=None) -> Figure:
    """Is it anatomy? Tissue fractions by slice level, and the group difference maps.

    Top row, one panel per tissue: the fraction of brain voxels of that tissue, real test images
    at each slice level (mean and one standard deviation over images) and synthetic images at
    the level of their nearest training slice (mean; marker area by the number of images), with
    the gap at matched levels and its real-vs-real range in the title. Bottom row, with
    ``difference`` (a :class:`neurodiff.metrics.GroupDifference`): the real and the synthetic
    difference map (case minus reference group, one colour scale, the region of interest
    outlined; volumes: their central axial slice) and each brain voxel of one against the other,
    with their correlation.
    """
    tissue = _data(result).tissue
    if tissue is None:
        raise MetricError(
            "plot_anatomy() needs the tissue fractions of the run (result.data.tissue)"
        )
    rows = 1 if difference is None else 2
    fig = figure(figsize=(11, 3.5 * rows), layout="constrained")
    axes = np.array(fig.subplots(rows, 3, squeeze=False))
    _tissue_panels(axes[0], result, tissue)
    if difference is not None:
        _difference_panels(fig, axes[1], difference)
    return fig


def _tissue_panels(axes, result, tissue) -> None:
    real_levels, syn_levels = tissue.levels.real, tissue.levels.synthetic
    levels = np.unique(real_levels)
    for c, (ax, key) in enumerate(zip(axes, _TISSUE_NAMES)):
        real = tissue.fractions.real[:, c]
        mean = np.array([np.nanmean(real[real_levels == v]) for v in levels])
        sd = np.array([np.nanstd(real[real_levels == v]) for v in levels])
        ax.errorbar(levels, mean, yerr=sd, color=_REAL, marker="o", ms=4, capsize=2, label="real")
        syn = tissue.fractions.synthetic[:, c]
        at, count = np.unique(syn_levels, return_counts=True)
        syn_mean = [np.nanmean(syn[syn_levels == v]) for v in at]
        ax.scatter(at, syn_mean, s=12 + 60 * count / count.max(), color=_SYN, label="synthetic")
        m = result.metrics[f"{key}_fraction_gap"]
        lo, hi = m.baseline_ci
        ax.set_title(
            f"{_TISSUE_NAMES[key]}: gap {m.value:.3f}\n(real vs real {lo:.3f} to {hi:.3f}; "
            f"{m.verdict})",
            fontsize=9,
        )
        ax.set_xlabel("slice level")
    axes[0].set_ylabel("fraction of brain voxels")
    axes[0].legend(frameon=False, fontsize=8)


def _difference_panels(fig, axes, difference) -> None:
    brain = central_slice(difference.brain.astype(np.float32)) > 0.5
    roi = central_slice(difference.roi.astype(np.float32))
    maps = [central_slice(difference.real), central_slice(difference.synthetic)]
    scale = max(float(np.abs(m[brain]).max()) for m in maps) or 1.0
    for ax, m, name in zip(axes[:2], maps, ("real test", "synthetic")):
        image = ax.imshow(
            np.where(brain, m, np.nan).T, cmap="RdBu_r", vmin=-scale, vmax=scale, origin="lower"
        )
        ax.contour(roi.T, levels=[0.5], colors="k", linewidths=0.8, origin="lower")
        ax.set_title(f"{name}: {difference.case} - {difference.reference}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    # below the two maps, so that the columns of the tissue panels above keep their widths
    fig.colorbar(
        image, ax=list(axes[:2]), location="bottom", shrink=0.6, label="intensity difference"
    )
    inside = difference.brain & ~difference.roi
    ax = axes[2]
    for where, color, label in ((inside, _BASE, "brain"), (difference.roi, "k", "region")):
        ax.scatter(
            difference.real[where], difference.synthetic[where], s=4, color=color, label=label
        )
    r = difference.metrics["difference_map_r"]
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel="real difference", ylabel="synthetic difference")
    ax.set_title(
        f"r = {r.value:.2f} (real vs real {r.baseline_ci[0]:.2f} to {r.baseline_ci[1]:.2f})",
        fontsize=9,
    )
    ax.legend(frameon=False, fontsize=8, markerscale=3)
