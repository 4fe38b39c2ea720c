"""Stage 6: does augmentation with synthetic images help a downstream model with few real
subjects?

The paper's question, asked of this run's generator. A patient-vs-control classifier
(:mod:`.classify`: logistic regression on pooled pixels, a subject's score the mean of its
slices) is trained with ``n`` real subjects per class (the learning curve, ``augment_n``) in
five arms -- A real only, B real + classical augmentation, C real + synthetic images at several
ratios, D synthetic only, E real + images of *new* subjects (the oracle) -- over many draws of the
real subjects (:mod:`.data`), and judged on the held-out real test subjects of both groups by the
AUROC with paired-bootstrap intervals over test subjects and draws (:mod:`.stats`). The A and E
curves translate a gain into "worth N real subjects". :mod:`.checks` tests the conditioning
itself (a real-data classifier on synthetic images; an atrophy proxy at matched slice levels).

``run(params)`` writes ``table.tsv``, ``worth.tsv``, ``classifier_check.tsv``, ``atrophy.tsv``,
``scores.npz``, ``draws.json`` and ``augment.json`` into the stage's run folder (through
:func:`neurodiff.artifacts.write_augment`); ``load(params)`` reads a finished run back without
computing anything (None when it has not run). Needs a class-conditional generator (``groups``)
and, for arm E, the oracle cohort preprocessed (:func:`.data.oracle_params`; ``neurodiff
augment`` and chapter 6 do it). The arms are :class:`.arms.Arm` values; the tables name them by
:attr:`.arms.Arm.name` (``"A"``, ``"C64"``).
"""

from .arms import Arm, arms_of
from .checks import atrophy_proxy, classifier_check, dark_fraction
from .classify import auroc, features, fit_score, pair_matrix
from .data import ExperimentData, check_pools, draw, load_data, oracle_params
from .reading import answer, conditioning_reading, gains_frame, worth_sentence
from .stage import AugmentResult, experiment, load, run, summarise
from .stats import bootstrap_aurocs, real_curve, worth

__all__ = [
    "Arm",
    "AugmentResult",
    "ExperimentData",
    "answer",
    "arms_of",
    "atrophy_proxy",
    "auroc",
    "bootstrap_aurocs",
    "check_pools",
    "classifier_check",
    "conditioning_reading",
    "dark_fraction",
    "draw",
    "experiment",
    "features",
    "fit_score",
    "gains_frame",
    "load",
    "load_data",
    "oracle_params",
    "pair_matrix",
    "real_curve",
    "run",
    "summarise",
    "worth",
    "worth_sentence",
]
