"""The recipe study's results (``benchmarks/results/recipes.json``), read for chapter 3.

``python benchmarks/recipes.py`` trains each candidate recipe for the same CPU budget and judges
it with stage 5's metrics against the real-vs-real range; it writes one JSON file. This module
only reads that file: the ablation table of chapter 3 (:func:`recipe_table`), the recipe chosen
by the study's rule (:func:`best_recipe`) and the denoising-error curves
(:func:`recipe_curves`). Nothing here is typed by hand: a new study run changes all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import project_root
from ..io import read_results_json

__all__ = [
    "RECIPES_FILE",
    "best_recipe",
    "describe_recipe",
    "find_recipe_study",
    "load_recipe_study",
    "recipe_curves",
    "recipe_table",
]

#: Where ``benchmarks/recipes.py`` writes its results (relative to the project root).
RECIPES_FILE = Path("benchmarks") / "results" / "recipes.json"

#: The metrics of the table, in order (keys of ``metrics.json``).
_SHOWN = ("fid", "mmd_rbf", "precision", "recall", "density", "coverage")


def load_recipe_study(path: str | Path | None = None) -> dict[str, Any]:
    """The study's JSON (default :data:`RECIPES_FILE` under the project root), checked."""
    path = Path(path) if path is not None else project_root() / RECIPES_FILE
    return read_results_json(path, "recipe study", "python benchmarks/recipes.py", "recipes")


def _inside(metrics: Mapping[str, Any]) -> int:
    return sum(1 for m in metrics.values() if m.get("verdict") == "inside")


def _fid_excess(metrics: Mapping[str, Any]) -> float:
    fid = metrics["fid"]
    return fid["value"] / fid["baseline"] if fid["baseline"] else float("inf")


def best_recipe(study: Mapping[str, Any]) -> str:
    """The study's winner: most metrics inside the real-vs-real range, then the lowest FID
    relative to its real-vs-real median."""
    recipes = study["recipes"]
    return min(
        recipes,
        key=lambda n: (-_inside(recipes[n]["metrics"]), _fid_excess(recipes[n]["metrics"])),
    )


def recipe_table(study: Mapping[str, Any]) -> pd.DataFrame:
    """One row per recipe: what changes, steps and speed in the budget, sampling time, the set
    metrics (value, with ``*`` when outside the real-vs-real range; ``fid real``: the median FID
    of real vs real at the recipe's image size) and the count inside. The last row gives the
    real-vs-real medians at the first recipe's image size."""
    rows = []
    for name, r in study["recipes"].items():
        m = r["metrics"]
        row = {
            "recipe": name,
            "what changes": r["description"],
            "steps": r["steps"],
            "images/s": round(r["images_per_second"], 1),
            "sampler": r["sampler"],
            "sampling s": round(r["sample_seconds"], 1),
        }
        for key in _SHOWN:
            mark = "" if m[key]["verdict"] == "inside" else " *"
            row[key] = f"{m[key]['value']:.3g}{mark}"
            if key == "fid":
                row["fid real"] = f"{m[key]['baseline']:.3g}"
        row["inside range"] = f"{_inside(m)}/{len(m)}"
        rows.append(row)
    real = dict.fromkeys(rows[0], "") if rows else {}
    first_recipe = next(iter(study["recipes"].values()))
    size = first_recipe.get("image_size")
    label = f"real vs real (median{f', {size} px' if size else ''})"
    real.update(recipe=label, **{"what changes": "two groups of real subjects"})
    first = first_recipe["metrics"]
    real.update({k: f"{first[k]['baseline']:.3g}" for k in _SHOWN})
    rows.append(real)
    return pd.DataFrame(rows, dtype=object).set_index("recipe")


def recipe_curves(study: Mapping[str, Any], names: list[str] | None = None) -> dict:
    """``{recipe: DataFrame(t, snr, log10_snr, mse_x0, mse_identity)}`` of the study's
    denoising-error curves (recipes without one are left out)."""
    recipes = study["recipes"]
    names = list(recipes) if names is None else names
    return {n: pd.DataFrame(recipes[n]["denoising"]) for n in names if "denoising" in recipes[n]}


def find_recipe_study(name: str = "recipes") -> dict[str, Any] | None:
    """``benchmarks/results/<name>.json`` under the project root (default: the recipe study,
    :data:`RECIPES_FILE`; ``"longer"``: ``benchmarks/longer_run.py``'s run), or None."""
    path = project_root() / RECIPES_FILE.with_name(f"{name}.json")
    return load_recipe_study(path) if path.is_file() else None


def describe_recipe(params: Any) -> str:
    """The training recipe of ``params`` in words, e.g. ``"rectified flow (logit-normal t), L2
    loss, EMA warm-up; euler-20 sampling"``."""
    if params.process == "rflow":
        what = f"rectified flow ({params.timestep_sampling.replace('_', '-')} t)"
    else:
        what = (
            f"DDPM ({params.prediction_type.replace('_', '-')}, {params.schedule} schedule, "
            f"T = {params.timesteps}, {params.timestep_sampling.replace('_', '-')} t)"
        )
    parts = [what, f"{params.loss.upper()} loss"]
    if params.loss_weighting == "min_snr":
        parts.append(f"min-SNR-{params.snr_gamma:g} weighting")
    if params.ema_warmup:
        parts.append("EMA warm-up")
    groups = list(params.get("groups", ()))
    if groups:
        parts.append(
            f"conditioned on {' / '.join(groups)} (class dropped for "
            f"{params.get('label_dropout', 0):.0%} of the images)"
        )
    steps = params.timesteps if params.sampler == "ddpm" else params.steps
    return ", ".join(parts) + f"; {params.sampler}-{steps} sampling"
