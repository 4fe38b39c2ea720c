"""The diversity study and the seed replicates (``benchmarks/diversity.py``), read for the book.

``python benchmarks/diversity.py`` writes two files: ``benchmarks/results/diversity.json`` (every
lever at the demo's fixed training budget, judged by chapter 5's metrics for both groups, and the
variant its rule chose) and ``benchmarks/results/seeds.json`` (the base recipe and the chosen one
trained with several generator seeds: each metric's values across seeds). This module only reads
them -- the lever table and frontier of chapter 3 (:func:`diversity_table`, :func:`frontier`), the
seed spread of chapters 3 and 5 (:func:`seed_table`) -- so that no number of the book is typed by
hand: a new study run changes all of it. Both chapters work without the files (they say so).
It also reads ``benchmarks/results/report_time.json`` (``python benchmarks/report_time.py``: what
``make report`` costs on each machine measured) for the reproducibility appendix
(:func:`report_time_markdown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .config import project_root
from .errors import DataError
from .io import read_results_json

__all__ = [
    "DIVERSITY_FILE",
    "REPORT_TIME_FILE",
    "SEEDS_FILE",
    "SHOWN",
    "cheaper_reading",
    "chosen_variant",
    "cpu_line",
    "diversity_table",
    "find_study",
    "frontier",
    "load_study",
    "reading",
    "replicate_of",
    "report_time_markdown",
    "seed_markdown",
    "seed_table",
]

DIVERSITY_FILE = Path("benchmarks") / "results" / "diversity.json"
SEEDS_FILE = Path("benchmarks") / "results" / "seeds.json"
REPORT_TIME_FILE = Path("benchmarks") / "results" / "report_time.json"

#: The metrics of the lever table, in the rule's order: guards, then diversity.
SHOWN = (
    "fid",
    "precision",
    "coverage",
    "memorised_fraction",
    "recall",
    "density",
    "ms_ssim_diversity",
    "nn_ssim",
)

_REQUIRED = {"diversity": "variants", "seeds": "recipes"}

#: The study's levers that spend more than its budget (never chosen; they price the guards).
OVER_BUDGET_LEVERS = ("budget", "sampling, long", "width, long")


def load_study(path: str | Path, kind: str) -> dict[str, Any]:
    """A study file of ``kind`` (``"diversity"`` or ``"seeds"``), checked: a clear
    :class:`~neurodiff.errors.DataError` for a missing, unreadable or foreign file."""
    return read_results_json(
        path, f"{kind} study", "python benchmarks/diversity.py", _REQUIRED[kind]
    )


def find_study(kind: str = "diversity") -> dict[str, Any] | None:
    """The committed study file of ``kind`` under the project root, or None."""
    path = project_root() / (DIVERSITY_FILE if kind == "diversity" else SEEDS_FILE)
    return load_study(path, kind) if path.is_file() else None


def cpu_line(study: Mapping[str, Any]) -> str:
    """The machine a study ran on, e.g. ``"AMD EPYC, 2 cores (avx2, avx512f, avx512_bf16)"``."""
    cpu = study.get("cpu", {})
    if isinstance(cpu, str):
        return cpu
    flags = ", ".join(cpu.get("flags", [])) or "none of the tracked instruction sets"
    return f"{cpu.get('model', 'unknown CPU')}, {cpu.get('cores', '?')} cores ({flags})"


def _screened(study: Mapping[str, Any]) -> dict[str, dict]:
    """The screening entries (seed 0), by variant name."""
    return {k.split("@")[0]: v for k, v in study["variants"].items() if k.endswith("@0")}


def chosen_variant(study: Mapping[str, Any]) -> str | None:
    """The variant the study's rule chose (None: no variant kept the guards)."""
    return study.get("choice", {}).get("chosen")


def _cell(m: Mapping[str, Any]) -> str:
    return f"{m['value']:.3g}" + ("" if m["verdict"] == "inside" else " *")


def diversity_table(study: Mapping[str, Any]) -> pd.DataFrame:
    """One row per variant (seed 0): lever, what changes, steps in the budget, network
    evaluations per sample, each metric of :data:`SHOWN` for the controls (``*``: outside the
    real-vs-real range), the patients' per-group metrics inside their range, and the rule's mark
    (``chosen``, or ``guards`` where a guard metric fell outside). The last row: the real-vs-real
    medians."""
    choice = chosen_variant(study)
    scores = study.get("choice", {}).get("scores", {})
    rows, first = [], None
    for name, e in _screened(study).items():
        m = e["metrics"]
        first = first or m
        patients = [r for r in e.get("groups", []) if r["group"] != "control"]
        row = {
            "variant": name,
            "lever": e["lever"],
            "what changes": e["description"],
            "steps": e["steps"],
            "evaluations": e["network_evaluations"],
        }
        row.update({k: _cell(m[k]) for k in SHOWN if k in m})
        if patients:
            inside = sum(r["verdict"] == "inside" for r in patients)
            row["patients inside"] = f"{inside}/{len(patients)}"
        guards = scores.get(name, {}).get("guards_inside", True)
        if name == choice:
            row["rule"] = "chosen"
        elif name == (study.get("choice", {}).get("cost") or {}).get("variant"):
            row["rule"] = "cheapest over the budget with the guards"
        elif e["lever"] in OVER_BUDGET_LEVERS:
            row["rule"] = "over the budget" + ("" if guards else ", guard outside")
        else:
            row["rule"] = "" if guards else "guard outside"
        rows.append(row)
    if first is not None:
        real = dict.fromkeys(rows[0], "")
        real.update(variant="real vs real (median)", **{"what changes": "two groups of real"})
        real.update({k: f"{first[k]['baseline']:.3g}" for k in SHOWN if k in first})
        rows.append(real)
    return pd.DataFrame(rows, dtype=object).set_index("variant")


def frontier(study: Mapping[str, Any], x: str = "recall", y: str = "precision") -> pd.DataFrame:
    """Fidelity against coverage: one row per variant (seed 0) with metrics ``x`` and ``y`` of
    the controls and the real-vs-real range of each (``x_lo``, ``x_hi``, ``y_lo``, ``y_hi``)."""
    rows = []
    for name, e in _screened(study).items():
        mx, my = e["metrics"][x], e["metrics"][y]
        rows.append(
            {
                "variant": name,
                "lever": e["lever"],
                x: mx["value"],
                y: my["value"],
                "x_lo": mx["baseline_ci"][0],
                "x_hi": mx["baseline_ci"][1],
                "y_lo": my["baseline_ci"][0],
                "y_hi": my["baseline_ci"][1],
            }
        )
    return pd.DataFrame(rows).set_index("variant")


def seed_table(seeds: Mapping[str, Any], variant: str | None = None) -> pd.DataFrame:
    """Each control metric of ``variant`` (default: the first recipe of the file) across
    generator seeds: the values, their median and range, the real-vs-real range, and in how many
    seeds the value was inside it."""
    recipes = seeds["recipes"]
    name = variant or next(iter(recipes))
    if name not in recipes:
        raise DataError(f"the seed study has no recipe {name!r}; it has {list(recipes)}")
    rows = []
    for key, m in recipes[name]["metrics"].items():
        lo, hi = m["baseline_ci"]
        rows.append(
            {
                "metric": m["label"],
                "seeds": ", ".join(f"{v:.3g}" for v in m["values"]),
                "median [min, max]": f"{m['median']:.3g} [{m['min']:.3g}, {m['max']:.3g}]",
                "real vs real (95 %)": f"[{lo:.3g}, {hi:.3g}]",
                "inside": f"{sum(v == 'inside' for v in m['verdicts'])}/{len(m['verdicts'])}",
                "key": key,
            }
        )
    return pd.DataFrame(rows).set_index("key")


def _count(entry: Mapping[str, Any], keys: Sequence[str]) -> int:
    return sum(entry["metrics"][k]["verdict"] == "inside" for k in keys if k in entry["metrics"])


def reading(study: Mapping[str, Any]) -> str:
    """What the study found, in a few sentences generated from its file: the base recipe's
    diversity metrics inside their ranges, the chosen variant's (or that no variant kept the
    guards), and the levers that reached the most diversity at the price of a guard."""
    screened = _screened(study)
    guards, diversity = study.get("guards", []), study.get("diversity", [])
    n = len(diversity)
    base = screened.get("base")
    parts = []
    if base is not None:
        parts.append(
            f"The base recipe keeps {_count(base, guards)} of the {len(guards)} guard metrics and "
            f"{_count(base, diversity)} of the {n} diversity metrics inside their real-vs-real "
            "ranges."
        )
    choice = chosen_variant(study)
    if choice is None:
        parts.append(
            "**No variant kept every guard**, so the rule chose none, and the table and the "
            "figure show the frontier between fidelity and coverage measured in this budget."
        )
    elif choice == "base":
        parts.append("**No lever did better than the base recipe** by the rule: the demo keeps it.")
    else:
        e = screened[choice]
        parts.append(
            f"The rule chose **{choice}** ({e['description']}): {_count(e, diversity)} of the "
            f"{n} diversity metrics inside, with the guards kept."
        )
    cost = study.get("choice", {}).get("cost")
    if cost:
        parts.append(
            f"The cheapest run over the budget that keeps the guards is `{cost['variant']}` "
            f"({cost['steps']} training steps, {_tflop(screened[cost['variant']], study)} "
            f"the budget's FLOPs), with {cost['diversity_inside']} of the {n} diversity metrics "
            "inside."
        )
    elif choice is None:
        parts.append("No run over the budget kept the guards either.")
    traded = [
        name
        for name, e in screened.items()
        if base is not None
        and _count(e, diversity) > _count(base, diversity)
        and _count(e, guards) < len(guards)
    ]
    if traded:
        parts.append(
            "More diversity at the price of a guard: " + ", ".join(f"`{t}`" for t in traded) + "."
        )
    return " ".join(parts)


def _tflop(entry: Mapping[str, Any], study: Mapping[str, Any]) -> str:
    """``"<x> times"``: an entry's training FLOPs over the budget's."""
    return f"{entry['train_tflop'] / study['budget_tflop']:.1f} times"


def _recipe(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the parameters that do not change what a generator is or makes: those
    marked ``shapes=False`` (where outputs go, checkpoint intervals ...) and the interval of the
    training previews (a figure of chapter 3, drawn from their own seed)."""
    from dataclasses import fields

    from .config import STAGES

    loose = {f.name for cls in STAGES for f in fields(cls) if not f.metadata.get("shapes", True)}
    loose.add("preview_every")
    return {k: v for k, v in values.items() if k not in loose}


def replicate_of(study: Mapping[str, Any] | None, params: Mapping[str, Any]) -> str | None:
    """``"<variant>@<seed>"`` of the study's run with the recipe of ``params`` (every parameter
    that shapes the generator and its judgement equal: a report run with the demo's parameters is
    one of the study's runs, up to the machine it ran on), or None."""
    if not study:
        return None
    mine = _recipe(dict(params))
    for key, entry in study["variants"].items():
        if "params" in entry and _recipe(entry["params"]) == mine:
            return key
    return None


def cheaper_reading(seeds: Mapping[str, Any]) -> str:
    """What the seed replicates decided about the demo's recipe (``benchmarks/diversity.py``'s
    rule "cheaper, no worse"), in a sentence or two generated from ``seeds.json``."""
    final, rule = seeds.get("demo_recipe"), seeds.get("rule_recipe")
    compared = seeds.get("cheaper") or {}
    opening = ""
    if rule and seeds.get("confirmed") is False:
        lost = ", ".join(seeds.get("unconfirmed_guards", []))
        opening = (
            f"The study's pick `{rule}` kept every guard at seed 0 but **not over the seeds** "
            f"({lost} outside in the median), so it does not replace the demo's recipe before the "
            "study. "
        )
        rule = seeds.get("reference_recipe", rule)
    if not rule or not compared:
        return opening + (f"The demo trains `{final}`." if final else "")
    parts = []
    for name, c in compared.items():
        secs = c.get("seconds_ratio")
        ratio = f"{c['tflop_ratio']:.2f}x the training FLOPs" + (
            f" and {secs:.2f}x the seconds" if secs else ""
        )
        ratio += f" of `{rule}`"
        if c["no_worse"]:
            parts.append(f"`{name}` ({ratio}) is no worse over the seeds")
        else:
            lost = ", ".join(c["lost"])
            parts.append(f"`{name}` ({ratio}) loses {lost} (median over the seeds)")
    text = opening + f"Cheaper recipes against `{rule}`: " + "; ".join(parts) + ". "
    if final != rule:
        return text + (
            f"**The demo trains `{final}`**: every guard and diversity metric whose median over "
            f"the seeds is inside its real-vs-real range for `{rule}` is inside for it too, none "
            "outside for both lies further out by more than the seed spread, and it costs fewer "
            "FLOPs." + _tie_sentence(final, compared)
        )
    return text + f"The demo trains `{rule}`."


def _tie_sentence(final: str, compared: Mapping[str, Any]) -> str:
    """Names the recipes as cheap as ``final`` and no worse, which the tie-break set aside."""
    chosen = compared.get(final, {})
    tied = [
        n
        for n, c in compared.items()
        if n != final and c["no_worse"] and c["tflop_ratio"] == chosen.get("tflop_ratio")
    ]
    if not tied:
        return ""
    names = ", ".join(f"`{n}`" for n in tied)
    return (
        f" {names} costs as much and is no worse too; ties go to more metrics inside, then fewer "
        "network evaluations, then fewer changed parameters."
    )


def seed_markdown(seeds: Mapping[str, Any]) -> str:
    """The seed spread of the demo's recipe (``demo_recipe`` of ``seeds.json``, else its first)
    as a Markdown paragraph and table: :func:`seed_table` with the seeds and the CPU named."""
    name = seeds.get("demo_recipe") or next(iter(seeds["recipes"]))
    table = seed_table(seeds, name)
    lines = [
        f"Recipe `{name}`, generator seeds {seeds['recipes'][name]['seeds']}, measured on "
        f"{cpu_line(seeds)}:",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|---" * len(table.columns) + "|",
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.to_numpy()]
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"


def report_time_markdown(data: Mapping[str, Any]) -> str:
    """``make report`` on every machine measured (``benchmarks/report_time.py``; the latest run
    per CPU and profile): the time of each phase, the total against the budget, and the training
    the budget would leave on that CPU, in steps and FLOPs."""
    runs = data.get("runs") if isinstance(data, Mapping) else None
    if not isinstance(runs, list) or not all(isinstance(r, Mapping) for r in runs):
        raise DataError("a report timing file holds a list of runs under 'runs'")
    needed = ("measured", "commit", "profile", "cpu", "phases", "total_seconds", "training")
    for i, run in enumerate(runs):
        missing = [k for k in needed if k not in run]
        if missing:
            raise DataError(f"run {i} of the report timing file lacks {', '.join(missing)}")
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for run in sorted(runs, key=lambda r: str(r["measured"])):
        latest[(cpu_line(run), run["profile"])] = run
    budget = float(data.get("budget_seconds", 600))
    lines = [
        "| CPU | run | cohorts + notebooks + book | total | training: the profile's; what the "
        "budget leaves |",
        "|---|---|---|---|---|",
    ]
    for (cpu, profile), run in latest.items():
        used = run.get("cpus_available")
        if used is not None and used != run["cpu"].get("cores"):
            cpu += f", {used} of them used"
        ph, tr = run["phases"], run["training"]
        cohorts = ph.get("demo cohort", 0.0) + ph.get("pools cohort", 0.0)
        total = _minutes(run["total_seconds"])
        if run["total_seconds"] > budget:
            total = f"**{total}** (over {_minutes(budget)})"
        ten = run.get("ten_minutes")
        left = (
            f"{ten['steps']} steps ({ten['tflop']:.1f} TFLOP: "
            f"{ten['seconds_left_for_training']:.0f} s at {ten['steps_per_second']:.2f} steps/s)"
            if ten
            else "n/a"
        )
        lines.append(
            f"| {cpu} | {run['measured'][:10]}, `{run['commit'][:7]}`, `{profile}` "
            f"| {cohorts:.0f} s + {ph.get('notebooks', 0.0):.0f} s + {ph.get('book', 0.0):.0f} s "
            f"| {total} | {tr['steps']} steps ({tr['tflop']:.1f} TFLOP); {left} |"
        )
    return "\n".join(lines)
