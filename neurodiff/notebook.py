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

__all__ = ["CHAPTER_NEEDS", "prepare"]

log = logging.getLogger(__name__)

#: The stage outputs each chapter reads (the cohort is always needed).
CHAPTER_NEEDS: dict[str, tuple[str, ...]] = {
    "01": (),
    "02": (),
    "03": (artifacts.PREPROCESSED,),
    "04": (artifacts.PREPROCESSED, artifacts.TRAIN),
    "05": (artifacts.PREPROCESSED, artifacts.TRAIN, artifacts.SYNTHETIC),
}


def _complete(params: Params, stage: str) -> bool:
    return runs.read_run(runs.run_dir(params, stage)).complete


def _cohort(params: Params) -> None:
    root = params.path(params.cohort)
    if root.is_dir():
        return
    if params.cohort != parameter_specs()["cohort"].default:
        raise ConfigError(
            f"parameter 'cohort': the folder {str(root)!r} does not exist; expected a BIDS, "
            "IXI-style or flat folder of NIfTI scans",
            parameter="cohort",
        )
    from .demo_data import make_demo_cohort

    log.info("the simulated demo cohort is missing: writing it to %s (`neurodiff demo-data`)", root)
    make_demo_cohort(root)


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
