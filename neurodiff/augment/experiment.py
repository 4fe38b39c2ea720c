"""One draw of the experiment, from its subjects to every arm's scores -- resumable per draw.

A draw ``(n, d)`` takes ``n`` subjects per class from the training pool (a generator seeded by
``(seed, n, d)``) and, for the E arms, an ordered list of further subjects of the pool (the
first ``k`` per class for ``E<k>``: nested, so the real curve is smooth). Its generator is the
healthy-pretrained model fine-tuned on exactly the draw's images; the record keeps the subjects
it was trained on and the memorisation audit of its samples against those images.

Every arm is fitted with every hyper-parameter of its grid (logistic regression: each ``C``;
CNN: scored after each third of its steps; arm B: each strength) and scored on the validation,
test and out-of-distribution pools. Choosing the hyper-parameters on the validation pool is left
to the summary (:mod:`.summary`), which never looks at the test pool to choose. A finished draw is
one ``work/<name>.npz`` + ``work/<name>.json``; a run that is killed continues with the next
unfinished draw.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import artifacts
from ..config import AugmentConfig, Params
from ..measures.memorisation import memorisation_audit
from .arms import Arm, arms_of
from .classify import features, fit_cnn, fit_logistic, subject_scores
from .generators import fine_tuned, sample_classes
from .pools import Pool, Pools
from .realistic import STRENGTHS, realistic_copies

__all__ = ["EVAL_POOLS", "DrawPlan", "EvalSet", "eval_sets", "plan_draw", "run_ceiling", "run_draw"]

log = logging.getLogger(__name__)

#: The pools every arm is scored on.
EVAL_POOLS: tuple[str, ...] = ("validation", "test", "ood")


@dataclass(frozen=True)
class DrawPlan:
    """Who is in a draw: ``subjects`` (``n`` per class, first group first) and, per class, the
    ordered further subjects ``extra`` the E arms add."""

    n: int
    index: int
    seed: int
    subjects: tuple[str, ...]
    extra: tuple[tuple[str, ...], tuple[str, ...]]

    @property
    def name(self) -> str:
        return f"n{self.n}-d{self.index}"


def plan_draw(pools: Pools, n: int, d: int, seed: int, k_max: int) -> DrawPlan:
    """Draw ``d`` at ``n``: ``n`` training-pool subjects per class and ``k_max`` more."""
    rng = np.random.default_rng([seed, n, d])
    chosen: list[str] = []
    extra = []
    for label in (0, 1):
        pool = pools["train"].subjects(label)
        order = rng.permutation(len(pool))
        chosen += sorted(pool[i] for i in order[:n])
        extra.append(tuple(pool[i] for i in order[n : n + k_max]))
    return DrawPlan(n, d, seed, tuple(chosen), (extra[0], extra[1]))


@dataclass
class EvalSet:
    """A pool's images prepared once for scoring: LR features, images, subjects, labels."""

    images: np.ndarray
    x: np.ndarray
    subject: np.ndarray
    order: list[str]
    y: np.ndarray


def eval_sets(pools: Pools) -> dict[str, EvalSet]:
    out = {}
    for name in EVAL_POOLS:
        p: Pool = pools[name]
        order = p.subjects()
        out[name] = EvalSet(p.images, features(p.images), p.subject, order, p.subject_labels(order))
    return out


def _fit_all(
    acfg: AugmentConfig, x: np.ndarray, y: np.ndarray, evals: dict[str, EvalSet], seed: int
) -> dict[str, np.ndarray]:
    """Both classifiers at every setting: ``{"<clf>|<setting>|<pool>": subject scores}``."""
    out = {}
    names = list(evals)
    tests_lr = [evals[p].x for p in names]
    for setting, scores in fit_logistic(features(x), y, tests_lr, acfg.classifier_c_grid).items():
        for p, s in zip(names, scores, strict=True):
            out[f"logistic|{setting}|{p}"] = subject_scores(s, evals[p].subject, evals[p].order)
    tests_img = [evals[p].images for p in names]
    for setting, scores in fit_cnn(x, y, tests_img, acfg.cnn_steps, seed).items():
        for p, s in zip(names, scores, strict=True):
            out[f"cnn|{setting}|{p}"] = subject_scores(s, evals[p].subject, evals[p].order)
    return out


def _audit(real: np.ndarray, synthetic: np.ndarray, unseen: np.ndarray) -> dict[str, float]:
    """Memorisation of the draw's generator: its samples against the draw's own images (the
    threshold from unseen real images of the validation pool)."""
    to01 = lambda a: (np.asarray(a) + 1.0) / 2.0  # noqa: E731
    audit = memorisation_audit(
        to01(real),
        to01(unseen),
        to01(synthetic),
        features(real),
        features(unseen),
        features(synthetic),
    )
    return {
        "flagged_fraction": audit.fraction,
        "flagged": int(audit.flagged.sum()),
        "samples": len(synthetic),
        "max_ssim_to_training": float(np.max(audit.syn_ssim)),
        "median_ssim_to_training": float(np.median(audit.syn_ssim)),
        "median_ssim_unseen": float(np.median(audit.test_ssim)),
    }


def _arm_data(arm: Arm, ctx: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The training set(s) of ``arm`` in this draw: ``[(setting prefix, images, labels)]``."""
    rx, ry, m_max = ctx["real_x"], ctx["real_y"], ctx["m_max"]
    syn, syn_y, pool_syn = ctx["synthetic"], ctx["synthetic_y"], ctx["pool_synthetic"]

    def cat(*parts):
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    if arm.kind == "A":
        return [("", rx, ry)]
    if arm.kind == "A_H":
        return [("", *cat((rx, ry), ctx["healthy"]))]
    if arm.kind == "B":
        return [
            (f"{s}/", *cat((rx, ry), realistic_copies(rx, ry, m_max, s, ctx["seed"])))
            for s in STRENGTHS
        ]
    if arm.kind in ("C", "D"):
        m = arm.count or m_max
        take = np.concatenate([np.flatnonzero(syn_y == k)[:m] for k in (0, 1)])
        if arm.kind == "D":
            return [("", syn[take], syn_y[take])]
        return [("", *cat((rx, ry), (syn[take], syn_y[take])))]
    if arm.kind == "C_pool":
        return [("", *cat((rx, ry), pool_syn))]
    if arm.kind == "E":
        extra = [s for cls in ctx["plan"].extra for s in cls[: arm.count]]
        rows = ctx["train"].of(extra)
        return [("", *cat((rx, ry), (ctx["train"].images[rows], ctx["train"].y[rows])))]
    raise ValueError(f"arm {arm} is not fitted per draw")


def run_draw(
    params: Params,
    pools: Pools,
    plan: DrawPlan,
    init: dict,
    pool_samples: np.ndarray,
    evals: dict[str, EvalSet],
) -> dict:
    """Compute one draw (or read it back when it finished before); return its record."""
    found = artifacts.load_work_record(params, plan.name)
    if found is not None:
        return found
    acfg: AugmentConfig = params.stage(AugmentConfig)
    m_max = max(acfg.augment_synthetic)
    train = pools["train"]
    rows = train.of(list(plan.subjects))
    real_x, real_y = train.images[rows], train.y[rows]
    seed = int(np.random.default_rng([acfg.seed, plan.n, plan.index, 1]).integers(2**31))
    t0 = time.perf_counter()
    model = fine_tuned(params, init, real_x, real_y, acfg.finetune_steps, seed)
    t1 = time.perf_counter()
    synthetic = sample_classes(params, model, m_max, seed)
    t2 = time.perf_counter()
    syn_y = np.repeat([0, 1], m_max)
    rng = np.random.default_rng([seed, 2])
    half = len(pool_samples) // 2  # the pool generator's samples: first group, then second
    pick = np.concatenate([rng.choice(half, m_max, False), half + rng.choice(half, m_max, False)])
    ctx = {
        "real_x": real_x,
        "real_y": real_y,
        "m_max": m_max,
        "synthetic": synthetic,
        "synthetic_y": syn_y,
        "pool_synthetic": (pool_samples[pick], np.repeat([0, 1], m_max)),
        "healthy": (pools["pretrain"].images, np.zeros(len(pools["pretrain"].y), np.int64)),
        "seed": seed,
        "plan": plan,
        "train": train,
    }
    scores: dict[str, np.ndarray] = {}
    for arm in (a for a in arms_of(acfg) if a.per_draw):
        for prefix, x, y in _arm_data(arm, ctx):
            for key, s in _fit_all(acfg, x, y, evals, seed).items():  # one CNN seed: paired
                clf, setting, pool = key.split("|")
                scores[f"{arm.name}|{clf}|{prefix}{setting}|{pool}"] = s.astype(np.float32)
    t3 = time.perf_counter()
    audit = _audit(real_x, synthetic, pools["validation"].images)
    shown = min(4, m_max)  # a few samples of each class kept for the figures
    keep = np.concatenate([np.arange(shown), m_max + np.arange(shown)])
    artifacts.write_work_arrays(params, plan.name, {**scores, "__samples__": synthetic[keep]})
    record = {
        "name": plan.name,
        "n": plan.n,
        "draw": plan.index,
        "subjects": list(plan.subjects),
        "generator_trained_on": sorted(set(train.subject[rows].tolist())),
        "generator_images": len(rows),
        "extra_subjects": [list(c) for c in plan.extra],
        "memorisation": audit,
        "seconds": {
            "fine_tune": round(t1 - t0, 2),
            "sample": round(t2 - t1, 2),
            "classifiers": round(t3 - t2, 2),
            "total": round(time.perf_counter() - t0, 2),
        },
    }
    artifacts.write_work_record(params, plan.name, record)
    log.info(
        "draw %s: fine-tune %.0f s, sampling %.0f s, classifiers %.0f s",
        plan.name,
        t1 - t0,
        t2 - t1,
        t3 - t2,
    )
    return record


def run_ceiling(params: Params, pools: Pools, evals: dict[str, EvalSet]) -> dict:
    """The ceiling arm: every training-pool subject (once per run)."""
    found = artifacts.load_work_record(params, "ceiling")
    if found is not None:
        return found
    acfg: AugmentConfig = params.stage(AugmentConfig)
    train = pools["train"]
    scores = {
        f"ceiling|{k}": s.astype(np.float32)
        for k, s in _fit_all(acfg, train.images, train.y, evals, acfg.seed).items()
    }
    artifacts.write_work_arrays(params, "ceiling", scores)
    record = {"name": "ceiling", "subjects": train.subjects()}
    artifacts.write_work_record(params, "ceiling", record)
    return record


def load_scores(params: Params, name: str) -> dict[str, np.ndarray]:
    """The scores of a finished draw (or of the ceiling), samples left out."""
    arrays = artifacts.load_work_arrays(params, name) or {}
    return {k: v for k, v in arrays.items() if not k.startswith("__")}
