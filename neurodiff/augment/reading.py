"""The experiment's answer in words, built from its numbers (chapter 6 and the Discussion show
these sentences; nothing in them is typed by hand).

Every function takes a result with ``tables`` and ``info`` -- :class:`.stage.AugmentResult`, or
the committed results file read by :func:`from_results_file`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from ..errors import DataError
from ..io import read_results_json
from ..registry import AUGMENT

__all__ = [
    "answer",
    "from_results_file",
    "gains_frame",
    "leak_sentence",
    "memorisation_sentence",
    "primary_sentence",
    "status_sentence",
    "worth_sentence",
]


def _ci(lo: float, hi: float, digits: int = 3) -> str:
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def verdict(gain: float, lo: float, hi: float) -> str:
    """A gain in words from its 95 % interval."""
    if lo > 0:
        return "helped (interval above zero)"
    if hi < 0:
        return "hurt (interval below zero)"
    if gain > 0:
        return "higher on average, but the interval includes zero"
    return "no gain on average, and the interval includes zero"


def from_results_file(path: str | Path) -> Any:
    """The committed results of ``benchmarks/augment_fair.py`` as a result object (``tables``,
    ``info``, ``primary``) for the functions of this module."""
    path = Path(path)
    data = read_results_json(path, "results", "python benchmarks/augment_fair.py")
    if data.get("format") != AUGMENT.format:
        raise DataError(
            f"{path} has format {data.get('format')!r}; this version reads {AUGMENT.format!r}: "
            "run `python benchmarks/augment_fair.py` again"
        )
    tables = {k: pd.DataFrame(v) for k, v in data["tables"].items()}
    return SimpleNamespace(
        tables=tables, info=data["info"], primary=data["info"]["primary"], raw=data
    )


def status_sentence(result: Any) -> str:
    """Where and how the committed results were made, whether the run is complete, and whether
    the primary interval reached its target half-width (else how many draws would)."""
    raw = getattr(result, "raw", None)
    if raw is None:
        return ""
    done = {int(k): v for k, v in result.info["draws"].items()}
    planned = {int(k): v for k, v in raw["draws_planned"].items()}
    hours = sum(s["seconds"] for s in raw["sittings"]) / 3600
    cpus = sorted({s["cpu"] for s in raw["sittings"]})
    p = result.info["primary"]
    state = (
        "complete"
        if raw["complete"]
        else f"**partial**: {sum(done.values())} of {sum(planned.values())} planned draws"
    )
    target = raw["target_half_width"]
    needed = p.get("draws_for_half_width_0.05")
    if p["half_width"] <= target:
        reach = f"reaches the target half-width of {target}"
    elif needed is None:
        reach = (
            f"is wider than the target of {target}, and the test subjects' share of its spread "
            "alone exceeds it: more test subjects, not more draws, would narrow it"
        )
    else:
        reach = (
            f"is wider than the target of {target}: about {needed} draws at n = "
            f"{result.info['primary_n']} would narrow it enough (its spread split into the "
            "draws' share, which more draws shrink, and the test subjects', which they do not)"
        )
    strip = raw["parameters"].get("skull_strip")
    pipeline = (
        f"preprocessed with skull_strip = {strip}"
        if strip is not None
        else "preprocessed before skull stripping existed (whole simulated heads, intensities "
        "scaled over the whole image; the pools' heads had no neck): chapter 2's pipeline has "
        "changed since, and the full run has not been repeated with it"
    )
    return (
        f"Run {state} ({', '.join(f'n = {n}: {d}' for n, d in sorted(done.items()))} draws), "
        f"{len(raw['sittings'])} sitting(s), {hours:.1f} h on {' / '.join(cpus)}, with "
        f"`{raw['command']}`, {pipeline}; the primary endpoint's interval {reach}."
    )


def primary_sentence(result: Any) -> str:
    """The primary endpoint's value, interval and verdict."""
    p = result.info["primary"]
    return (
        f"ΔAUROC = {p['gain']:+.3f}, 95 % interval {_ci(p['ci_low'], p['ci_high'])} (half-width "
        f"{p['half_width']:.3f}, {p['draws']} draws at n = {result.info['primary_n']}): "
        f"synthetic images {verdict(p['gain'], p['ci_low'], p['ci_high'])}"
    )


def gains_frame(result: Any, pool: str = "test", classifier: str = "logistic") -> pd.DataFrame:
    """Gains over A (and the leak, and C over A_H) as a readable table: one row per comparison,
    one column per n, ``gain [95 % CI]``, starred when its p-value (Holm-adjusted, the primary's
    as it is; the E rows are not tested) is below 0.05."""
    g = result.tables["gains"]
    g = g[(g["pool"] == pool) & (g["classifier"] == classifier)].copy()
    g["cell"] = [
        f"{r.gain:+.3f} {_ci(r.ci_low, r.ci_high)}"
        + (" *" if (r.p if r.primary else r.p_holm) < 0.05 else "")
        for r in g.itertuples()
    ]
    return g.pivot(index="comparison", columns="n", values="cell")


def _gain(result: Any, comparison: str, n: int, pool="test", classifier="logistic") -> pd.Series:
    g = result.tables["gains"]
    rows = g[
        (g["pool"] == pool)
        & (g["classifier"] == classifier)
        & (g["n"] == n)
        & (g["comparison"] == comparison)
    ]
    return rows.iloc[0]


def _gains_by_n(result: Any, comparison: str, pool: str = "test") -> str:
    """``n = 2: +0.1 [lo, hi]; n = 4: ...`` of one comparison (logistic regression)."""
    parts = []
    for n in result.info["n"]:
        r = _gain(result, comparison, n, pool=pool)
        parts.append(f"n = {n}: {r['gain']:+.3f} {_ci(r['ci_low'], r['ci_high'])}")
    return "; ".join(parts)


def leak_sentence(result: Any) -> str:
    """C_pool minus the draw's own C at every n: the leak of a generator that saw the pool."""
    top = f"C{max(result.info['synthetic_per_class'])}"
    return (
        f"The leak (C_pool, a generator fine-tuned on the whole training pool, minus {top}, the "
        "draw's own generator; logistic regression, test pool): "
        + _gains_by_n(result, f"C_pool - {top}")
        + "."
    )


def worth_sentence(result: Any, n: int, arm: str | None = None, classifier="logistic") -> str:
    """What ``arm`` (default the primary C arm) at ``n`` is worth in real subjects per class."""
    arm = arm or f"C{max(result.info['synthetic_per_class'])}"
    w = result.tables["worth"]
    row = w[
        (w["pool"] == "test") & (w["classifier"] == classifier) & (w["n"] == n) & (w["arm"] == arm)
    ].iloc[0]
    value = row["worth (real subjects per class)"]
    if row["how"] == "at least":
        what = f"at least {value:.1f} real subjects per class (beyond the fitted curve)"
    elif value <= 0:
        what = f"{value:.1f} real subjects per class: no gain over the real subjects alone"
    else:
        what = f"about {value:.1f} additional real subjects per class"
    return (
        f"at n = {n}, {arm} is worth {what} (95 % interval {row['ci_low']:.1f} to "
        f"{row['ci_high']:.1f})"
    )


def memorisation_sentence(result: Any) -> str:
    """How many of the per-draw generators' samples the audit flagged as copies."""
    m = result.tables["memorisation"]
    return (
        f"The memorisation audit of every draw's samples against that draw's own training images "
        f"flagged {int(m['flagged'].sum())} of {int(m['samples'].sum())} samples "
        f"({m['flagged'].sum() / max(m['samples'].sum(), 1):.1%}); the largest SSIM of a sample "
        f"to its nearest training image was {m['max_ssim_to_training'].max():.2f}, against a "
        f"median of {m['median_ssim_unseen'].median():.2f} for unseen real images."
    )


def answer(result: Any) -> str:
    """Markdown paragraphs: the primary endpoint, then every other comparison (Holm-adjusted),
    the leak, worth in subjects, the other learner and the out-of-distribution site."""
    info = result.info
    top = f"C{max(info['synthetic_per_class'])}"
    lines = [f"**Primary endpoint**: {primary_sentence(result)}."]
    t = result.tables["table"]
    for clf in ("logistic", "cnn"):
        parts = []
        for n in info["n"]:
            a = t[(t["pool"] == "test") & (t["classifier"] == clf) & (t["n"] == n)]
            by = a.set_index("arm")["auroc"]
            r = _gain(result, f"{top} - A", n, classifier=clf)
            p_text = "primary" if r["primary"] else f"Holm p {r['p_holm']:.2g}"
            parts.append(
                f"n = {n}: A {by['A']:.3f}, {top} {by[top]:.3f} ({r['gain']:+.3f} "
                f"{_ci(r['ci_low'], r['ci_high'])}, {p_text}), B {by['B']:.3f}, "
                f"A_H {by['A_H']:.3f}, D {by['D']:.3f}"
            )
        name = "Tuned logistic regression" if clf == "logistic" else "Small CNN"
        lines.append(f"**{name}**, test pool AUROC: " + "; ".join(parts) + ".")
    lines.append(
        f"**Against the generator's own healthy data**: {top} minus A_H (the draw's real subjects "
        "plus, as real images, the healthy cohort the generator was pretrained on; logistic "
        "regression, test pool): "
        + _gains_by_n(result, f"{top} - A_H")
        + ". A gain of the synthetic images over A "
        "that A_H exceeds came from the healthy data, which a study could give its classifier "
        "directly."
    )
    lines.append(leak_sentence(result))
    lines.append(
        "**Worth in real subjects** (fitted real learning curve): "
        + "; ".join(worth_sentence(result, n) for n in info["n"])
        + "."
    )
    lines.append(
        "**Out-of-distribution site** (a protocol no training pool has), gain of "
        f"{top} over A: " + _gains_by_n(result, f"{top} - A", pool="ood") + "."
    )
    lines.append(memorisation_sentence(result))
    return "\n\n".join(lines)
