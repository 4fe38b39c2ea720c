"""What a chapter notebook needs before its first step, wherever it is opened.

``neurodiff run`` executes the chapters in order, so each finds the outputs of the one before. A
reader who opens one chapter on its own -- in JupyterLab, VS Code, on Binder or Colab, or with
papermill's own command line -- may not have them yet. :func:`prepare` computes exactly what is
missing for the chapter's parameters (building the simulated demo cohort, preprocessing,
training, sampling), each with a log line saying so, and does nothing when it is all there. Being
keyed by the parameters (:mod:`neurodiff.runs`), what it finds is always of the same parameters.
"""

from __future__ import annotations

import logging

from . import artifacts, runs
from .config import ConfigError, Params, parameter_specs

__all__ = ["CHAPTER_NEEDS", "ORACLE", "prepare", "prepare_oracle"]

log = logging.getLogger(__name__)

#: Chapter 6's oracle: the new-subjects cohort, preprocessed like the cohort.
ORACLE = "oracle"

#: The stage outputs each chapter reads (the cohort is always needed).
CHAPTER_NEEDS: dict[str, tuple[str, ...]] = {
    "01": (),
    "02": (),
    "03": (artifacts.PREPROCESSED,),
    "04": (artifacts.PREPROCESSED, artifacts.TRAIN),
    "05": (artifacts.PREPROCESSED, artifacts.TRAIN, artifacts.SYNTHETIC),
    "06": (artifacts.PREPROCESSED, artifacts.TRAIN, artifacts.SYNTHETIC, ORACLE),
}


def _complete(params: Params, stage: str) -> bool:
    return runs.read_run(runs.run_dir(params, stage)).complete


def _simulated(params: Params, name: str, expected: str, **demo: object) -> None:
    """Write the simulated cohort of parameter ``name`` (``cohort``, ``oracle_cohort``) when its
    folder is missing and the parameter has its default; any other missing folder is an error
    that says what was ``expected``."""
    root = params.path(params[name])
    if root.is_dir():
        return
    if params[name] != parameter_specs()[name].default:
        raise ConfigError(
            f"parameter {name!r}: the folder {str(root)!r} does not exist; expected {expected}",
            parameter=name,
        )
    from .demo_data import make_demo_cohort

    log.info("the simulated %s is missing: writing it to %s (`neurodiff demo-data`)", name, root)
    make_demo_cohort(root, **demo)


def _cohort(params: Params) -> None:
    _simulated(params, "cohort", "a BIDS, IXI-style or flat folder of NIfTI scans")


def prepare(params: Params, chapter: str) -> None:
    """Compute what chapter ``chapter`` (``"03"`` or ``"03_train"``) needs and is missing;
    each stage it runs is logged (nothing is when everything is there)."""
    key = chapter[:2]
    if key not in CHAPTER_NEEDS:
        raise ConfigError(
            f"unknown chapter {chapter!r}; expected one of {sorted(CHAPTER_NEEDS)}",
            parameter="chapter",
        )
    _cohort(params)
    for stage in CHAPTER_NEEDS[key]:
        if stage == ORACLE:
            prepare_oracle(params)
            continue
        if _complete(params, stage):
            continue
        log.info(
            "chapter %s needs the %s outputs of these parameters, which do not exist yet: "
            "computing them now (as `neurodiff run --only` the chapter before would)",
            key,
            stage,
        )
        if stage == artifacts.PREPROCESSED:
            from . import preprocess

            preprocess.run(params)
        elif stage == artifacts.TRAIN:
            from . import train

            train.run(params)
        else:
            from . import sample

            sample.run(params)


def prepare_oracle(params: Params) -> None:
    """Preprocess chapter 6's oracle cohort (new subjects) like the cohort, when it is missing;
    write the simulated one first when ``oracle_cohort`` is the default and absent."""
    from .augment import oracle_params

    oracle = oracle_params(params)
    if oracle is None:
        return
    _simulated(
        params,
        "oracle_cohort",
        "a cohort of new subjects (or '' for no arm E)",
        subjects=8,
        patients=8,
        new_subjects=True,
    )
    root = params.path(params.oracle_cohort)
    if _complete(oracle, artifacts.PREPROCESSED):
        return
    from . import preprocess

    log.info("preprocessing the oracle cohort %s like the cohort", root)
    preprocess.run(oracle)
