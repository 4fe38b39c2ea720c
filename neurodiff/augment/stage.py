"""Stage 6 itself: every arm at every n, many draws, paired intervals, and the read-off.

Arms (:class:`.arms.Arm`; each trained on images of both classes, judged on the held-out real
test subjects):

* ``A`` real only -- ``n`` subjects per class;
* ``B`` real + classical augmentation -- ``m_max`` randomly transformed copies per class;
* ``C<m>`` real + ``m`` synthetic images per class, for each ``m`` of ``augment_synthetic``;
* ``D`` synthetic only -- ``m_max`` synthetic images per class, no real image (one value per
  draw of the synthetic images, the same for every ``n``);
* ``E`` real + ``m_max`` images per class of *new* subjects (the oracle: what more real data
  gives).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import AugmentConfig, Params
from ..errors import DataError
from ..io import shown_path
from ..measures.intervals import percentile_interval
from ..registry import AUGMENT
from ..runs import record_run
from .arms import Arm, arms_of
from .checks import atrophy_proxy, classifier_check
from .classify import features, fit_score, pair_matrix, subject_scores
from .data import (
    ExperimentData,
    classical_copies,
    draw,
    load_data,
    oracle_images,
    synthetic_images,
)
from .stats import bootstrap_aurocs, real_curve, worth

__all__ = ["AugmentResult", "experiment", "load", "run", "summarise"]

log = logging.getLogger(__name__)


def _arm_training(
    arm: Arm, data: ExperimentData, real_x, real_y, rng: np.random.Generator, m_max: int
):
    """The training images and labels of one arm for one draw (``real_x`` already drawn)."""
    if arm.kind == "A":
        return real_x, real_y, []
    if arm.kind == "B":
        x, y = classical_copies(real_x, real_y, m_max, rng)
        return np.concatenate([real_x, x]), np.concatenate([real_y, y]), []
    if arm.kind == "C":
        x, y = synthetic_images(data, arm.added(m_max), rng)
        return np.concatenate([real_x, x]), np.concatenate([real_y, y]), []
    if arm.kind == "D":
        x, y = synthetic_images(data, m_max, rng)
        return x, y, []
    x, y, used = oracle_images(data, m_max, rng)
    return np.concatenate([real_x, x]), np.concatenate([real_y, y]), used


def experiment(data: ExperimentData, acfg: AugmentConfig) -> dict[str, Any]:
    """Fit every arm on every draw; return the arms (:class:`.arms.Arm`, table order), the test
    subjects' scores ``(arms, len(augment_n), draws, test subjects)``, the subjects each draw
    used and the test subjects' labels."""
    arms = arms_of(acfg, data.oracle is not None)
    m_max = max(acfg.augment_synthetic)
    order = sorted(set(data.test_subject.tolist()))
    label_of = dict(zip(data.test_subject.tolist(), data.test_y.tolist(), strict=True))
    test_x = features(data.test)
    shape = (len(arms), len(acfg.augment_n), acfg.augment_draws, len(order))
    scores = np.zeros(shape)
    used: dict[str, list[str]] = {}
    for j, n in enumerate(acfg.augment_n):
        for d in range(acfg.augment_draws):
            dr = draw(data, n, d, acfg.seed)
            real_x, real_y = data.train[dr.real], data.train_y[dr.real]
            used[f"n{n}-d{d}-real"] = dr.subjects
            for a, arm in enumerate(arms):
                if not arm.uses_real and j > 0:  # D does not depend on n: the first n's draws
                    scores[a, j, d] = scores[a, 0, d]
                    continue
                x, y, extra = _arm_training(arm, data, real_x, real_y, dr.rng, m_max)
                if extra:
                    used[f"n{n}-d{d}-{arm.name}"] = extra
                s = fit_score(features(x), y, test_x, acfg.classifier_c)
                scores[a, j, d] = subject_scores(s, data.test_subject, order)
    y_test = np.array([label_of[s] for s in order])
    return {"arms": arms, "scores": scores, "subjects": order, "y": y_test, "used": used}


def summarise(raw: dict[str, Any], acfg: AugmentConfig, slices: float) -> dict[str, pd.DataFrame]:
    """AUROC of every arm and n with a paired-bootstrap 95 % interval, the gain over A, and the
    "worth N real subjects" of every C arm (read off the curve of arms A and E)."""
    arms: list[Arm] = raw["arms"]
    scores, y = raw["scores"], raw["y"]
    m_max = max(acfg.augment_synthetic)
    rng = np.random.default_rng([acfg.seed, 6])
    rows, reps_all = [], {}
    for j, n in enumerate(acfg.augment_n):
        pairs = np.stack(
            [
                np.stack([pair_matrix(scores[a, j, d], y) for d in range(scores.shape[2])])
                for a in range(len(arms))
            ]
        )
        est, reps = bootstrap_aurocs(pairs, acfg.augment_bootstrap, rng)
        reps_all[n] = reps
        for a, arm in enumerate(arms):
            gain = est[a] - est[0]
            g_reps = reps[a] - reps[0]
            lo, hi = percentile_interval(reps[a])
            glo, ghi = percentile_interval(g_reps)
            added = arm.added(m_max)
            real_images = n * slices if arm.uses_real else 0
            first = arm.kind == "A"  # the reference: no gain over itself
            rows.append(
                {
                    "n": n,
                    "arm": arm.name,
                    "description": arm.describe(m_max),
                    "added per class": added,
                    "added / real": added / real_images if real_images else np.inf,
                    "auroc": float(est[a]),
                    "ci_low": lo,
                    "ci_high": hi,
                    "gain": np.nan if first else float(gain),
                    "gain_low": np.nan if first else glo,
                    "gain_high": np.nan if first else ghi,
                    "gain > 0 in": np.nan if first else float((g_reps > 0).mean()),
                }
            )
    table = pd.DataFrame(rows)
    return {"table": table, "worth": _worth_table(table, reps_all, arms, acfg, slices)}


def _worth_table(
    table: pd.DataFrame, reps_all, arms: list[Arm], acfg: AugmentConfig, slices: float
) -> pd.DataFrame:
    """Each C arm's AUROC placed on the real-data curve (A at n, E at n + new subjects)."""
    has_e = any(arm.kind == "E" for arm in arms)
    new_subjects = max(acfg.augment_synthetic) / slices
    rows = []
    ns = list(acfg.augment_n)

    def curve_of(values: dict[tuple[int, str], float]):
        points = [(n, values[(n, "A")]) for n in ns]
        if has_e:
            points += [(n + new_subjects, values[(n, "E")]) for n in ns]
        return real_curve(points)

    est = {(r.n, r.arm): r.auroc for r in table.itertuples()}
    ks, curve = curve_of(est)
    n_boot = next(iter(reps_all.values())).shape[1]
    for n in ns:
        for arm in arms:
            if arm.kind != "C":
                continue
            value, how = worth(est[(n, arm.name)], n, ks, curve)
            reps = []
            for b in range(n_boot):
                vb = {(n2, a2.name): reps_all[n2][i, b] for n2 in ns for i, a2 in enumerate(arms)}
                kb, cb = curve_of(vb)
                reps.append(worth(vb[(n, arm.name)], n, kb, cb)[0])
            lo, hi = percentile_interval(reps)
            rows.append(
                {
                    "n": n,
                    "arm": arm.name,
                    "worth (real subjects per class)": value,
                    "how": how,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["curve"] = {"subjects": ks.tolist(), "auroc": curve.tolist()}
    return out


@dataclass
class AugmentResult:
    """What :func:`run` produced, or :func:`load` found."""

    table: pd.DataFrame
    worth: pd.DataFrame
    classifier_check: pd.DataFrame
    atrophy: pd.DataFrame
    info: dict[str, Any]
    out_dir: Path
    cached: bool = False
    seconds: float = 0.0
    scores: dict[str, Any] = field(default_factory=dict, repr=False)
    draws: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_files(
        cls, files: artifacts.AugmentFiles, cached: bool, seconds: float = 0.0
    ) -> AugmentResult:
        """The result of the outputs :func:`neurodiff.artifacts.load_augment` read back."""
        return cls(
            **files.tables,
            info=files.info,
            out_dir=files.out_dir,
            cached=cached,
            seconds=seconds or files.info.get("seconds", 0.0),
            scores=files.scores,
            draws=files.draws,
        )

    def __str__(self) -> str:
        t = self.table
        lines = [
            f"augmentation experiment: {self.info['n_test_subjects']} test subjects, "
            f"{self.info['draws']} draws per n, arms {', '.join(self.info['arms'])}"
            + (" (found)" if self.cached else f" in {self.seconds:.1f} s"),
        ]
        for n, g in t.groupby("n", sort=True):
            parts = [f"{r.arm} {r.auroc:.3f}" for r in g.itertuples()]
            lines.append(f"  n={n}: AUROC " + ", ".join(parts))
        lines.append(f"outputs in {shown_path(self.out_dir)}")
        return "\n".join(lines)


def load(params: Params | str | Path) -> AugmentResult | None:
    """The finished experiment of ``params`` (or of a run folder), read back without computing
    anything; None when it has not run (or did not finish)."""
    files = artifacts.load_augment(params)
    return None if files is None else AugmentResult.from_files(files, cached=True)


def run(params: Params, force: bool = False) -> AugmentResult:
    """Stage 6: the whole experiment for ``params`` (kept in ``artifacts.augment_dir(params)``,
    reused when the same parameters ran before, unless ``force``)."""
    acfg: AugmentConfig = params.stage(AugmentConfig)
    found = None if force else load(params)
    if found is not None:
        return found
    t0 = time.perf_counter()
    data = load_data(params)
    log.info(
        "augmentation experiment: n = %s per class, %d draws, %d test subjects",
        list(acfg.augment_n),
        acfg.augment_draws,
        len(set(data.test_subject)),
    )
    raw = experiment(data, acfg)
    summary = summarise(raw, acfg, data.slices_per_subject)
    tables = {
        "table": summary["table"],
        "worth": summary["worth"],
        "classifier_check": classifier_check(data, acfg.classifier_c),
        "atrophy": atrophy_proxy(data, acfg.seed),
    }
    seconds = time.perf_counter() - t0
    scores = {"scores": raw["scores"], "subjects": np.array(raw["subjects"]), "y": raw["y"]}
    info = _info(params, acfg, data, raw, tables, seconds)
    artifacts.write_augment(params, info, tables, scores, raw["used"])
    record_run(params, AUGMENT)  # run.json follows, once the folder is complete
    files = artifacts.load_augment(params)
    if files is None:  # cannot happen: written and recorded just above
        raise DataError(f"the augmentation outputs in {artifacts.augment_dir(params)} vanished")
    return AugmentResult.from_files(files, cached=False, seconds=seconds)


def _info(
    params: Params,
    acfg: AugmentConfig,
    data: ExperimentData,
    raw: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    seconds: float,
) -> dict[str, Any]:
    """``augment.json``: what ran, on which pools, and the curve the worth was read off."""
    arms: list[Arm] = raw["arms"]
    m_max = max(acfg.augment_synthetic)
    slices = data.slices_per_subject
    return {
        "format": AUGMENT.format,
        "params_hash": params.hash(),
        "groups": list(data.groups),
        "arms": [arm.name for arm in arms],
        "arm_descriptions": {arm.name: arm.describe(m_max) for arm in arms},
        "draws": acfg.augment_draws,
        "n": list(acfg.augment_n),
        "synthetic_per_class": list(acfg.augment_synthetic),
        "slices_per_subject": slices,
        "n_test_subjects": len(raw["subjects"]),
        "test_subjects_per_group": {
            g: int((raw["y"] == k).sum()) for k, g in enumerate(data.groups)
        },
        "train_subjects_per_group": {
            g: len(data.subjects("train", k)) for k, g in enumerate(data.groups)
        },
        "oracle_subjects_per_group": {
            g: len(data.subjects("oracle", k)) for k, g in enumerate(data.groups)
        },
        "new_subjects_per_class_in_E": m_max / slices,
        "curve": tables["worth"].attrs.get("curve"),
        "atrophy_threshold": tables["atrophy"].attrs["threshold"],
        "bootstrap": acfg.augment_bootstrap,
        "seconds": round(seconds, 2),
    }
