"""The recipe study: which training recipe gives the most realistic brains in a fixed CPU budget?

Every candidate recipe is trained on the demo data (the training split of the ``demo`` profile
at its image size) for the same wall-clock budget, **in one process, in turns**: recipe A trains
for a slice of a few seconds, then B, then C ..., round after round, so that a change of machine
load hits all of them alike. How many optimiser steps fit a recipe's budget is measured first
(interleaved pilot steps, median seconds per step); the recipe's learning-rate schedule then spans
exactly those steps, and the seconds it actually took are recorded beside them.

Then each recipe's EMA model draws the synthetic set of the demo report (``n_samples`` images with
its sampler) and is judged by stage 5's metrics against the held-out test split, each beside the
real-vs-real range from subject-level redraws (:func:`neurodiff.metrics.evaluate`).

The candidates are variations of the demo report's recipe up to this study (the authors'
objective: epsilon prediction, L1 loss, cosine schedule, T = 250, on a 32-64-128 UNet at 48^2):
the objective (v-prediction, min-SNR-5 weighting, rectified flow with logit-normal timesteps and
Euler sampling), and, on rectified flow, the EMA warm-up, narrower/attention-free/deeper UNets,
32^2 images and a larger batch with a matching learning rate. ``--list`` prints them.

Output: ``benchmarks/results/recipes.json`` (per recipe: parameters, steps, seconds, images/s,
sampling seconds, every metric with its real-vs-real range and verdict; the machine's CPU model).
Chapter 3 reads its table from there (:func:`neurodiff.train.recipe_table`). The trained models
stay in ``data/derived/recipes/<recipe>/`` for follow-ups (``--evaluate-only`` re-judges them).

Examples::

    python benchmarks/recipes.py                      # all recipes, 240 s each (about an hour)
    python benchmarks/recipes.py --budget 30 --recipes authors,rflow --out /tmp/r.json
    python benchmarks/recipes.py --evaluate-only      # re-sample and re-judge the trained models

``-p key=value`` changes every recipe (after its own changes), e.g. where the cohort and the
derived data are. ``--toy`` runs the same code at toy size (:data:`TOY`: the smoke profile's
16^2 images, 2-level UNet, T = 50, 5 sampler steps, 8 samples and small metric counts; the
recipes' differences in size are overridden), in seconds with a budget of a second or two; with
``--models`` and ``--out`` elsewhere it leaves ``data/derived/recipes`` and
``benchmarks/results`` alone (``tests/test_benchmarks.py``)::

    python benchmarks/recipes.py --toy --budget 1 --slice 0.5 --recipes authors,rflow \
        -p cohort=<folder> -p derived_dir=<folder> --models /tmp/models --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from neurodiff import artifacts, config
from neurodiff.config import ModelConfig, Params, SampleConfig, TrainConfig
from neurodiff.io import atomic_write_json
from neurodiff.notebook import prepare
from neurodiff.train.data import as_dataset
from neurodiff.train.helpers import Dist
from neurodiff.train.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "recipes.json"

_RFLOW = {
    "process": "rflow",
    "loss": "l2",
    "timestep_sampling": "logit_normal",
    "sampler": "euler",
    "steps": 20,
}

#: name -> (what changes, parameter overrides of the demo profile as it was before this study).
RECIPES: dict[str, tuple[str, dict]] = {
    "authors": (
        "the authors' objective: epsilon, L1, cosine, T = 250; DDIM-50",
        {
            "process": "ddpm",
            "prediction_type": "epsilon",
            "loss": "l1",
            "schedule": "cosine",
            "sampler": "ddim",
            "steps": 50,
        },
    ),
    "v_pred": (
        "v-prediction (else as authors)",
        {"process": "ddpm", "prediction_type": "v_prediction", "sampler": "ddim", "steps": 50},
    ),
    "min_snr": (
        "epsilon, L2 with min-SNR-5 weighting (else as authors)",
        {
            "process": "ddpm",
            "loss": "l2",
            "loss_weighting": "min_snr",
            "sampler": "ddim",
            "steps": 50,
        },
    ),
    "rflow": ("rectified flow, logit-normal t, L2; Euler-20", dict(_RFLOW)),
    "rflow_ema_warmup": ("rflow + EMA warm-up", {**_RFLOW, "ema_warmup": True}),
    "rflow_narrow": (
        "rflow, UNet 16-32-64 (quarter of the FLOPs: more steps)",
        {**_RFLOW, "channels": [16, 32, 64], "num_head_channels": 16, "norm_num_groups": 16},
    ),
    "rflow_no_attention": (
        "rflow, no self-attention",
        {**_RFLOW, "attention_levels": [False, False, False]},
    ),
    "rflow_deeper": ("rflow, 2 residual blocks per level", {**_RFLOW, "num_res_blocks": 2}),
    "rflow_32px": ("rflow at 32^2 (more steps)", {**_RFLOW, "image_size": 32}),
    "rflow_batch32": (
        "rflow, batch 32 with lr 2e-3 (fewer, larger steps)",
        {**_RFLOW, "batch_size": 32, "lr": 2e-3},
    ),
}

#: The demo recipe before this study (its parameters' old defaults), the base of every candidate.
#: The study compares unconditional recipes on the healthy controls (as it was run, before the
#: demo cohort had patients and the demo model a class embedding).
STUDY_GROUP = "control"

BASE = {
    "groups": [],
    "process": "ddpm",
    "prediction_type": "epsilon",
    "loss": "l1",
    "schedule": "cosine",
    "timesteps": 250,
    "timestep_sampling": "uniform",
    "loss_weighting": "none",
    "ema_warmup": False,
    "channels": [32, 64, 128],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 32,
    "norm_num_groups": 32,
    "image_size": 48,
    "batch_size": 8,
    "lr": 1e-3,
    "sampler": "ddim",
    "steps": 50,
}

#: ``--toy``: every recipe at the smoke profile's sizes and counts, for a test of this script.
TOY = {
    "image_size": 16,
    "target_spacing": 4.0,
    "register": "none",
    "slices_per_subject": 2,
    "channels": [16, 32],
    "attention_levels": [False, True],
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "num_head_channels": 16,
    "timesteps": 50,
    "batch_size": 4,
    "steps": 5,
    "n_samples": 8,
    "sample_batch_size": 8,
    "n_bootstrap": 20,
    "n_permutations": 20,
    "n_redraws": 10,
    "msssim_pairs": 10,
    "nn_k": 2,
}

#: Changes to every recipe, after its own (``-p`` and ``--toy`` of the command line).
OVERRIDES: dict = {}

log = logging.getLogger("recipes")


def cpu_model() -> str:
    """The CPU model as ``lscpu`` names it (times are only comparable on the same one)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def recipe_params(name: str, **extra) -> Params:
    """The demo profile with the study's base recipe, recipe ``name``'s changes and
    :data:`OVERRIDES` (validated: a sampler that does not fit the recipe's process is refused)."""
    overrides = {**BASE, **RECIPES[name][1], "preview_every": 0, **OVERRIDES, **extra}
    return config.resolve("demo", overrides)


def _data(params: Params) -> np.ndarray:
    """The training split of ``params`` (preprocessed first if missing)."""
    prepare(params, "03")
    images, _ = artifacts.load_split(params, "train", group=STUDY_GROUP)
    return np.asarray(images, dtype=np.float32)


def _trainer(params: Params, images: np.ndarray, out: Path) -> Trainer:
    mcfg, tcfg = params.stage(ModelConfig), params.stage(TrainConfig)
    out.mkdir(parents=True, exist_ok=True)
    return Trainer(
        params, mcfg, tcfg, as_dataset(images, mcfg), out, Dist(0, 1, False), torch.device("cpu")
    )


def pilot(
    names: list[str], data: dict, out_root: Path, rounds: int = 3, steps: int = 4
) -> dict[str, float]:
    """Median seconds per optimiser step of each recipe, interleaved (after one warm-up step);
    the pilot runs write under ``out_root/_pilot``."""
    gens, times = {}, {n: [] for n in names}
    for n in names:
        params = recipe_params(n, train_steps=10_000, checkpoint_every=10_000)
        gens[n] = _trainer(params, data[n], out_root / "_pilot" / n).iterate()
        next(gens[n])  # warm-up
    for _ in range(rounds):
        for n in names:
            t0 = time.perf_counter()
            for _ in range(steps):
                next(gens[n])
            times[n].append((time.perf_counter() - t0) / steps)
    return {n: statistics.median(v) for n, v in times.items()}


def train_all(names: list[str], budget: float, slice_s: float, out_root: Path) -> dict:
    """Train every recipe for ``budget`` seconds' worth of steps, in turns of ``slice_s``."""
    data = {n: _data(recipe_params(n)) for n in names}
    per_step = pilot(names, data, out_root)
    state = {}
    for n in names:
        steps = max(1, int(budget / per_step[n]))
        params = recipe_params(n, train_steps=steps, checkpoint_every=steps, resume=False)
        trainer = _trainer(params, data[n], out_root / n)
        state[n] = {
            "params": params,
            "trainer": trainer,
            "gen": trainer.iterate(),
            "steps": steps,
            "seconds": 0.0,
            "done": False,
        }
        log.info("%s: %.3f s/step in the pilot -> %d steps", n, per_step[n], steps)
    order = list(state)
    while not all(s["done"] for s in state.values()):
        # rotate who goes first: the first slice after another model's can run slower
        order = order[1:] + order[:1]
        for s in (state[n] for n in order):
            if s["done"]:
                continue
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < slice_s:
                try:
                    next(s["gen"])
                except StopIteration:
                    s["done"] = True
                    break
            s["seconds"] += time.perf_counter() - t0
        log.info(
            "round: %s",
            ", ".join(f"{n} {len(s['trainer'].rows)}/{s['steps']}" for n, s in state.items()),
        )
    results = {}
    for n, s in state.items():
        params, trainer = s["params"], s["trainer"]
        batch = params.batch_size * params.grad_accum
        results[n] = {
            "description": RECIPES[n][0],
            "overrides": RECIPES[n][1],
            "image_size": params.image_size,
            "pilot_seconds_per_step": per_step[n],
            "steps": s["steps"],
            "train_seconds": s["seconds"],
            "images_per_second": s["steps"] * batch / s["seconds"],
            "final_loss": trainer.rows[-1]["loss"] if trainer.rows else None,
            "parameters": trainer.n_params,
        }
        atomic_write_json(out_root / n / "study.json", results[n])
    return results


def evaluate_all(names: list[str], out_root: Path, trained: dict) -> dict:
    """Sample each recipe's synthetic set and judge it (stage 5's metrics, real-vs-real ranges)."""
    from neurodiff.intensity import to_unit_range
    from neurodiff.metrics import evaluate
    from neurodiff.model import load_ema_model
    from neurodiff.sample.stage import synthesize
    from neurodiff.train import denoising_error

    results = {}
    for n in names:
        info = trained.get(n) or json.loads((out_root / n / "study.json").read_text())
        params = recipe_params(n, train_steps=info["steps"])
        scfg, mcfg = params.stage(SampleConfig), params.stage(ModelConfig)
        model, _, _ = load_ema_model(out_root / n, "cpu")
        t0 = time.perf_counter()
        synthetic = synthesize(model, mcfg, scfg)
        sample_seconds = time.perf_counter() - t0
        np.save(out_root / n / "synthetic.npy", synthetic.numpy())
        test, test_index = artifacts.load_split(params, "test", group=STUDY_GROUP)
        train, train_index = artifacts.load_split(params, "train", group=STUDY_GROUP)
        result = evaluate(
            to_unit_range(np.asarray(test, dtype=np.float32)),
            to_unit_range(synthetic.numpy()),
            to_unit_range(np.asarray(train, dtype=np.float32)),
            n_bootstrap=params.n_bootstrap,
            n_permutations=params.n_permutations,
            msssim_pairs=params.msssim_pairs,
            nn_k=params.nn_k,
            seed=params.seed,
            real_subjects=test_index["subject"].to_numpy(),
            train_subjects=train_index["subject"].to_numpy(),
            n_redraws=params.n_redraws,
        )
        curve = denoising_error(model, mcfg, np.asarray(test, dtype=np.float32), seed=params.seed)
        results[n] = {
            **info,
            "image_size": params.image_size,
            "denoising": curve.to_dict(orient="list"),
            "sampler": f"{scfg.sampler}-{scfg.steps}",
            "sample_seconds": sample_seconds,
            "n_samples": scfg.n_samples,
            "metrics": {k: v.to_dict() for k, v in result.metrics.items()},
        }
        log.info("%s: %s", n, result.verdict_line())
    return results


def _command(args, argv) -> str:
    """The command(s) that made the results: with ``--evaluate-only``, the training run before."""
    this = "python benchmarks/recipes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.evaluate_only:
        return this
    return (
        f"python benchmarks/recipes.py --budget {args.budget:g} --slice {args.slice:g} "
        f"--train-only, then {this}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=240.0, help="seconds of training per recipe")
    ap.add_argument("--slice", type=float, default=10.0, help="seconds per turn")
    ap.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--models", type=Path, default=ROOT / "data/derived/recipes")
    ap.add_argument("--evaluate-only", action="store_true")
    ap.add_argument("--train-only", action="store_true", help="train, judge later")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--toy", action="store_true", help="every recipe at toy size (TOY), a test")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.list:
        for n, (what, overrides) in RECIPES.items():
            print(f"{n:20s} {what}\n{'':20s} {overrides}")
        return 0
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        ap.error(f"unknown recipes {unknown}; known: {list(RECIPES)}")
    OVERRIDES.clear()
    OVERRIDES.update(TOY if args.toy else {})
    OVERRIDES.update(config.parse_override(o) for o in args.overrides)
    for n in names:
        recipe_params(n)  # every recipe's parameters checked before any training
    torch.set_num_threads(torch.get_num_threads())
    trained = {} if args.evaluate_only else train_all(names, args.budget, args.slice, args.models)
    if args.train_only:
        return 0
    results = evaluate_all(names, args.models, trained)
    atomic_write_json(
        args.out,
        {
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "budget_seconds": args.budget,
            "slice_seconds": args.slice,
            "date": time.strftime("%Y-%m-%d"),
            "command": _command(args, argv),
            "recipes": results,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
