"""Stage 6: does augmentation with synthetic images help a downstream model with few real
subjects -- asked fairly?

The experiment's subjects come in disjoint pools (:mod:`.pools`: a healthy pretraining cohort, a
training pool the draws come from, a validation pool that tunes every classifier, a large test
pool and an out-of-distribution site). The generator is pretrained once on the healthy cohort
and **fine-tuned per draw on exactly that draw's subjects** (:mod:`.generators`), so that no
arm profits from patients it was not given. Every arm (:mod:`.arms`: A real only, A_H real + the
generator's healthy cohort, B realistic classical augmentation, C real + the draw's synthetic
images, C_pool the leaky generator that saw the whole pool, D synthetic only, E_k more real
subjects, the ceiling) is fitted by two learners (:mod:`.classify`: logistic regression and a
small CNN) at every hyper-parameter of their grids, tuned on the validation pool and judged on
the test pool (:mod:`.experiment`, resumable per draw). :mod:`.summary` and :mod:`.stats` give
the primary endpoint, Holm-adjusted comparisons, the leak and "worth N subjects" from a fitted
learning curve with hierarchical-bootstrap intervals; :mod:`.reading` puts them in words.

``run(params)`` computes it for ``params`` (the live chapter 6 runs a small version on the demo
pools; ``benchmarks/augment_fair.py`` the full one); ``load(params)`` reads a finished run back;
``cannot_run(params)`` says why a pools cohort cannot be used (a healthy-only one has one group).
"""

from .arms import Arm, arms_of
from .classify import CLASSIFIERS, auroc, features, fit_cnn, fit_logistic, pair_matrix
from .experiment import DrawPlan, plan_draw
from .pools import (
    POOL_NAMES,
    Pool,
    Pools,
    cannot_run,
    check_pools,
    experiment_params,
    load_pools,
    pools_params,
)
from .reading import (
    answer,
    from_results_file,
    gains_frame,
    leak_sentence,
    memorisation_sentence,
    primary_sentence,
    worth_sentence,
)
from .stage import AugmentResult, load, run, schedule, summarise
from .stats import BootstrapWeights, auroc_replicates, fit_curve, holm, inverse_curve, worth_of
from .summary import primary_arm, primary_statement

__all__ = [
    "CLASSIFIERS",
    "POOL_NAMES",
    "Arm",
    "AugmentResult",
    "BootstrapWeights",
    "DrawPlan",
    "Pool",
    "Pools",
    "answer",
    "arms_of",
    "auroc",
    "auroc_replicates",
    "cannot_run",
    "check_pools",
    "experiment_params",
    "features",
    "fit_cnn",
    "fit_curve",
    "fit_logistic",
    "from_results_file",
    "gains_frame",
    "holm",
    "inverse_curve",
    "leak_sentence",
    "load",
    "load_pools",
    "memorisation_sentence",
    "pair_matrix",
    "plan_draw",
    "pools_params",
    "primary_arm",
    "primary_statement",
    "primary_sentence",
    "run",
    "schedule",
    "summarise",
    "worth_of",
    "worth_sentence",
]
