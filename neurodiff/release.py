"""What a release ships beside the package: the trained generator and its model card.

:func:`write_generator` exports the EMA weights of the run of ``params`` as a safetensors file
(:mod:`neurodiff.weights`) and writes its model card beside it (:func:`model_card`: architecture,
recipe, training data, intended use, chapter 5's verdicts, the seed spread and how to load it).
``neurodiff run`` calls :func:`book_downloads` after the notebooks, which puts both in
``book/executed/downloads/``: chapter 3 links them with the ``{download}`` role, so the book
build copies them into the built book's ``_downloads/``, and the release workflow attaches them
to the GitHub release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import __version__, config, studies, train
from .artifacts import load_manifest, load_metrics_json
from .checkpoints import latest_checkpoint
from .config import ModelConfig, Params, SampleConfig, TrainConfig
from .errors import NeurodiffError
from .io import atomic_write_text, file_sha256, shown_path
from .model import build_model, count_parameters
from .weights import export_ema

__all__ = [
    "CARD_NAME",
    "DOWNLOADS",
    "SEEDS_RESULTS",
    "WEIGHTS_NAME",
    "book_downloads",
    "card_snippet",
    "model_card",
    "seed_spread",
    "write_generator",
]

WEIGHTS_NAME = "neurodiff-generator.safetensors"
CARD_NAME = "MODEL_CARD.md"
#: The folder of the executed chapters that holds the book's downloads.
DOWNLOADS = "downloads"
#: The seed spread of the demo recipe (several generators trained with other seeds), when
#: measured; its format is read by :func:`seed_spread` alone.
SEEDS_RESULTS = "benchmarks/results/seeds.json"


def seed_spread(path: str | Path) -> str:
    """The seed spread of the demo's recipe, as a Markdown table, from ``seeds.json`` (written by
    ``benchmarks/diversity.py``; read by :mod:`neurodiff.studies`): each metric's values across
    generator seeds, their median and range, and the real-vs-real range."""
    path = Path(path)
    if not path.is_file():
        return "Not measured in this checkout (no `benchmarks/results/seeds.json`)."
    return studies.seed_markdown(studies.load_study(path, "seeds"))


def _training_data(params: Params) -> str:
    """What the generator was trained on: the simulated cohort, or the user's own."""
    cohort = params.path(params.cohort)
    try:
        desc = json.loads((cohort / "dataset_description.json").read_text())
    except (OSError, ValueError):
        desc = {}
    try:
        n = load_manifest(params)["n"]
        used = f" It saw the training split only: {n['train_images']} images of " + (
            f"{n['train_subjects']} subjects."
        )
    except (NeurodiffError, KeyError, TypeError):
        used = ""
    if isinstance(desc, dict) and desc.get("Simulated") is True:
        sim = desc.get("SimulationParameters", {})
        return (
            "**Simulated, no patient data.** The cohort written by `neurodiff demo-data` "
            f"({sim.get('subjects', '?')} healthy controls and {sim.get('patients', '?')} "
            f"subjects with a simulated bvFTD-like atrophy pattern at {sim.get('sites', '?')} "
            "simulated sites), derived from the MNI152 template that ships with nilearn: "
            "per-subject anatomy, per-site contrast, bias field, noise, voxel size and "
            "orientation are simulated. No scan of a person was used." + used
        )
    return (
        f"The cohort `{shown_path(cohort)}`, which is not the simulated demo cohort. Before "
        "sharing these weights, check that the licence and the consent of that data allow "
        "publishing a model trained on it." + used
    )


def _model_lines(cfg: ModelConfig, params: Params) -> list[str]:
    n_params = count_parameters(build_model(cfg))
    kind = (
        f"class-conditional on the groups {', '.join(f'`{g}`' for g in cfg.groups)} (MONAI "
        "class embedding, plus a 'no class' label for classifier-free guidance)"
        if cfg.groups
        else "unconditional"
    )
    tcfg = params.stage(TrainConfig)
    return [
        "## Architecture",
        "",
        f"- MONAI `DiffusionModelUNet`, {cfg.spatial_dims}D, one input channel at "
        f"{' x '.join([str(cfg.image_size)] * cfg.spatial_dims)} voxels, {n_params / 1e6:.2f} M "
        "parameters;",
        f"- channels per level {list(cfg.channels)}, self-attention per level "
        f"{list(cfg.attention_levels)}, {cfg.num_res_blocks} residual block(s) per level, "
        f"GroupNorm with {cfg.norm_num_groups} groups;",
        f"- {kind}.",
        "",
        "## Recipe",
        "",
        f"- {train.describe_recipe(params)};",
        f"- {tcfg.optimizer} at learning rate {tcfg.lr:g} ({tcfg.lr_schedule} after "
        f"{tcfg.warmup_steps} warm-up steps), batch {tcfg.batch_size} x {tcfg.grad_accum}, "
        f"{tcfg.train_steps} steps; the weights are the exponential moving average "
        f"(decay {tcfg.ema_decay:g}) used for sampling.",
    ]


def _verdicts(params: Params) -> str:
    from .metrics import results_markdown

    try:
        metrics = load_metrics_json(params)
    except NeurodiffError:
        metrics = None
    if metrics is None:
        return "Chapter 5 has not measured this model in this checkout."
    text = results_markdown(metrics)
    if metrics.get("params_hash") != params.hash():
        text += "\n*These metrics were computed with other parameters than these weights.*\n"
    if params.groups:
        text += f"\n*The realism metrics compare the group `{params.groups[0]}`.*\n"
    return text


def card_snippet(card: str) -> str:
    """The Python block of a model card: how to load and sample it."""
    return card.split("```python\n", 1)[1].split("```", 1)[0]


def _load_lines(cfg: ModelConfig, weights: Path, n: int = 8) -> list[str]:
    group = f', group="{cfg.groups[0]}"' if cfg.groups else ""
    shape = ", ".join(map(str, (n, 1) + (cfg.image_size,) * cfg.spatial_dims))
    return [
        "## Load it and sample",
        "",
        "With neurodiff installed (the wheel of the release, or `pip install -e .` in a clone):",
        "",
        "```python",
        "from neurodiff.sample import load_generator",
        f'generator = load_generator("{weights.name}")',
        f"images = generator.sample({n}{group})  # ({shape}) in [-1, 1]",
        "```",
        "",
        "`generator.sample` uses the sampler the book used (recorded in the file) unless told "
        "otherwise (`sampler=`, `steps=`, `seed=`, `guidance_scale=` ...). From the command "
        f"line, `neurodiff sample --weights {weights.name} --out samples/` writes a synthetic "
        "cohort as NIfTI, without training. Loading checks every tensor's name and shape "
        "against the network the file's header describes and refuses a file that does not fit.",
    ]


def model_card(params: Params, weights: Path) -> str:
    """The model card of the weights file ``weights`` exported from the run of ``params``."""
    cfg = params.stage(ModelConfig)
    sample = params.stage(SampleConfig)
    root = config.project_root()
    lines = [
        f"# Model card: neurodiff generator (profile `{params.profile}`)",
        "",
        "A diffusion model of T1-weighted brain MRI trained by the neurodiff study (a "
        "reproduction of Basile et al., *A Preliminary Study on Augmenting Neuroimaging Data "
        "using a Diffusion Model*, CEUR Workshop Proceedings Vol-3880, 2024).",
        "",
        "| | |",
        "|---|---|",
        f"| file | `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB, SHA-256 "
        f"`{file_sha256(weights)}` |",
        f"| neurodiff version | {__version__} |",
        f"| parameters hash | `{params.hash()}` |",
        f"| sampled in the book with | {sample.sampler}, {sample.steps} steps |",
        "",
        *_model_lines(cfg, params),
        "",
        "## Training data",
        "",
        _training_data(params),
        "",
        "## Intended use",
        "",
        "Teaching and method development: how diffusion models are trained and sampled, how "
        "synthetic images are judged, and how augmentation is tested. **Not for clinical use**: "
        "not for diagnosis, prognosis or any decision about a person, and not a stand-in for "
        "real patients' scans. It was trained on a small simulated cohort at low resolution; "
        "what it generates says nothing about real anatomy or disease.",
        "",
        "## How it was judged (chapter 5)",
        "",
        _verdicts(params),
        "",
        "## Seed spread",
        "",
        seed_spread(root / SEEDS_RESULTS),
        "",
        *_load_lines(cfg, weights),
        "",
    ]
    return "\n".join(lines)


def write_generator(params: Params, folder: str | Path) -> tuple[Path, Path] | None:
    """Export the EMA weights of the latest checkpoint of ``params`` to
    ``<folder>/neurodiff-generator.safetensors`` with the model card ``<folder>/MODEL_CARD.md``;
    ``(weights, card)``, or None when the run has no checkpoint yet (nothing is written)."""
    from .artifacts import train_dir

    if latest_checkpoint(train_dir(params)) is None:
        return None
    folder = Path(folder)
    try:
        target: dict[str, Any] | None = load_manifest(params)["target"]
    except (NeurodiffError, KeyError):
        target = None
    sampling = params.stage(SampleConfig).to_dict()
    weights = export_ema(params, folder / WEIGHTS_NAME, sampling=sampling, target=target)
    card = atomic_write_text(folder / CARD_NAME, model_card(params, weights))
    return weights, card


def book_downloads(params: Params, executed_dir: str | Path) -> tuple[Path, Path] | None:
    """The generator and its card in the book's download folder (``<executed>/downloads/``),
    which chapter 3 links; files of an earlier run stay when this one has no checkpoint."""
    return write_generator(params, Path(executed_dir) / DOWNLOADS)
