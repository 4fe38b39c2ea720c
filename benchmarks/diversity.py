"""The diversity study: which lever makes the synthetic set as diverse as the real one, in the
demo's fixed training budget -- and how much do the numbers move with the seed?

Every variant is the demo recipe (the ``demo`` profile: rectified flow, logit-normal timesteps,
L2, a 32-64-128 UNet without attention, class-conditional on control/patient, Heun-10) with one
thing changed, run through the pipeline itself -- ``neurodiff.train.run``, ``sample.run``,
``metrics.run`` and ``metrics.by_group`` -- so each variant is an ordinary run of the demo
profile keyed by its parameters: an interrupted study resumes where it stopped
(a finished run is reused, a training continues from its last checkpoint), and the results file
is rewritten after every variant.

**The budget is training FLOPs, not seconds**: :data:`BUDGET_STEPS` optimiser steps of the demo's
UNet at batch 8 (forward + backward FLOPs counted by :func:`neurodiff.model.estimate_train_flops`,
:data:`BUDGET_TFLOP`); a variant with another UNet width gets the steps that spend the same FLOPs.
The seconds each run took are recorded beside it, with the CPU, but the outcome does not depend on
the machine's load or speed. The budget is what fits ``make report`` in 10 minutes on the slower of
the two 2-core CPUs the report is built on (an AMD EPYC without AMX, ~0.2 s per step).

**The levers** (:data:`VARIANTS`): training -- EMA decay and warm-up, the logit-normal timestep
distribution's location and scale, anatomy-keeping augmentation (``train_augment=mild``), the
UNet's width at equal FLOPs; sampling, on the base model -- stochastic sampling along the flow
(``churn``), the number of Heun steps, the classifier-free guidance scale (below and above 1).
Every variant is judged by chapter 5's metrics for **both groups**: the controls by
``metrics.run`` (every metric, with its real-vs-real range from 100 subject-level redraws), the
patients by ``metrics.by_group`` (the per-group metrics, their range from redraws of the patients).

**The rule, fixed before the study ran** (:func:`choose`):

1. *guards*: the controls' FID, precision, coverage and memorised fraction inside their
   real-vs-real ranges (the fidelity already reached must not be given up);
2. among the variants that keep the guards, the most of the controls' *diversity* metrics --
   recall, density, MS-SSIM within set, mean SSIM to the nearest training image -- inside;
3. ties: the smallest total distance outside the ranges of those four (each in units of its
   range's width); then the most per-group metrics inside for the patients; then the fewer
   network evaluations per sample.

Only variants in the budget can be chosen. Beside them the study measures what more training
buys (:data:`OVER_BUDGET`: the base recipe at 1000, 1400 and 1929 steps -- the demo's budget
before this study -- the sampling levers on the 1929-step model, and the narrower UNets
16-32-64 and 24-48-96 for 1929 steps); the results name the one with the fewest training FLOPs
that keeps the guards (``cost``), which is what the guards would cost when no variant in the
budget keeps them.

Screening is at seed 0 (``generator_seed`` 0: the split, the subjects and the metrics' ruler
are the same for every run). Then the base recipe and the recipe the demo trains after the
study (:func:`demo_recipe`: the choice; else the cheapest over-budget variant that keeps the
guards; else the demo's recipe before the study, ``steps_1929``) are trained with
``--seeds`` (default 0, 1, 2; ``generator_seed`` changes only the generator's initial weights,
data order, noise and samples) and ``benchmarks/results/seeds.json`` records every metric's
spread across seeds beside its real-vs-real range; the choice is confirmed when the median over
seeds keeps the guards.

**Confirmed over seeds** (:func:`reference_recipe`): a pick whose median over seeds lets a guard
out is not confirmed, and the demo's recipe before the study (``steps_1929``) stays the reference.

**Cheaper, no worse** (:func:`cheaper_recipe`, for the demo's running time): a replicated recipe
with fewer training FLOPs replaces the reference as the demo's recipe when, over the same seeds,
the median of every rule metric (guards and diversity) that is inside its real-vs-real range for
the reference is inside for it too; the cheapest such recipe wins (at equal FLOPs, the one that
changes fewer parameters). ``seeds.json`` records the
study's pick (``rule_recipe``), whether the seeds confirm it, the reference, each comparison
(``cheaper``) and the result (``demo_recipe``). ``--seeds-of`` names the recipes replicated,
e.g. ``--seeds-of steps_1929,unet_24_1929,churn_0.1_unet_24_1929``.

Output: ``benchmarks/results/diversity.json`` (per variant: lever, overrides, steps, TFLOPs,
seconds, every control metric and the patients' rows; the choice and its reasons; the CPU and its
instruction-set flags) and ``benchmarks/results/seeds.json``. Chapters 3 and 5 read them
(:mod:`neurodiff.studies`).

Examples::

    python benchmarks/diversity.py                   # screen every variant, then the seeds
    python benchmarks/diversity.py --variants base,churn_0.3 --no-seeds
    python benchmarks/diversity.py --list
    python benchmarks/diversity.py --toy --variants base,churn_0.3 --seeds 0,1 \\
        -p cohort=<folder> -p derived_dir=<folder> --out /tmp/d.json --seeds-out /tmp/s.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from neurodiff import config, metrics, sample, train
from neurodiff.config import ModelConfig, Params
from neurodiff.device import cpu_description
from neurodiff.io import atomic_write_json
from neurodiff.model import estimate_train_flops
from neurodiff.notebook import prepare
from neurodiff.sampling import network_evaluations

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: The budget: this many optimiser steps of the base UNet (32-64-128, the demo's when the study
#: ran) at batch 8.
BUDGET_STEPS = 700
#: The base recipe's UNet, pinned here: the study's variants do not move when the demo profile
#: adopts another width after it (norm_num_groups is the parameter's default for this width).
BASE_CHANNELS = (32, 64, 128)
BASE_GROUPS = 32


def _narrow(channels: list[int]) -> dict:
    groups = math.gcd(32, *channels)
    return {"channels": channels, "norm_num_groups": groups}


#: name -> (lever, what changes, overrides of the base). ``sampling`` levers reuse the base model.
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "base": ("base", "the demo recipe in the budget", {}),
    "ema_warmup": ("EMA", "EMA warm-up (decay 0.995)", {"ema_warmup": True}),
    "ema_0.999": (
        "EMA",
        "EMA decay 0.999 with warm-up (the warm-up's (1 + n) / (10 + n) stays under 0.995 for "
        "1790 updates: within the budget this is ema_warmup)",
        {"ema_decay": 0.999, "ema_warmup": True},
    ),
    "t_noisy": ("timesteps", "logit-normal t, mean +0.5 (noisier)", {"logit_mean": 0.5}),
    "t_clean": ("timesteps", "logit-normal t, mean -0.5 (cleaner)", {"logit_mean": -0.5}),
    "t_wide": ("timesteps", "logit-normal t, scale 1.6 (wider)", {"logit_std": 1.6}),
    "augment": ("augmentation", "mild elastic + contrast augmentation", {"train_augment": "mild"}),
    "unet_24": ("width", "UNet 24-48-96 (more steps)", _narrow([24, 48, 96])),
    "unet_48": ("width", "UNet 48-96-192 (fewer steps)", _narrow([48, 96, 192])),
    "churn_0.1": ("sampling", "churn 0.1 (stochastic flow sampling)", {"churn": 0.1}),
    "churn_0.3": ("sampling", "churn 0.3", {"churn": 0.3}),
    "churn_0.6": ("sampling", "churn 0.6", {"churn": 0.6}),
    "heun_5": ("sampling", "Heun, 5 steps", {"steps": 5}),
    "heun_20": ("sampling", "Heun, 20 steps", {"steps": 20}),
    "guidance_0.7": ("sampling", "guidance scale 0.7", {"guidance_scale": 0.7}),
    "guidance_1.5": ("sampling", "guidance scale 1.5", {"guidance_scale": 1.5}),
}

#: What more training buys: the base recipe over the budget, up to the demo's steps before this
#: study (:data:`LONG_STEPS`), and the sampling levers on that longest model. Never chosen by the
#: rule (over the budget); they show what reaching the ranges would cost.
LONG_STEPS = 1929
OVER_BUDGET: dict[str, tuple[str, str, dict]] = {
    **{
        f"steps_{n}": ("budget", f"the base recipe, {n} steps", {"train_steps": n})
        for n in (1000, 1400, LONG_STEPS)
    },
    **{
        f"{name}_{LONG_STEPS}": (
            "sampling, long",
            f"{what}, on the {LONG_STEPS}-step model",
            {**overrides, "train_steps": LONG_STEPS},
        )
        for name, (lever, what, overrides) in VARIANTS.items()
        if lever == "sampling"
    },
    # narrower UNets for the demo's steps: fewer FLOPs per step than the base, more steps than
    # the budget gives them -- what the guards cost in seconds on a CPU where width is cheap
    **{
        f"unet_{c}_{LONG_STEPS}": (
            "width, long",
            f"UNet {c}-{2 * c}-{4 * c}, {LONG_STEPS} steps",
            {**_narrow([c, 2 * c, 4 * c]), "train_steps": LONG_STEPS},
        )
        for c in (16, 24)
    },
    # stochastic sampling on the 24-48-96 model (the coverage lever of the 1929-step model)
    **{
        f"{name}_unet_24_{LONG_STEPS}": (
            "sampling, long",
            f"{what}, on the 24-48-96 {LONG_STEPS}-step model",
            {**overrides, **_narrow([24, 48, 96]), "train_steps": LONG_STEPS},
        )
        for name, (lever, what, overrides) in VARIANTS.items()
        if name.startswith("churn_")
    },
}
# the budget's variants first, then what more training buys (base first: the sampling levers and
# the seeds reuse its model)
VARIANTS = {
    "base": VARIANTS["base"],
    **{k: v for k, v in OVER_BUDGET.items() if k.startswith("steps_")},
    **{k: v for k, v in OVER_BUDGET.items() if not k.startswith("steps_")},
    **{k: v for k, v in VARIANTS.items() if k != "base"},
}

#: The rule's metric sets (keys of metrics.json).
GUARDS = ("fid", "precision", "coverage", "memorised_fraction")
DIVERSITY = ("recall", "density", "ms_ssim_diversity", "nn_ssim")

#: ``--toy``: the smoke profile's sizes and counts (the study's code in seconds, for a test).
TOY = {
    "image_size": 16,
    "target_spacing": 4.0,
    "register": "none",
    "skull_strip": "off",
    "slices_per_subject": 2,
    "channels": [16, 32],
    "attention_levels": [False, False],
    "norm_num_groups": 8,
    "timesteps": 50,
    "batch_size": 4,
    "warmup_steps": 2,
    "steps": 3,
    "n_samples": 8,
    "sample_batch_size": 8,
    "n_bootstrap": 20,
    "n_permutations": 20,
    "n_redraws": 10,
    "msssim_pairs": 10,
    "nn_k": 2,
}
TOY_STEPS = 6

OVERRIDES: dict = {}
TOY_MODE = [False]
log = logging.getLogger("diversity")


def budget_flops(toy: bool = False) -> int:
    """Training FLOPs of the budget: :data:`BUDGET_STEPS` steps of the base UNet."""
    params = variant_params("base", toy=toy, steps=1)
    return estimate_train_flops(params.stage(ModelConfig), params.batch_size) * (
        TOY_STEPS if toy else BUDGET_STEPS
    )


def variant_params(name: str, seed: int = 0, toy: bool = False, steps: int | None = None) -> Params:
    """The demo profile with variant ``name``'s changes, the budget's steps (computed from the
    FLOPs unless ``steps`` is given), ``generator_seed`` and :data:`OVERRIDES` (runs of the demo
    profile, beside the report's own: keyed by their parameters, they share its preprocessing)."""
    base = {"channels": list(BASE_CHANNELS), "norm_num_groups": BASE_GROUPS}
    extra = {
        **base,
        **VARIANTS[name][2],
        **OVERRIDES,
        "generator_seed": seed,
        "preview_every": 0,
    }
    if steps is None and "train_steps" in VARIANTS[name][2]:  # over the budget, as named
        steps = VARIANTS[name][2]["train_steps"] if not toy else 2 * TOY_STEPS
    if steps is None:
        one = config.resolve("demo", {**extra, "train_steps": 1})
        per_step = estimate_train_flops(one.stage(ModelConfig), one.batch_size)
        steps = max(1, round(budget_flops(toy) / per_step))
    return config.resolve("demo", {**extra, "train_steps": steps})


def _rows(frame) -> list[dict]:
    return json.loads(frame.reset_index().to_json(orient="records"))


def run_variant(name: str, seed: int) -> dict[str, Any]:
    """Train (or reuse), sample and judge one variant at one seed: its entry of the results."""
    params = variant_params(name, seed, toy=TOY_MODE[0])
    prepare(params, "03")
    trained = train.run(params)
    drawn = sample.run(params)
    result = metrics.run(params)
    groups = _rows(metrics.by_group(params)) if params.groups else []
    mcfg = params.stage(ModelConfig)
    flops = estimate_train_flops(mcfg, params.batch_size) * params.train_steps
    entry = {
        "lever": VARIANTS[name][0],
        "description": VARIANTS[name][1],
        "overrides": VARIANTS[name][2],
        "seed": seed,
        "steps": params.train_steps,
        "train_tflop": flops / 1e12,
        "train_seconds": trained.seconds if trained.steps_run else None,
        "images_per_second": trained.images_per_second if trained.steps_run else None,
        "network_evaluations": network_evaluations(mcfg, params.sampler, params.steps),
        "sample_seconds": drawn.seconds,
        "metrics": {k: v.to_dict() for k, v in result.metrics.items()},
        "groups": groups,
        "params_hash": params.hash(),
        "params": params.to_dict(),
    }
    log.info("%s (seed %d): %s", name, seed, result.verdict_line())
    return entry


def _beyond(value: float, ci: list[float]) -> float:
    """How far ``value`` lies outside the range ``ci``, in units of its width (0 inside)."""
    lo, hi = ci
    return max(lo - value, value - hi, 0.0) / max(hi - lo, 1e-12)


def _outside(m: dict) -> float:
    """How far a metric lies outside its real-vs-real range, in units of the range's width."""
    return 0.0 if m["verdict"] == "inside" else _beyond(m["value"], m["baseline_ci"])


def score(entry: dict) -> dict[str, Any]:
    """The rule's numbers for one variant (see the module docstring)."""
    m = entry["metrics"]
    patients = [r for r in entry.get("groups", []) if r.get("group") != "control"]
    return {
        "guards_inside": all(m[k]["verdict"] == "inside" for k in GUARDS if k in m),
        "diversity_inside": sum(m[k]["verdict"] == "inside" for k in DIVERSITY if k in m),
        "diversity_outside": sum(_outside(m[k]) for k in DIVERSITY if k in m),
        "patients_inside": sum(r["verdict"] == "inside" for r in patients),
        "network_evaluations": entry["network_evaluations"],
    }


def choose(variants: dict[str, dict]) -> dict[str, Any]:
    """The variant the rule picks among ``variants`` (name -> entry), with every score."""
    scores = {n: score(e) for n, e in variants.items()}
    eligible = [n for n, s in scores.items() if s["guards_inside"] and n not in OVER_BUDGET]
    cost = _cost(variants, scores)
    if not eligible:
        return {
            "chosen": None,
            "reason": "no variant in the budget keeps the guards",
            "cost": cost,
            "scores": scores,
        }

    def key(n: str):
        s = scores[n]
        return (
            -s["diversity_inside"],
            round(s["diversity_outside"], 6),
            -s["patients_inside"],
            s["network_evaluations"],
        )

    chosen = min(eligible, key=key)
    return {"chosen": chosen, "eligible": eligible, "cost": cost, "scores": scores}


def _cost(variants: dict[str, dict], scores: dict[str, dict]) -> dict[str, Any] | None:
    """What reaching the guards costs when the budget does not: the over-budget variant that
    keeps them with the fewest training FLOPs (then the most diversity inside), or None."""
    over = [n for n in variants if n in OVER_BUDGET and scores[n]["guards_inside"]]
    if not over:
        return None
    best = min(over, key=lambda n: (variants[n]["train_tflop"], -scores[n]["diversity_inside"]))
    return {"variant": best, "steps": variants[best]["steps"], **scores[best]}


def seed_summary(name: str, entries: list[dict]) -> dict[str, Any]:
    """Every control metric of ``entries`` (one per seed): values, median, range, beside the
    real-vs-real range of the first seed (the same subjects and ruler for every seed)."""
    out: dict[str, Any] = {}
    for key, first in entries[0]["metrics"].items():
        values = [e["metrics"][key]["value"] for e in entries]
        out[key] = {
            "label": first["label"],
            "values": values,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "baseline_ci": first["baseline_ci"],
            "verdicts": [e["metrics"][key]["verdict"] for e in entries],
        }
    patients = {}
    for e in entries:
        for row in e.get("groups", []):
            cell = patients.setdefault(row["group"], {}).setdefault(row["metric"], [])
            cell.append(row)
    return {
        "variant": name,
        "seeds": [e["seed"] for e in entries],
        "metrics": out,
        "groups": {
            g: {
                k: {
                    "values": [r["synthetic vs real"] for r in rows],
                    "baseline_ci": rows[0]["real ci"],
                    "verdicts": [r.get("verdict") for r in rows],
                }
                for k, rows in metrics_.items()
            }
            for g, metrics_ in patients.items()
        },
    }


def _header(args, argv) -> dict[str, Any]:
    return {
        "cpu": cpu_description(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_steps": TOY_STEPS if args.toy else BUDGET_STEPS,
        "budget_tflop": budget_flops(args.toy) / 1e12,
        "base_channels": list(BASE_CHANNELS),
        "guards": list(GUARDS),
        "diversity": list(DIVERSITY),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/diversity.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def _done(entry: dict | None, name: str, seed: int) -> bool:
    """Whether ``entry`` (from an earlier, interrupted study) is variant ``name`` at ``seed`` with
    today's parameters: then it is kept, with the seconds it took then."""
    return (
        entry is not None
        and entry.get("params_hash") == variant_params(name, seed, toy=TOY_MODE[0]).hash()
    )


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--seeds", default="0,1,2", help="generator seeds of base and the choice")
    ap.add_argument("--no-seeds", action="store_true", help="screen only")
    ap.add_argument(
        "--seeds-of",
        default="",
        help="replicate these variants (comma-separated; default: base and the demo's recipe)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "diversity.json")
    ap.add_argument("--seeds-out", type=Path, default=RESULTS / "seeds.json")
    ap.add_argument("--list", action="store_true", help="print the variants and exit")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--toy", action="store_true", help="the smoke profile's sizes (a test)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.list:
        for n, (lever, what, overrides) in VARIANTS.items():
            print(f"{n:14s} {lever:12s} {what}  {overrides}")
        return 0
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    OVERRIDES.clear()
    OVERRIDES.update(TOY if args.toy else {})
    TOY_MODE[0] = args.toy
    OVERRIDES.update(config.parse_override(o) for o in args.overrides)
    for n in names:
        variant_params(n, toy=args.toy)  # every variant's parameters checked before any work
    study = _load(args.out)
    study.update(_header(args, argv))
    found = study.setdefault("variants", {})
    for key, entry in found.items():  # kept entries: today's words, the parameters recorded
        name, seed = key.split("@")
        if name in VARIANTS:
            entry["lever"], entry["description"] = VARIANTS[name][:2]
            if "params" not in entry:
                entry["params"] = variant_params(name, int(seed), toy=args.toy).to_dict()
    for n in names:
        key = f"{n}@0"
        if not _done(found.get(key), n, 0):
            found[key] = run_variant(n, 0)
        study["choice"] = choose({k.split("@")[0]: v for k, v in found.items() if k.endswith("@0")})
        atomic_write_json(args.out, study)
    if args.no_seeds:
        print(f"wrote {args.out}")
        return 0
    demo = demo_recipe(study["choice"], found)
    replicated = [n.strip() for n in args.seeds_of.split(",") if n.strip()] or list(
        dict.fromkeys(["base", demo])
    )
    old = _load(args.seeds_out).get("recipes", {})
    summaries = {k: v for k, v in old.items() if k not in replicated}
    for n in replicated:
        for s in seeds:
            if not _done(found.get(f"{n}@{s}"), n, s):
                found[f"{n}@{s}"] = run_variant(n, s)
            atomic_write_json(args.out, study)
        summaries[n] = seed_summary(n, [found[f"{n}@{s}"] for s in seeds])
        unkept = guards_lost(summaries[demo]) if demo in summaries else []
        incumbent = reference_recipe(demo, unkept, summaries)
        final, compared = cheaper_recipe(incumbent, summaries, found)
        atomic_write_json(
            args.seeds_out,
            {
                **_header(args, argv),
                "demo_recipe": final,
                "rule_recipe": demo,
                "confirmed": demo in summaries and not unkept,
                "unconfirmed_guards": unkept,
                "reference_recipe": incumbent,
                "cheaper": compared,
                "recipes": summaries,
            },
        )
    print(f"wrote {args.out} and {args.seeds_out}")
    return 0


def guards_lost(summary: dict[str, Any]) -> list[str]:
    """The guards whose median over seeds is outside its real-vs-real range (seed summary)."""
    return [
        k for k in GUARDS if k in summary["metrics"] and not _median_inside(summary["metrics"][k])
    ]


def reference_recipe(pick: str, unkept: list[str], summaries: dict[str, dict]) -> str:
    """The recipe the cheaper ones are held against: the study's ``pick`` when the seeds confirm
    it (or it is the demo's recipe before the study); else that recipe, ``steps_<LONG_STEPS>``
    (which then stays the demo's when it was not replicated: nothing is compared with it). A pick
    made on seed 0 alone does not replace the demo's recipe."""
    before = f"steps_{LONG_STEPS}"
    return pick if not unkept or pick == before else before


def _median_inside(m: dict[str, Any]) -> bool:
    return _beyond(m["median"], m["baseline_ci"]) == 0.0


def no_worse(candidate: dict[str, Any], incumbent: dict[str, Any]) -> list[str]:
    """The rule's metrics (guards, then diversity) on which ``candidate`` is worse than
    ``incumbent`` over the seeds (seed summaries): a median inside its real-vs-real range for the
    incumbent and outside for the candidate; or, outside for both, the candidate's median further
    from the range than the incumbent's by more than the incumbent's own spread over seeds (a
    difference smaller than one recipe's seed-to-seed spread is not a difference). None: the
    candidate is no worse by the rule's own measures."""
    lost = []
    for k in (*GUARDS, *DIVERSITY):
        a, b = incumbent["metrics"].get(k), candidate["metrics"].get(k)
        if a is None or b is None:
            continue
        if _median_inside(a):
            worse = not _median_inside(b)
        else:
            lo, hi = a["baseline_ci"]
            spread = (a["max"] - a["min"]) / max(hi - lo, 1e-12)  # in the same units
            worse = _beyond(b["median"], b["baseline_ci"]) > _beyond(a["median"], [lo, hi]) + spread
        if worse:
            lost.append(k)
    return lost


def _inside_count(summary: dict[str, Any]) -> int:
    return sum(_median_inside(m) for k, m in summary["metrics"].items() if k in GUARDS + DIVERSITY)


def cheaper_recipe(
    incumbent: str, summaries: dict[str, dict], found: dict[str, dict]
) -> tuple[str, dict[str, Any]]:
    """The recipe the demo trains, and why: among the replicated recipes with fewer training
    FLOPs than ``incumbent`` (:func:`reference_recipe`'s), the cheapest that is :func:`no_worse`
    over the seeds (ties: more rule metrics inside in the median, then fewer network evaluations
    per sample, then fewer changed parameters); the incumbent when none is (or when it was not
    replicated). Each comparison records the ratio of FLOPs and, where both trained, of seconds."""
    tflop = {n: found[f"{n}@0"]["train_tflop"] for n in summaries if f"{n}@0" in found}
    if incumbent not in summaries or incumbent not in tflop:
        return incumbent, {}
    seconds = {n: found[f"{n}@0"].get("train_seconds") for n in tflop}
    compared = {}
    for n in summaries:
        if n != incumbent and n in tflop and tflop[n] < tflop[incumbent]:
            lost = no_worse(summaries[n], summaries[incumbent])
            compared[n] = {
                "tflop": tflop[n],
                "tflop_ratio": tflop[n] / tflop[incumbent],
                "seconds_ratio": (
                    seconds[n] / seconds[incumbent] if seconds[n] and seconds[incumbent] else None
                ),
                "no_worse": not lost,
                "lost": lost,
            }
    ok = [n for n, c in compared.items() if c["no_worse"]]

    def key(n: str) -> tuple[float, int, int, int]:
        entry = found[f"{n}@0"]
        return (
            tflop[n],
            -_inside_count(summaries[n]),
            entry.get("network_evaluations", 0),
            len(entry.get("overrides", {})),
        )

    return (min(ok, key=key) if ok else incumbent), compared


def demo_recipe(choice: dict[str, Any], found: dict[str, dict]) -> str:
    """The recipe the demo trains after the study: the rule's choice; else the cheapest run over
    the budget that keeps the guards; else (nothing keeps them) the demo's recipe before the study
    (``steps_1929``) when it was run, else ``base``."""
    if choice.get("chosen"):
        return choice["chosen"]
    if choice.get("cost"):
        return choice["cost"]["variant"]
    longest = f"steps_{LONG_STEPS}"
    return longest if f"{longest}@0" in found else "base"


if __name__ == "__main__":
    raise SystemExit(main())
