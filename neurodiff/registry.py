"""The stage registry: every pipeline stage declared once.

One :class:`Stage` per stage -- its name (the ``neurodiff`` subcommand), the folder of its runs,
the configs whose fields shape its outputs, its output format, its module, its chapter, the stages
whose outputs it reads and the files it writes. The run keys (:mod:`neurodiff.runs`), the readers
and writers of stage outputs (:mod:`neurodiff.artifacts`), the command line
(:mod:`neurodiff.cli`), what a chapter needs (:mod:`neurodiff.notebook`) and the run record
(:mod:`neurodiff.record`) all read it, so that adding a stage or bumping a format is one edit
here (as MONAI's noise schedules are registered once and looked up by name), plus the import of
its module in :mod:`neurodiff.dispatch`. ``tests/test_registry.py`` fails when a stage's folder
or format is spelled anywhere else, or a declared module is not dispatched.

Nothing heavy is imported: the stages' modules are named, not imported (they live on a higher
floor; :mod:`neurodiff.dispatch` imports them).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import (
    AugmentConfig,
    CohortConfig,
    ConfigError,
    MetricsConfig,
    ModelConfig,
    PreprocessConfig,
    SampleConfig,
    StageConfig,
    TrainConfig,
)

__all__ = [
    "AUGMENT",
    "EXPLORE",
    "METRICS",
    "PREPROCESS",
    "SAMPLE",
    "STAGES",
    "TRAIN",
    "Stage",
    "chapter_stage",
    "get",
    "keyed_stages",
    "needs",
]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes
    ----------
    name : str
        The stage and its subcommand (``neurodiff preprocess``).
    folder : str or None
        Its runs live in ``<derived_dir>/<profile>/<folder>/<key>/``; None for a stage that writes
        no run folder (chapter 1 only reads the cohort).
    configs : tuple of StageConfig classes
        Whose fields (those declared ``shapes=True``) shape its outputs, hence its key.
    format : str
        Its output format; bump it when the outputs change meaning, so that old run folders are
        not reused (it is part of the key) and old files are refused by the readers.
    module : str
        The module whose ``run(params)`` computes it.
    chapter : str
        The notebook that presents it (``"02"`` is ``notebooks/02_preprocess.ipynb``).
    upstream : tuple of str
        The stages whose outputs it reads (their keys enter its key).
    outputs : tuple of str
        The files (glob patterns) it writes into its run folder; ``run.json`` lists what was
        written.
    cohorts : tuple of str
        Parameters naming further input cohorts that are preprocessed like the cohort
        (chapter 6's pools, ``pools_cohort``).
    help : str
        One line for ``neurodiff --help``.
    """

    name: str
    folder: str | None
    configs: tuple[type[StageConfig], ...]
    format: str
    module: str
    chapter: str
    upstream: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    cohorts: tuple[str, ...] = ()
    help: str = ""

    def __str__(self) -> str:
        return self.name

    @property
    def notebook(self) -> str:
        """Its chapter's notebook, ``notebooks/<notebook>.ipynb`` (e.g. ``05_metrics``)."""
        return f"{self.chapter}_{self.module.rpartition('.')[2]}"


EXPLORE = Stage(
    "explore",
    None,
    (CohortConfig,),
    "",
    "neurodiff.explore",
    "01",
    help="the multi-site cohort and its site effects (chapter 1)",
)
PREPROCESS = Stage(
    "preprocess",
    "preprocessed",
    (CohortConfig, PreprocessConfig),
    "neurodiff-preprocessed/3",
    "neurodiff.preprocess",
    "02",
    outputs=(
        "manifest.json",
        "split.tsv",
        "qc.tsv",
        "cohort.tsv",
        "histograms.npz",
        "train.npy",
        "test.npy",
        "train_index.tsv",
        "test_index.tsv",
        "volumes/*.nii.gz",
        "masks/*.nii.gz",
    ),
    help="build the model-ready, cached dataset (train/test split, QC)",
)
TRAIN = Stage(
    "train",
    "train",
    (ModelConfig, TrainConfig),
    "neurodiff-train/1",
    "neurodiff.train",
    "03",
    upstream=("preprocess",),
    outputs=("checkpoints/step-*.pt", "loss.csv", "previews/step-*.png", "config.json"),
    help="train the diffusion model (also under torchrun for DDP)",
)
SAMPLE = Stage(
    "sample",
    "synthetic",
    (SampleConfig,),
    "neurodiff-synthetic/1",
    "neurodiff.sample",
    "04",
    upstream=("train",),
    outputs=(
        "dataset_description.json",
        "participants.tsv",
        "sub-*/anat/sub-*_T1w.nii.gz",
        "grid.png",
    ),
    help="generate a synthetic cohort as NIfTI",
)
METRICS = Stage(
    "metrics",
    "metrics",
    (MetricsConfig,),
    "neurodiff-metrics/2",
    "neurodiff.metrics",
    "05",
    upstream=("sample",),
    outputs=("metrics.json", "by_group.json"),
    help="MMD, FID, MS-SSIM, precision/recall, memorisation audit",
)
AUGMENT = Stage(
    "augment",
    "augment",
    # its own pools (preprocessed like the cohort: PreprocessConfig) and its own generators (the
    # recipe of ModelConfig, trained as TrainConfig, sampled as SampleConfig); no upstream stage
    (AugmentConfig, PreprocessConfig, ModelConfig, TrainConfig, SampleConfig),
    "neurodiff-augment/2",
    "neurodiff.augment",
    "06",
    outputs=("augment.json", "*.tsv", "work/*.json", "work/*.npz", "work/*.pt"),
    cohorts=("pools_cohort",),
    help="does augmentation help? leak-free generators per draw, tuned arms, a large test pool",
)

#: Every stage, in the order of the chapters (upstream stages first).
STAGES: tuple[Stage, ...] = (EXPLORE, PREPROCESS, TRAIN, SAMPLE, METRICS, AUGMENT)


def get(name: str | Stage) -> Stage:
    """The stage called ``name`` (a stage name such as ``"sample"`` or its folder, ``"synthetic"``);
    a :class:`Stage` is returned as it is."""
    if isinstance(name, Stage):
        return name
    for s in STAGES:
        if isinstance(name, str) and name in (s.name, s.folder):
            return s
    raise ConfigError(
        f"unknown stage {name!r}; expected one of {[s.name for s in STAGES]}", parameter="stage"
    )


def keyed_stages() -> tuple[Stage, ...]:
    """The stages that write run folders, upstream first."""
    return tuple(s for s in STAGES if s.folder is not None)


def chapter_stage(chapter: str) -> Stage:
    """The stage of chapter ``chapter`` (``"03"`` or ``"03_train"``)."""
    for s in STAGES:
        if s.chapter == chapter[:2]:
            return s
    raise ConfigError(
        f"unknown chapter {chapter!r}; expected one of {[s.chapter for s in STAGES]}",
        parameter="chapter",
    )


def needs(stage: str | Stage) -> tuple[Stage, ...]:
    """Every stage whose outputs ``stage`` reads, directly or through its upstream, upstream
    first."""
    wanted: set[str] = set()
    todo = list(get(stage).upstream)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += get(name).upstream
    return tuple(s for s in STAGES if s.name in wanted)
