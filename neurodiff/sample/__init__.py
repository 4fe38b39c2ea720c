"""Stage 4: a synthetic cohort from the trained model's EMA weights, written as NIfTI.

The samplers themselves (DDPM, DDIM, PNDM; MONAI schedulers, one seeded loop) are in
:mod:`neurodiff.sampling`. This package runs them for the stage (:mod:`.stage`: :func:`run`,
:func:`write_synthetic`) and compares them (:mod:`.table`: :func:`sampler_table`,
:func:`compare_samplers`, :func:`reverse_processes`).

``neurodiff sample --profile P [-p sampler=ddim -p steps=50 -p n_samples=64]`` calls :func:`run`,
which writes ``<derived_dir>/<profile>/synthetic/`` (see CONTRIBUTING.md), readable by
:func:`neurodiff.artifacts.load_synthetic` and by :func:`neurodiff.cohort.load_cohort` like any
real cohort. A downloaded weights file samples the same way without training
(:mod:`.generator`: :func:`load_generator`, and :func:`run_from_weights` for ``neurodiff sample
--weights FILE``).
"""

from ..artifacts import load_synthetic, provenance
from ..sampling import SAMPLERS, ReverseProcess, generate, reverse_process
from .generator import Generator, load_generator, run_from_weights
from .stage import SampleResult, real_and_synthetic, run, write_synthetic
from .table import (
    TABLE_STEPS,
    background_mean,
    compare_samplers,
    ddim_background,
    ddim_background_reading,
    default_table_rows,
    recommend,
    reverse_processes,
    sampler_table,
    speedup,
)

__all__ = [
    "SAMPLERS",
    "TABLE_STEPS",
    "ReverseProcess",
    "Generator",
    "SampleResult",
    "background_mean",
    "compare_samplers",
    "ddim_background",
    "ddim_background_reading",
    "default_table_rows",
    "recommend",
    "generate",
    "load_generator",
    "load_synthetic",
    "provenance",
    "reverse_process",
    "reverse_processes",
    "run",
    "run_from_weights",
    "sampler_table",
    "speedup",
    "real_and_synthetic",
    "write_synthetic",
]
