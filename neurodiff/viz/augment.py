"""Figures of chapter 6: learning curves per arm, gains over real-only, conditioning checks.

Each function takes the tables of :func:`neurodiff.augment.run` (its ``AugmentResult`` fields).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._base import figure

__all__ = [
    "ARM_COLOURS",
    "plot_atrophy",
    "plot_classifier_check",
    "plot_gains",
    "plot_learning_curves",
]

#: One colour per arm family (the C arms share shades of one colour).
ARM_COLOURS = {"A": "0.2", "B": "tab:orange", "C": "tab:blue", "D": "tab:purple", "E": "tab:green"}


def _kind(arm: str) -> str:
    """The kind of an arm named in the tables (``"C64"`` -> ``"C"``): the first letter of
    :attr:`neurodiff.augment.Arm.name`. The figures sit a floor below the stage, so they read the
    names rather than import :class:`~neurodiff.augment.Arm`; they never need a C arm's count."""
    return arm[:1]


def _colour(arm: str, c_arms: list[str]) -> tuple | str:
    if _kind(arm) == "C":
        import matplotlib

        shades = np.linspace(0.45, 0.95, max(len(c_arms), 1))
        return matplotlib.colormaps["Blues"](shades[c_arms.index(arm)])
    return ARM_COLOURS[arm]


def plot_learning_curves(table: pd.DataFrame, descriptions: dict[str, str]) -> Figure:
    """AUROC against real subjects per class (log axis), one line per arm with its 95 % band;
    arm D (no real image) as a horizontal band."""
    fig = figure(figsize=(7.5, 4.4), layout="constrained")
    ax = fig.add_subplot()
    arms = list(dict.fromkeys(table["arm"]))
    c_arms = [a for a in arms if _kind(a) == "C"]
    for arm in arms:
        t = table[table["arm"] == arm].sort_values("n")
        colour = _colour(arm, c_arms)
        label = f"{arm}: {descriptions.get(arm, arm)}"
        if arm == "D":
            r = t.iloc[0]
            ax.axhspan(r["ci_low"], r["ci_high"], color=colour, alpha=0.12)
            ax.axhline(r["auroc"], color=colour, ls=":", label=label)
            continue
        ax.plot(t["n"], t["auroc"], marker="o", color=colour, label=label)
        ax.fill_between(t["n"], t["ci_low"], t["ci_high"], color=colour, alpha=0.12)
    ax.set_xscale("log", base=2)
    ns = sorted(table["n"].unique())
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.axhline(0.5, color="0.7", lw=0.8)
    ax.set(
        xlabel="real training subjects per class (n)",
        ylabel="AUROC on held-out real subjects",
        ylim=(min(0.4, float(table["ci_low"].min()) - 0.02), 1.01),
    )
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return fig


def plot_gains(table: pd.DataFrame) -> Figure:
    """Gain in AUROC over real-only (A) at every n, with paired-bootstrap 95 % intervals: the C
    arms beside classical augmentation (B) and new subjects (E)."""
    t = table[~table["arm"].isin(["A", "D"])]
    arms = list(dict.fromkeys(t["arm"]))
    c_arms = [a for a in arms if _kind(a) == "C"]
    ns = sorted(t["n"].unique())
    fig = figure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        r = t[t["arm"] == arm].set_index("n").loc[ns]
        x = np.arange(len(ns)) + (i - (len(arms) - 1) / 2) * width
        err = np.vstack([r["gain"] - r["gain_low"], r["gain_high"] - r["gain"]])
        ax.errorbar(
            x, r["gain"], yerr=err, fmt="o", color=_colour(arm, c_arms), capsize=3, label=arm
        )
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xticks(np.arange(len(ns)), [f"n = {n}" for n in ns])
    ax.set(ylabel="AUROC gain over real only (A)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(frameon=False, fontsize=8, ncols=len(arms))
    return fig


def plot_classifier_check(check: pd.DataFrame) -> Figure:
    """Share of images a real-data classifier labels as their own group: real test images and
    synthetic images of each group."""
    fig = figure(figsize=(6.0, 3.2), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{r.images}\n{r.group}" for r in check.itertuples()]
    colours = ["0.55" if r.images == "real test" else "tab:blue" for r in check.itertuples()]
    ax.bar(np.arange(len(check)), check["labelled as own group"], color=colours)
    for i, v in enumerate(check["labelled as own group"]):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=9)
    ax.set_xticks(np.arange(len(check)), labels)
    ax.set(ylim=(0, 1.1), ylabel="labelled as its own group")
    ax.axhline(0.5, color="0.7", lw=0.8)
    return fig


def plot_atrophy(atrophy: pd.DataFrame) -> Figure:
    """The atrophy proxy (dark central pixels) by slice level, per group, real and synthetic."""
    t = atrophy[atrophy["level"] != "all levels"].copy()
    t["level"] = t["level"].astype(int)
    fig = figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(t["group"]))
    colours = dict(zip(groups, ["tab:blue", "tab:red", "tab:green"], strict=False))
    for (source, group), g in t.groupby(["images", "group"], sort=False):
        g = g.sort_values("level")
        ax.plot(
            g["level"],
            g["mean"],
            marker="o" if source == "real" else "s",
            ls="-" if source == "real" else "--",
            color=colours[group],
            label=f"{source} {group}",
        )
    ax.set(xlabel="axial slice level (voxel index)", ylabel="share of dark central pixels")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    return fig
