"""The experiment's answer in words, built from its numbers (chapter 6 and the Discussion show
these sentences; nothing in them is typed by hand)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .arms import Arm

__all__ = ["answer", "best_c", "conditioning_reading", "gains_frame", "worth_sentence"]


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def best_c(table: pd.DataFrame, n: int) -> pd.Series:
    """The C arm with the largest gain over A at ``n``."""
    is_c = table["arm"].map(lambda name: Arm.parse(name).kind == "C")
    rows = table[(table["n"] == n) & is_c]
    return rows.loc[rows["gain"].idxmax()]


def _verdict(gain: float, lo: float, hi: float) -> str:
    if lo > 0:
        return "helped"
    if hi < 0:
        return "hurt"
    if gain > 0:
        return "higher on average, but the interval includes zero"
    return "no gain on average, and the interval includes zero"


def worth_sentence(result: Any, n: int, arm: Arm | str | None = None) -> str:
    """ "At n = 2 ... worth about N real subjects per class [CI]" for one C arm (an
    :class:`.arms.Arm` or its name; default: the best at ``n``)."""
    name = str(arm) if arm else best_c(result.table, n)["arm"]
    row = result.worth[(result.worth["n"] == n) & (result.worth["arm"] == name)].iloc[0]
    value = row["worth (real subjects per class)"]
    m = Arm.parse(name).synthetic
    if row["how"] == "none":
        what = "worth no additional real subject (no better than the real subjects alone)"
    elif row["how"] == "at least":
        what = f"worth at least {value:.1f} additional real subjects per class (beyond the curve)"
    else:
        what = f"worth about {value:.1f} additional real subjects per class"
    return (
        f"with {n} real subjects per class, {m} synthetic images per class were {what} "
        f"(95 % interval {row['ci_low']:.1f} to {row['ci_high']:.1f})"
    )


def answer(result: Any) -> str:
    """Markdown paragraphs: whether and when synthetic images helped, by how much, against
    classical augmentation and the oracle, and what synthetic data alone reach."""
    t = result.table
    ns = sorted(t["n"].unique())
    lines = []
    helped, other = [], []
    for n in ns:
        c = best_c(t, n)
        (helped if c["gain_low"] > 0 else other).append(n)
    a = t[t["arm"] == "A"].set_index("n")["auroc"]
    parts = []
    for n in ns:
        c = best_c(t, n)
        m = Arm.parse(c["arm"]).synthetic
        parts.append(
            f"n = {n}: A {a[n]:.3f}, best C ({m} synthetic per class) "
            f"{c['auroc']:.3f}, gain {c['gain']:+.3f} {_ci(c['gain_low'], c['gain_high'])} -- "
            f"{_verdict(c['gain'], c['gain_low'], c['gain_high'])}"
        )
    lines.append(
        "**Real + synthetic (C) against real only (A)**, subject-level AUROC on the held-out "
        "test subjects, mean over draws, gain with its paired-bootstrap 95 % interval: "
        + "; ".join(parts)
        + "."
    )
    tested = result.info.get("test_subjects_per_group", {})
    if tested:
        lines.append(
            f"The intervals are as wide as the test set allows: {sum(tested.values())} held-out "
            "subjects ("
            + ", ".join(f"{v} {g}s" for g, v in tested.items())
            + "), resampled in every bootstrap replicate together with the draws."
        )
    if helped:
        lines.append(
            f"Synthetic images helped, with an interval above zero, at n = "
            f"{', '.join(map(str, helped))} real subjects per class"
            + (f", not clearly at n = {', '.join(map(str, other))}." if other else ".")
        )
    else:
        lines.append(
            "At no n did the interval of the best synthetic arm's gain lie above zero: in this "
            "run, synthetic images did not clearly help."
        )
    for arm, label in (("B", "Classical augmentation (B)"), ("E", "New real subjects (E)")):
        rows = t[t["arm"] == arm].set_index("n")
        if rows.empty:
            continue
        parts = [
            f"n = {n}: {rows.loc[n, 'gain']:+.3f} "
            f"{_ci(rows.loc[n, 'gain_low'], rows.loc[n, 'gain_high'])}"
            for n in ns
        ]
        lines.append(f"{label}, gain over A: " + "; ".join(parts) + ".")
    d = t[t["arm"] == "D"].iloc[0]
    lines.append(
        f"**Synthetic only (D)**: AUROC {d['auroc']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"
        f" -- a classifier that never saw a real image, against A's {a[ns[0]]:.3f} with "
        f"{ns[0]} and {a[ns[-1]]:.3f} with {ns[-1]} real subjects per class."
    )
    worth = [worth_sentence(result, n) for n in ns]
    lines.append("**Worth in real subjects** (read off the A/E curve): " + "; ".join(worth) + ".")
    return "\n\n".join(lines)


def gains_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The gains over A as a readable table: one row per n, one column per arm."""
    t = table[table["arm"] != "A"].copy()
    t["gain [95% CI]"] = [
        "" if not np.isfinite(r.gain) else f"{r.gain:+.3f} {_ci(r.gain_low, r.gain_high)}"
        for r in t.itertuples()
    ]
    return t.pivot(index="n", columns="arm", values="gain [95% CI]")


def conditioning_reading(result: Any) -> str:
    """The two conditioning checks in words: how often the real-data classifier calls synthetic
    images by their own group (beside real test images), and the synthetic patient - control
    shift of the atrophy proxy beside the real one."""
    check = result.classifier_check.set_index(["images", "group"])["labelled as own group"]
    control, patient = result.info["groups"]
    shift = result.atrophy[result.atrophy["level"] == "all levels"].set_index("images")
    real, syn = shift.loc["real"], shift.loc["synthetic"]
    same_sign = np.sign(real["mean"]) == np.sign(syn["mean"]) and syn["mean"] != 0
    if not same_sign:
        size = "the opposite sign, or none: the synthetic groups do not differ as the real ones do"
    else:
        share = syn["mean"] / real["mean"]
        excluded = (
            "its interval excludes zero"
            if syn["ci_low"] > 0 or syn["ci_high"] < 0
            else ("its interval includes zero")
        )
        size = f"the same sign and {share:.0%} of the real shift ({excluded})"
    return (
        f"A classifier trained on real images calls {check[('synthetic', patient)]:.0%} of the "
        f"synthetic {patient}s {patient}s and {check[('synthetic', control)]:.0%} of the "
        f"synthetic {control}s {control}s, against {check[('real test', patient)]:.0%} and "
        f"{check[('real test', control)]:.0%} of the real test images. The atrophy proxy's "
        f"{patient} - {control} shift is {real['mean']:+.3f} [{real['ci_low']:+.3f}, "
        f"{real['ci_high']:+.3f}] in real images and {syn['mean']:+.3f} [{syn['ci_low']:+.3f}, "
        f"{syn['ci_high']:+.3f}] in synthetic ones: {size}."
    )
