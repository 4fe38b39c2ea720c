"""Stage 5: realism, diversity and memorisation of the synthetic cohort, against real-vs-real.

The stage only: the metric families, interval rules, redraws and the calibration ladder are the
middle floor, :mod:`neurodiff.measures` (whose docstring defines every metric and its
uncertainty). Here: :mod:`.inputs` (the images a run measures, :class:`MetricsInputs`),
:mod:`.stage` (:func:`evaluate` from arrays, :func:`run` from a run's outputs), :mod:`.entries`
(each metric of one evaluation, and the records its settings and sets travel in),
:mod:`.anatomy` (tissue fractions at matched levels), :mod:`.difference` (the group
difference map),
:mod:`.results` (containers, tables, readings, the Discussion's summary), :mod:`.groups` (each
group on its own), :mod:`.ladder` (a run's calibration ladder).

Every metric is reported as ``value`` (real test split vs synthetic, bootstrap 95 % CI over
real subjects and synthetic images), ``baseline`` (real vs real, the range of subject-level
redraws stratified by site as the split) and ``extractor`` (the feature space); the RBF MMD
carries the synthetic-vs-real test calibrated on those redraws.
"""

from .anatomy import Levels, TissueData
from .difference import GroupDifference, difference_maps
from .groups import by_group
from .inputs import MetricsInputs, load_inputs, reference_group
from .ladder import calibration_for
from .results import (
    DIFFERENCE_METRICS,
    METRICS,
    PAPER_RESULTS,
    MetricsData,
    MetricsResult,
    MetricValue,
    comparison_table,
    interpret,
    results_markdown,
)
from .stage import evaluate, evaluate_inputs, run

__all__ = [
    "DIFFERENCE_METRICS",
    "METRICS",
    "PAPER_RESULTS",
    "GroupDifference",
    "Levels",
    "MetricValue",
    "MetricsData",
    "MetricsInputs",
    "MetricsResult",
    "TissueData",
    "by_group",
    "calibration_for",
    "comparison_table",
    "difference_maps",
    "evaluate",
    "evaluate_inputs",
    "interpret",
    "load_inputs",
    "reference_group",
    "results_markdown",
    "run",
]
