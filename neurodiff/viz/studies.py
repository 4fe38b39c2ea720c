"""Figures of the diversity study and the seed replicates (chapters 3 and 5). Each function takes
the tables of :mod:`neurodiff.studies` and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._base import figure

__all__ = ["plot_frontier", "plot_seed_spread"]

#: The x range of :func:`plot_seed_spread`, in units of each metric's real-vs-real range; values
#: beyond are drawn at the edge as arrows with their value.
_LO, _HI = -2.0, 3.0

_LEVER_MARKERS = {
    "base": "*",
    "EMA": "s",
    "timesteps": "^",
    "augmentation": "D",
    "width": "P",
    "sampling": "o",
    "budget": "X",
    "sampling, long": "v",
    "width, long": "p",
}


def plot_frontier(frame: pd.DataFrame, x: str = "recall", y: str = "precision") -> Figure:
    """Fidelity (``y``) against coverage of the real distribution (``x``), one point per variant
    of the diversity study (:func:`neurodiff.studies.frontier`), its marker by lever; the grey box
    is the real-vs-real range of both (95 % of the subject-level redraws): a generator as good as
    real data lies inside it."""
    fig = figure(figsize=(6.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    first = frame.iloc[0]
    ax.add_patch(
        Rectangle(
            (first["x_lo"], first["y_lo"]),
            first["x_hi"] - first["x_lo"],
            first["y_hi"] - first["y_lo"],
            color="0.85",
            zorder=0,
            label="real vs real (95 %)",
        )
    )
    for name, row in frame.iterrows():
        marker = _LEVER_MARKERS.get(row["lever"], "o")
        size = 140 if row["lever"] == "base" else 50
        ax.scatter(row[x], row[y], marker=marker, s=size, zorder=3, label=str(name))
    lo = min(frame[x].min(), first["x_lo"]) - 0.03
    ax.set_xlim(max(0.0, lo), 1.02)
    ax.set_ylim(max(0.0, min(frame[y].min(), first["y_lo"]) - 0.03), 1.02)
    ax.set(xlabel=f"{x} (coverage of the real images)", ylabel=f"{y} (fidelity)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_seed_spread(seeds: Mapping[str, Any], keys: Sequence[str], variant: str | None = None):
    """Each metric of ``keys`` across generator seeds (dots) beside its real-vs-real range (grey
    bar: 95 % of the subject-level redraws), one panel per metric, from ``seeds.json``'s recipe
    ``variant`` (default: its first)."""
    recipes = seeds["recipes"]
    name = variant or next(iter(recipes))
    metrics = recipes[name]["metrics"]
    keys = [k for k in keys if k in metrics]
    fig = figure(figsize=(6.5, 0.9 + 0.7 * len(keys)), layout="constrained")
    ax = fig.add_subplot()
    for i, key in enumerate(keys):
        m = metrics[key]
        lo, hi = m["baseline_ci"]
        span = max(hi - lo, 1e-12)
        # each metric on its own scale: its real-vs-real range maps to [0, 1]
        ax.barh(i, 1.0, left=0.0, height=0.5, color="0.85", zorder=0)
        values = (np.asarray(m["values"], dtype=float) - lo) / span
        inside = (values >= _LO) & (values <= _HI)
        ax.scatter(values[inside], np.full(inside.sum(), i), color="#cc3311", zorder=3, s=28)
        raw = np.asarray(m["values"], dtype=float)
        for side, edge, marker, ha in (
            (values > _HI, _HI, ">", "right"),
            (values < _LO, _LO, "<", "left"),
        ):
            if side.any():  # beyond the axis: an arrow at the edge, the values written beside it
                ax.scatter([edge], [i], color="#cc3311", marker=marker, zorder=3, s=36)
                text = ", ".join(f"{v:.3g}" for v in raw[side])
                ax.text(edge, i - 0.32, text, ha=ha, fontsize=9, color="#cc3311")
        ax.text(0.5, i + 0.38, f"[{lo:.3g}, {hi:.3g}]", ha="center", fontsize=9, color="0.35")
    ax.set_xlim(_LO - 0.15, _HI + 0.15)
    ax.set_yticks(range(len(keys)), [metrics[k]["label"] for k in keys], fontsize=9)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.axvline(1, color="0.6", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(
        f"{name}: each generator seed (red), placed on the metric's\n"
        "real-vs-real range (grey: its ends at 0 and 1)"
    )
    ax.grid(axis="x", alpha=0.3)
    return fig
