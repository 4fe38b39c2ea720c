"""Stage 6 itself: every arm at every n, many draws, paired intervals, and the read-off.

Arms (each trained on images of both classes, judged on the held-out real test subjects):

* ``A`` real only -- ``n`` subjects per class;
* ``B`` real + classical augmentation -- ``m_max`` randomly transformed copies per class;
* ``C<m>`` real + ``m`` synthetic images per class, for each ``m`` of ``augment_synthetic``;
* ``D`` synthetic only -- ``m_max`` synthetic images per class, no real image (one value per
  draw of the synthetic images, the same for every ``n``);
* ``E`` real + ``m_max`` images per class of *new* subjects (the oracle: what more real data
  gives).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import AugmentConfig, Params
from ..io import atomic_dir, atomic_write_json, shown_path
from ..runs import read_run, record_run
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
from .stats import bootstrap_aurocs, interval, real_curve, worth

__all__ = ["AugmentResult", "arm_names", "experiment", "run"]

log = logging.getLogger(__name__)

_FORMAT = "neurodiff-augment/1"


def arm_names(acfg: AugmentConfig, oracle: bool = True) -> list[str]:
    """The arms in table order."""
    return (
        ["A", "B"] + [f"C{m}" for m in acfg.augment_synthetic] + ["D"] + (["E"] if oracle else [])
    )


def describe_arm(arm: str, acfg: AugmentConfig) -> str:
    m = max(acfg.augment_synthetic)
    if arm.startswith("C"):
        return f"real + {arm[1:]} synthetic per class"
    return {
        "A": "real only",
        "B": f"real + {m} classical augmentations per class",
        "D": f"synthetic only ({m} per class)",
        "E": f"real + {m} images of new subjects per class (oracle)",
    }[arm]


def _arm_training(
    arm: str, data: ExperimentData, real_x, real_y, rng: np.random.Generator, m_max: int
):
    """The training images and labels of one arm for one draw (``real_x`` already drawn)."""
    if arm == "A":
        return real_x, real_y, []
    if arm == "B":
        x, y = classical_copies(real_x, real_y, m_max, rng)
        return np.concatenate([real_x, x]), np.concatenate([real_y, y]), []
    if arm.startswith("C"):
        x, y = synthetic_images(data, int(arm[1:]), rng)
        return np.concatenate([real_x, x]), np.concatenate([real_y, y]), []
    if arm == "D":
        x, y = synthetic_images(data, m_max, rng)
        return x, y, []
    x, y, used = oracle_images(data, m_max, rng)
    return np.concatenate([real_x, x]), np.concatenate([real_y, y]), used


def experiment(data: ExperimentData, acfg: AugmentConfig) -> dict[str, Any]:
    """Fit every arm on every draw; return the test subjects' scores
    ``(arms, len(augment_n), draws, test subjects)``, the subjects each draw used and the test
    subjects' labels."""
    arms = arm_names(acfg, data.oracle is not None)
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
                if arm == "D" and j > 0:  # D does not depend on n: the draws of the first n
                    scores[a, j, d] = scores[a, 0, d]
                    continue
                x, y, extra = _arm_training(arm, data, real_x, real_y, dr.rng, m_max)
                if extra:
                    used[f"n{n}-d{d}-{arm}"] = extra
                s = fit_score(features(x), y, test_x, acfg.classifier_c)
                scores[a, j, d] = subject_scores(s, data.test_subject, order)
    y_test = np.array([label_of[s] for s in order])
    return {"arms": arms, "scores": scores, "subjects": order, "y": y_test, "used": used}


def summarise(raw: dict[str, Any], acfg: AugmentConfig, slices: float) -> dict[str, pd.DataFrame]:
    """AUROC of every arm and n with a paired-bootstrap 95 % interval, the gain over A, and the
    "worth N real subjects" of every C arm (read off the curve of arms A and E)."""
    arms, scores, y = raw["arms"], raw["scores"], raw["y"]
    m_max = max(acfg.augment_synthetic)
    rng = np.random.default_rng([acfg.seed, 6])
    rows, est_all, reps_all = [], {}, {}
    for j, n in enumerate(acfg.augment_n):
        pairs = np.stack(
            [
                np.stack([pair_matrix(scores[a, j, d], y) for d in range(scores.shape[2])])
                for a in range(len(arms))
            ]
        )
        est, reps = bootstrap_aurocs(pairs, acfg.augment_bootstrap, rng)
        est_all[n], reps_all[n] = est, reps
        for a, arm in enumerate(arms):
            gain = est[a] - est[0]
            g_reps = reps[a] - reps[0]
            lo, hi = interval(est[a], reps[a])
            glo, ghi = interval(gain, g_reps)
            added = 0 if arm == "A" else (int(arm[1:]) if arm.startswith("C") else m_max)
            real_images = 0 if arm == "D" else n * slices
            rows.append(
                {
                    "n": n,
                    "arm": arm,
                    "description": describe_arm(arm, acfg),
                    "added per class": added,
                    "added / real": added / real_images if real_images else np.inf,
                    "auroc": float(est[a]),
                    "ci_low": lo,
                    "ci_high": hi,
                    "gain": float(gain) if arm != "A" else np.nan,
                    "gain_low": glo if arm != "A" else np.nan,
                    "gain_high": ghi if arm != "A" else np.nan,
                    "gain > 0 in": float((g_reps > 0).mean()) if arm != "A" else np.nan,
                }
            )
    table = pd.DataFrame(rows)
    return {"table": table, "worth": _worth_table(table, reps_all, arms, acfg, slices)}


def _worth_table(table, reps_all, arms, acfg: AugmentConfig, slices: float) -> pd.DataFrame:
    """Each C arm's AUROC placed on the real-data curve (A at n, E at n + new subjects)."""
    has_e = "E" in arms
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
            if not arm.startswith("C"):
                continue
            value, how = worth(est[(n, arm)], n, ks, curve)
            reps = []
            for b in range(n_boot):
                vb = {(n2, a2): reps_all[n2][i, b] for n2 in ns for i, a2 in enumerate(arms)}
                kb, cb = curve_of(vb)
                reps.append(worth(vb[(n, arm)], n, kb, cb)[0])
            lo, hi = np.quantile(reps, [0.025, 0.975])
            rows.append(
                {
                    "n": n,
                    "arm": arm,
                    "worth (real subjects per class)": value,
                    "how": how,
                    "ci_low": float(lo),
                    "ci_high": float(hi),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["curve"] = {"subjects": ks.tolist(), "auroc": curve.tolist()}
    return out


@dataclass
class AugmentResult:
    """What :func:`run` produced (or found)."""

    table: pd.DataFrame
    worth: pd.DataFrame
    classifier_check: pd.DataFrame
    atrophy: pd.DataFrame
    info: dict[str, Any]
    out_dir: Path
    cached: bool = False
    seconds: float = 0.0
    scores: dict[str, Any] = field(default_factory=dict, repr=False)

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


def run(params: Params, force: bool = False) -> AugmentResult:
    """Stage 6: the whole experiment for ``params`` (kept in ``artifacts.augment_dir(params)``,
    reused when the same parameters ran before)."""
    acfg: AugmentConfig = params.stage(AugmentConfig)
    out_dir = artifacts.augment_dir(params)
    if not force and read_run(out_dir).complete and (out_dir / "augment.json").is_file():
        return _load(out_dir, cached=True)
    t0 = time.perf_counter()
    data = load_data(params)
    log.info(
        "augmentation experiment: n = %s per class, %d draws, %d test subjects",
        list(acfg.augment_n),
        acfg.augment_draws,
        len(set(data.test_subject)),
    )
    raw = experiment(data, acfg)
    slices = data.slices_per_subject
    summary = summarise(raw, acfg, slices)
    check = classifier_check(data, acfg.classifier_c)
    atrophy = atrophy_proxy(data, acfg.seed)
    seconds = time.perf_counter() - t0
    info = {
        "format": _FORMAT,
        "params_hash": params.hash(),
        "groups": list(data.groups),
        "arms": raw["arms"],
        "arm_descriptions": {a: describe_arm(a, acfg) for a in raw["arms"]},
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
        "new_subjects_per_class_in_E": max(acfg.augment_synthetic) / slices,
        "curve": summary["worth"].attrs.get("curve"),
        "atrophy_threshold": atrophy.attrs["threshold"],
        "bootstrap": acfg.augment_bootstrap,
        "seconds": round(seconds, 2),
    }
    with atomic_dir(out_dir) as tmp:  # run.json follows, once the folder is complete
        np.savez_compressed(
            tmp / "scores.npz",
            scores=raw["scores"],
            subjects=np.array(raw["subjects"]),
            y=raw["y"],
        )
        (tmp / "draws.json").write_text(json.dumps(raw["used"], indent=1) + "\n")
        for name, frame in (
            ("table", summary["table"]),
            ("worth", summary["worth"]),
            ("classifier_check", check),
            ("atrophy", atrophy),
        ):
            frame.to_csv(tmp / f"{name}.tsv", sep="\t", index=False)
        atomic_write_json(tmp / "augment.json", info)
    record_run(params, artifacts.AUGMENT)
    return _load(out_dir, cached=False, seconds=seconds)


def _load(out_dir: Path, cached: bool, seconds: float = 0.0) -> AugmentResult:
    info = json.loads((out_dir / "augment.json").read_text())

    def tsv(name: str) -> pd.DataFrame:
        return pd.read_csv(out_dir / f"{name}.tsv", sep="\t")

    raw = np.load(out_dir / "scores.npz")
    return AugmentResult(
        table=tsv("table"),
        worth=tsv("worth"),
        classifier_check=tsv("classifier_check"),
        atrophy=tsv("atrophy"),
        info=info,
        out_dir=out_dir,
        cached=cached,
        seconds=seconds or info.get("seconds", 0.0),
        scores={k: raw[k] for k in raw.files},
    )
