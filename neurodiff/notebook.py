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
from collections.abc import Sequence
from pathlib import Path

from . import registry, runs
from .config import ConfigError, Params, parameter_specs
from .dispatch import cannot_run, run_stage
from .errors import CohortError

__all__ = ["DEMO_OPTIONS", "prepare", "prepare_cohorts", "write_demo_cohort"]

log = logging.getLogger(__name__)

#: The ``neurodiff demo-data`` options that write the simulated folder a cohort parameter
#: defaults to (the Makefile's ``data`` target uses the same; ``tests/test_project.py`` checks).
DEMO_OPTIONS: dict[str, list[str]] = {
    "cohort": [],
    "pools_cohort": ["--pools", "8,6,2,6,2"],  # the live run: the full one is a benchmark
}


def write_demo_cohort(root: str | Path, options: Sequence[str] = ()) -> Path:
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
    """Write the simulated cohort of parameter ``name`` (``cohort``, ``pools_cohort``) when its
    folder is missing and the parameter has its default; any other missing folder is an error."""
    root = params.path(params[name])
    if root.is_dir():
        return
    spec = parameter_specs()[name]
    if params[name] != spec.default or name not in DEMO_OPTIONS:
        raise ConfigError(
            f"parameter {name!r}: the folder {str(root)!r} does not exist; expected {spec.help}",
            parameter=name,
        )
    log.info("the simulated %s is missing: writing it to %s (`neurodiff demo-data`)", name, root)
    write_demo_cohort(root, DEMO_OPTIONS[name])


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
            stage.folder,
        )
        run_stage(stage, params)
    prepare_cohorts(params, spec)


def prepare_cohorts(params: Params, stage: str | registry.Stage) -> None:
    """Preprocess the further cohorts ``stage`` reads (the registry's ``cohorts``: parameters
    naming a folder, e.g. chapter 6's ``pools_cohort``) exactly like the cohort, when they are
    missing; write a simulated one first when the parameter is its default and absent. Nothing
    is prepared for a stage that cannot run on them (:func:`neurodiff.dispatch.cannot_run`: a
    healthy-only pools cohort); the stage gives the reason."""
    spec = registry.get(stage)
    reason = cannot_run(spec, params)
    if reason is not None:
        log.warning("the %s stage cannot run: %s", spec.name, reason)
        return
    for name in spec.cohorts:
        other = params.for_cohort(name)
        if other is None:
            continue
        _simulated(params, name)
        if _complete(other, registry.PREPROCESS):
            continue
        log.info("preprocessing the %s %s like the cohort", name, params.path(params[name]))
        run_stage(registry.PREPROCESS, other)
