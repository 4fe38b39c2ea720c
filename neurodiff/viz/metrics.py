"""Figures of chapter 5 (metrics). Each function takes arrays, a table or a metrics result and
returns a Figure.

``result`` arguments are :class:`neurodiff.metrics.MetricsResult` objects (their numbers, and for
some figures the arrays kept in ``result.data``); this module reads them and imports no stage.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import MetricError
from ._base import figure, show

__all__ = [
    "plot_metric_bars",
    "plot_nearest_neighbours",
    "plot_nn_distances",
    "plot_per_site",
    "plot_real_vs_synthetic_histograms",
]

_REAL, _SYN, _BASE = "#1f77b4", "#d62728", "#7f7f7f"


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
