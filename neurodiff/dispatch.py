"""The stages' modules, imported as any other module, and the one call that runs a stage.

The registry (:mod:`neurodiff.registry`) names each stage's module on the lower floor, where the
stages cannot be imported; this module, on the top floor, imports them (so the import graph sees
every arrow) and maps each declared module to its ``run(params)``. The command line and the
notebooks' :func:`neurodiff.notebook.prepare` run stages through :func:`run_stage`, and ask
:func:`cannot_run` first;
``tests/test_registry.py`` fails when a declared stage has no module here.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import augment, explore, metrics, preprocess, registry, sample, train
from .config import Params

__all__ = ["MODULES", "cannot_run", "module_of", "run_stage"]

#: Every stage module, by its dotted name (the registry's ``Stage.module``).
MODULES: dict[str, ModuleType] = {
    m.__name__: m for m in (explore, preprocess, train, sample, metrics, augment)
}


def module_of(stage: str | registry.Stage) -> ModuleType:
    """The imported module of ``stage``."""
    return MODULES[registry.get(stage).module]


def run_stage(stage: str | registry.Stage, params: Params) -> Any:
    """``run(params)`` of ``stage``'s module: the stage's result."""
    return module_of(stage).run(params)


def cannot_run(stage: str | registry.Stage, params: Params) -> str | None:
    """Why ``stage`` cannot run on the inputs of ``params``, in a sentence, or None: its
    module's ``cannot_run(params)``, which a stage whose inputs may lack what it needs defines
    (chapter 6: a pools cohort with two groups). Cheap, and raises nothing."""
    check = getattr(module_of(stage), "cannot_run", None)
    return check(params) if check is not None else None
