"""Figures of chapter 4 (sampling). Each function takes arrays and returns a Figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ._base import figure, show

__all__ = [
    "plot_orthogonal",
    "plot_reverse_process",
    "plot_sampler_tradeoff",
    "plot_synthetic_vs_real",
]


def plot_synthetic_vs_real(
    real: np.ndarray | dict[str, tuple[np.ndarray, np.ndarray]],
    synthetic: np.ndarray | None = None,
    n: int = 8,
    seed: int = 0,
) -> Figure:
    """Two rows: ``n`` real images (drawn at random, seeded) above ``n`` synthetic ones, [0, 1].

    ``real`` may instead map each group to its ``(real, synthetic)`` images: two rows per group,
    labelled with the group's name.
    """
    groups = real if isinstance(real, dict) else {"": (real, synthetic)}
    n = min([n] + [min(len(r), len(s)) for r, s in groups.values()])
    fig = figure(figsize=(1.6 * n, 1.8 * 2 * len(groups)), layout="constrained")
    axes = fig.subplots(2 * len(groups), n, squeeze=False)
    for g, (name, (r, s)) in enumerate(groups.items()):
        rng = np.random.default_rng(seed)
        r = np.asarray(r)[np.sort(rng.choice(len(r), n, replace=False))]
        s = np.asarray(s)[:n]
        for k in range(n):
            show(axes[2 * g, k], r[k])
            show(axes[2 * g + 1, k], s[k])
        suffix = f"\n{name}" if name else ""
        axes[2 * g, 0].set_ylabel(f"real (test){suffix}")
        axes[2 * g + 1, 0].set_ylabel(f"synthetic{suffix}")
        last = r
    if np.asarray(last).ndim == 5:
        fig.suptitle("central axial slices")
    return fig


def plot_orthogonal(volumes: np.ndarray, n: int = 4, titles: Sequence[str] | None = None) -> Figure:
    """Sagittal, coronal and axial central slices of ``n`` volumes ``(N, 1, X, Y, Z)`` in [0, 1]."""
    volumes = np.asarray(volumes)
    if volumes.ndim != 5:
        raise ValueError(
            f"plot_orthogonal: 'volumes' must be (N, 1, X, Y, Z); got shape {volumes.shape}"
        )
    n = min(n, len(volumes))
    fig = figure(figsize=(6, 2.1 * n), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for k in range(n):
        v = volumes[k, 0]
        cx, cy, cz = (s // 2 for s in v.shape)
        for j, (a, name) in enumerate(
            ((v[cx], "sagittal"), (v[:, cy], "coronal"), (v[:, :, cz], "axial"))
        ):
            show(axes[k, j], a)
            if k == 0:
                axes[k, j].set_title(name)
        axes[k, 0].set_ylabel(titles[k] if titles else f"sample {k + 1}")
    return fig


def plot_reverse_process(process) -> Figure:
    """The noisy image ``x_t`` (top) and the model's estimate of the clean image (bottom) at
    several timesteps of one sample's reverse process, then the finished sample.

    ``process`` is a :class:`neurodiff.sampling.ReverseProcess` (values in [-1, 1]).
    """
    x_t = process.x_t.numpy()
    x0 = None if process.x0_pred is None else process.x0_pred.numpy()
    k = len(process.timesteps)
    rows = 1 if x0 is None else 2
    fig = figure(figsize=(1.7 * (k + 1), 1.9 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, k + 1, squeeze=False)
    for j, t in enumerate(process.timesteps):
        show(axes[0, j], x_t[j], -1.0, 1.0)
        axes[0, j].set_title(f"t = {t}")
        if x0 is not None:
            show(axes[1, j], x0[j], -1.0, 1.0)
    show(axes[0, k], process.final, -1.0, 1.0)
    axes[0, k].set_title("sample")
    axes[0, 0].set_ylabel(r"$x_t$")
    if x0 is not None:
        axes[1, 0].set_ylabel(r"predicted $\hat{x}_0$")
        axes[1, k].axis("off")
    return fig


def plot_sampler_tradeoff(table, metric: str = "mmd_rbf") -> Figure:
    """Quality (an MMD or FID column) against seconds per sample, one labelled point per row.

    ``table`` is the DataFrame of :func:`neurodiff.sample.sampler_table`; its ``real`` row, if
    present, is drawn as a horizontal reference line.
    """
    fig = figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    markers = {"ddpm": "s", "ddim": "o", "pndm": "^", "euler": "o", "heun": "D"}
    synth = table[table["sampler"] != "real"]
    for sampler, group in synth.groupby("sampler", sort=False):
        g = group.sort_values("seconds_per_sample")
        ax.plot(
            g["seconds_per_sample"],
            g[metric],
            marker=markers.get(sampler, "o"),
            label=sampler.upper(),
        )
        for _, r in g.iterrows():
            ax.annotate(
                str(r["steps"]),
                (r["seconds_per_sample"], r[metric]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    real = table[table["sampler"] == "real"]
    if len(real):
        ax.axhline(
            float(real[metric].iloc[0]), color="grey", ls="--", label="real train vs real test"
        )
    ax.set_xscale("log")
    ax.set_xlabel("seconds per sample (log scale)")
    name = {
        "mmd_rbf": "RBF-kernel MMD²",
        "mmd_linear": "linear-kernel MMD²",
        "fid": "FID (features)",
    }.get(metric, metric)
    ax.set_ylabel(f"{name} to real test images\n(lower is better)")
    ax.set_title("Sampler speed and quality (labels: network evaluations)")
    ax.legend()
    return fig
