"""Figures of chapter 6: learning curves per arm and learner, gains over real-only (with the
leak), and the fitted real learning curve that "worth N subjects" is read from.

Each function takes the experiment's tables (``neurodiff.augment`` results: ``table``,
``gains``, ``curve``, ``worth``), from a live run or from the committed results file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._base import figure

__all__ = ["ARM_COLOURS", "plot_gains", "plot_learning_curves", "plot_worth"]

#: One colour per arm (the C arms share shades of blue, the E arms of green).
ARM_COLOURS = {
    "A": "0.15",
    "A_H": "0.55",
    "B": "tab:orange",
    "C_pool": "tab:red",
    "D": "tab:purple",
    "ceiling": "tab:green",
}
_SHOWN_KINDS = ("A", "A_H", "B", "C", "C_pool", "D")


def _kind(arm: str) -> str:
    """The kind of an arm named in the tables (``"C64"`` -> ``"C"``, ``"C_pool"`` stays). The
    figures sit a floor below the stage, so they read the names rather than import its
    ``Arm``; they never need a count."""
    if arm in ARM_COLOURS:
        return arm
    return arm[:1]


def _colour(arm: str, family: list[str], cmap: str = "Blues") -> tuple | str:
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    import matplotlib

    shades = np.linspace(0.45, 0.95, max(len(family), 1))
    return matplotlib.colormaps[cmap](shades[family.index(arm)])


def plot_learning_curves(table: pd.DataFrame, pool: str = "test") -> Figure:
    """AUROC against the draw's real subjects per class (log axis), one panel per learner, one
    line per arm with its 95 % band; D (no real image) dotted, the ceiling as a band."""
    t = table[table["pool"] == pool]
    learners = list(dict.fromkeys(t["classifier"]))
    fig = figure(figsize=(11, 4.4), layout="constrained")
    axes = fig.subplots(1, len(learners), sharey=True, squeeze=False)[0]
    for ax, clf in zip(axes, learners, strict=True):
        c = t[t["classifier"] == clf]
        arms = [a for a in dict.fromkeys(c["arm"]) if _kind(a) in _SHOWN_KINDS]
        c_arms = [a for a in arms if _kind(a) == "C"]
        for arm in arms:
            r = c[c["arm"] == arm].sort_values("n")
            colour = _colour(arm, c_arms)
            ls = ":" if arm == "D" else "-"
            ax.plot(r["n"], r["auroc"], marker="o", ms=4, ls=ls, color=colour, label=arm)
            ax.fill_between(r["n"], r["ci_low"], r["ci_high"], color=colour, alpha=0.1)
        ceiling = c[c["arm"] == "ceiling"]
        if not ceiling.empty:
            r = ceiling.iloc[0]
            ax.axhspan(r["ci_low"], r["ci_high"], color=ARM_COLOURS["ceiling"], alpha=0.12)
            ax.axhline(r["auroc"], color=ARM_COLOURS["ceiling"], lw=1, label="ceiling")
        ax.set_xscale("log", base=2)
        ns = sorted(c.loc[c["arm"] == "A", "n"].unique())
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("real subjects per class in the draw (n)")
        ax.set_title(f"{clf}, {pool} pool")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("subject-level AUROC")
    axes[-1].legend(fontsize=8, loc="lower right")
    return fig


def _comparison_colour(arm: str, ref: str, comparisons: list[str]) -> tuple | str:
    if arm == "C_pool":
        return "tab:red"  # the leak
    if ref == "A_H":
        return "0.45"
    firsts = [c.split(" - ")[0] for c in comparisons if c.endswith(" - A")]
    for kind, cmap in (("C", "Blues"), ("E", "Greens")):
        if _kind(arm) == kind:
            return _colour(arm, [a for a in firsts if _kind(a) == kind], cmap)
    return ARM_COLOURS.get(arm, "0.2")


def plot_gains(gains: pd.DataFrame, pool: str = "test") -> Figure:
    """Each comparison's gain (arm minus reference) by n with its 95 % interval, one panel per
    learner; the leak (C_pool minus the draw's own C) in red."""
    g = gains[gains["pool"] == pool]
    # the E arms are the real learning curve (plot_worth), C_pool - A is C_pool - C + C - A
    shown = ~g["comparison"].str.startswith("E") & (g["comparison"] != "C_pool - A")
    g = g[shown]
    learners = list(dict.fromkeys(g["classifier"]))
    comparisons = list(dict.fromkeys(g["comparison"]))
    fig = figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, len(learners), sharey=True, squeeze=False)[0]
    ns = sorted(g["n"].unique())
    width = 0.8 / max(len(comparisons), 1)
    for ax, clf in zip(axes, learners, strict=True):
        for i, comp in enumerate(comparisons):
            r = g[(g["classifier"] == clf) & (g["comparison"] == comp)].sort_values("n")
            x = np.arange(len(r)) + (i - (len(comparisons) - 1) / 2) * width
            arm, ref = comp.split(" - ")
            colour = _comparison_colour(arm, ref, comparisons)
            ax.errorbar(
                x,
                r["gain"],
                yerr=[r["gain"] - r["ci_low"], r["ci_high"] - r["gain"]],
                fmt="o",
                ms=3,
                capsize=2,
                color=colour,
                label=comp,
            )
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(range(len(ns)), [f"n = {n}" for n in ns])
        ax.set_title(f"{clf}, {pool} pool")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("AUROC difference (95 % interval)")
    axes[-1].legend(fontsize=7, ncol=2, loc="upper right")
    return fig


def plot_worth(
    table: pd.DataFrame, curve: pd.DataFrame, worth: pd.DataFrame, classifier: str = "logistic"
) -> Figure:
    """The real learning curve (A at n, E_k at n + k, the ceiling; the fitted inverse power
    law) with each C arm placed at its AUROC: the horizontal distance to A is its worth."""
    t = table[(table["pool"] == "test") & (table["classifier"] == classifier)]
    fig = figure(figsize=(7.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    real = t[t["arm"].map(_kind).isin(["A", "E", "ceiling"])]
    ax.scatter(
        real["real subjects per class"], real["auroc"], s=14, color="0.35", label="real only"
    )
    c = curve[(curve["pool"] == "test") & (curve["classifier"] == classifier)]
    ax.plot(c["subjects per class"], c["fitted auroc"], color="tab:green", label="fitted curve")
    w = worth[(worth["pool"] == "test") & (worth["classifier"] == classifier)]
    c_arms = [a for a in dict.fromkeys(w["arm"]) if _kind(a) == "C"]
    for arm in c_arms:
        r = w[w["arm"] == arm]
        x = (r["n"] + r["worth (real subjects per class)"]).clip(lower=0.5)
        ax.scatter(x, r["auroc"], marker="D", s=22, color=_colour(arm, c_arms), label=arm, zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("real subjects per class")
    ax.set_ylabel("subject-level AUROC (test pool)")
    ax.set_title(f"worth in real subjects ({classifier})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
