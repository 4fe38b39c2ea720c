"""What a chapter notebook needs before its first step, wherever it is opened.

``neurodiff run`` executes the chapters in order, so each finds the outputs of the one before. A
reader who opens one chapter on its own -- in JupyterLab, VS Code, on Binder or Colab, or with
papermill's own command line -- may not have them yet. :func:`prepare` computes exactly what is
missing for the chapter's parameters (building the simulated demo cohort, preprocessing,
training, sampling), each with a log line saying so, and does nothing when it is all there. What a
chapter needs is read from the stage registry (:mod:`neurodiff.registry`: its stage's upstream
stages and further cohorts); being keyed by the parameters (:mod:`neurodiff.runs`), what it finds
is always of the same parameters.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from . import preprocess, registry, runs, sample, train
from .config import DEMO_COHORT, DEMO_NEW_SUBJECTS, ConfigError, Params, parameter_specs
from .errors import CohortError

__all__ = ["prepare", "prepare_cohorts", "prepare_oracle", "write_demo_cohort"]

log = logging.getLogger(__name__)

#: The stages a chapter may have to compute first, by stage name: their ``run(params)``.
_RUNNERS = {
    registry.PREPROCESS.name: preprocess.run,
    registry.TRAIN.name: train.run,
    registry.SAMPLE.name: sample.run,
}

#: The ``neurodiff demo-data`` options that write the simulated folder each cohort parameter
#: defaults to.
_DEMO_OPTIONS: dict[str, tuple[str, list[str]]] = {
    "cohort": (DEMO_COHORT, []),
    "oracle_cohort": (
        DEMO_NEW_SUBJECTS,
        ["--new-subjects", "--subjects", "8", "--patients", "8"],
    ),
}

_EXPECTED = {
    "cohort": "a BIDS, IXI-style or flat folder of NIfTI scans",
    "oracle_cohort": "a cohort of new subjects (or '' for no arm E)",
}


def write_demo_cohort(root: str | Path, options: list[str] = ()) -> Path:
    """Write a simulated cohort to ``root`` with ``neurodiff demo-data`` ``options``.

    The one way a missing demo cohort is made on demand (chapters 1-6, ``neurodiff augment``).
    It runs in a separate process: the generator forks workers, which is unsafe inside a
    multi-threaded Jupyter kernel.
    """
    root = Path(root)
    cmd = [sys.executable, "-m", "neurodiff", "demo-data", "--out", str(root), *options]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise CohortError(f"writing the simulated cohort to {root} failed: {last}", path=root)
    return root


def _simulated(params: Params, name: str) -> None:
    """Write the simulated cohort of parameter ``name`` (``cohort``, ``oracle_cohort``) when its
    folder is missing and the parameter has its default; any other missing folder is an error."""
    root = params.path(params[name])
    if root.is_dir():
        return
    if params[name] != parameter_specs()[name].default:
        raise ConfigError(
            f"parameter {name!r}: the folder {str(root)!r} does not exist; expected "
            f"{_EXPECTED[name]}",
            parameter=name,
        )
    log.info("the simulated %s is missing: writing it to %s (`neurodiff demo-data`)", name, root)
    write_demo_cohort(root, _DEMO_OPTIONS[name][1])


def _complete(params: Params, stage: registry.Stage) -> bool:
    return runs.read_run(runs.run_dir(params, stage)).complete


def prepare(params: Params, chapter: str) -> None:
    """Compute what chapter ``chapter`` (``"03"`` or ``"03_train"``) needs and is missing;
    each stage it runs is logged (nothing is when everything is there)."""
    spec = registry.chapter_stage(chapter)
    _simulated(params, "cohort")
    for stage in registry.needs(spec):
        if _complete(params, stage):
            continue
        log.info(
            "chapter %s needs the %s outputs of these parameters, which do not exist yet: "
            "computing them now (as `neurodiff run --only` the chapter before would)",
            spec.chapter,
            stage.name,
        )
        _RUNNERS[stage.name](params)
    prepare_cohorts(params, spec)


def prepare_cohorts(params: Params, stage: str | registry.Stage) -> None:
    """Preprocess the further cohorts ``stage`` reads (the registry's ``cohorts``) like the
    cohort, when they are missing."""
    for name in registry.get(stage).cohorts:
        if name == "oracle_cohort":
            prepare_oracle(params)


def prepare_oracle(params: Params) -> None:
    """Preprocess chapter 6's oracle cohort (new subjects) like the cohort, when it is missing;
    write the simulated one first when ``oracle_cohort`` is the default and absent."""
    from .augment import oracle_params

    oracle = oracle_params(params)
    if oracle is None:
        return
    _simulated(params, "oracle_cohort")
    if _complete(oracle, registry.PREPROCESS):
        return
    log.info(
        "preprocessing the oracle cohort %s like the cohort", params.path(params.oracle_cohort)
    )
    preprocess.run(oracle)
