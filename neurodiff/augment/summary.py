"""From the finished draws to the experiment's tables: tuning, AUROCs, gains, worth, leak.

1. **Tuning on the validation pool** (never the test pool): for every classifier, arm and ``n``,
   the setting (``C``; CNN length; B's strength) with the best mean validation AUROC over the
   draws.
2. **AUROC** of every arm at its tuned setting, on the test pool and on the out-of-distribution
   pool, with the hierarchical bootstrap of :mod:`.stats` (draws with their generators, test
   subjects shared across arms and n).
3. **Gains** over tuned A with their intervals; the **primary endpoint** (C with the largest
   synthetic count minus A at ``primary_n``, logistic regression, test pool) on its own, with
   the share of its spread that comes from the draws and from the test subjects (and so how many
   draws a half-width of 0.05 needs); every other gain, on the test and the out-of-distribution
   pool, the leak (``C_pool`` minus the draw's own C) and the gain over ``A_H`` with
   Holm-adjusted p-values (normal approximation from the bootstrap's standard error). The E_k
   rows are points of the real learning curve, not hypotheses: outside the family.
4. **Worth N** from the fitted real learning curve, with a bootstrap interval (the curve refitted
   on each of :data:`WORTH_REPLICATES` replicates) and the share of replicates censored at the
   pool size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..config import AugmentConfig
from .arms import Arm, arms_of
from .classify import CLASSIFIERS, auroc
from .stats import (
    BootstrapWeights,
    auroc_replicates,
    draws_for,
    fit_curve,
    holm,
    interval,
    p_value,
    sd_split,
    worth_of,
)

__all__ = ["WORTH_REPLICATES", "primary_arm", "summarise_draws"]

#: Bootstrap replicates the worth's interval refits the curve on.
WORTH_REPLICATES = 200
_REPORT_POOLS = ("test", "ood")


def primary_arm(acfg: AugmentConfig) -> Arm:
    """The arm of the primary endpoint: C with the largest synthetic count."""
    return Arm("C", max(acfg.augment_synthetic))


def _settings(scores: dict[str, np.ndarray], arm: str, clf: str) -> list[str]:
    head = f"{arm}|{clf}|"
    return sorted({k[len(head) :].rsplit("|", 1)[0] for k in scores if k.startswith(head)})


def _tune(draws: dict[int, list[dict]], ceiling: dict, evals: dict, acfg: AugmentConfig):
    """``{(clf, arm, n): setting}`` chosen on the validation pool, and the tuning table."""
    y = evals["validation"].y
    chosen, rows = {}, []
    for clf in CLASSIFIERS:
        for arm in arms_of(acfg):
            for n in acfg.augment_n if arm.per_draw else [None]:
                per = draws[n] if n is not None else [ceiling]
                settings = _settings(per[0], arm.name, clf)
                val = {
                    s: float(
                        np.mean([auroc(d[f"{arm.name}|{clf}|{s}|validation"], y) for d in per])
                    )
                    for s in settings
                }
                best = max(settings, key=lambda s: (val[s], -settings.index(s)))
                chosen[(clf, arm.name, n)] = best
                rows.append(
                    {
                        "classifier": clf,
                        "arm": arm.name,
                        "n": n if n is not None else "all",
                        "setting": best,
                        "validation auroc": round(val[best], 4),
                        "settings tried": len(settings),
                    }
                )
    return chosen, pd.DataFrame(rows)


def _replicates(draws, ceiling, evals, chosen, acfg: AugmentConfig, pool: str):
    """``{(clf, arm, n): (estimate, replicates)}`` on ``pool`` (ceiling under n None)."""
    y = evals[pool].y
    w = BootstrapWeights(
        y, {n: len(draws[n]) for n in acfg.augment_n}, acfg.augment_bootstrap, acfg.seed
    )
    out = {}
    for clf in CLASSIFIERS:
        for arm in arms_of(acfg):
            for n in acfg.augment_n if arm.per_draw else [None]:
                s = chosen[(clf, arm.name, n)]
                per = draws[n] if n is not None else [ceiling]
                scores = np.stack([d[f"{arm.name}|{clf}|{s}|{pool}"] for d in per])
                out[(clf, arm.name, n)] = auroc_replicates(scores, w, n)
    return out


def _rows(reps, acfg: AugmentConfig, pool: str, m_max: int, pool_size: int) -> list[dict]:
    rows = []
    for (clf, arm_name, n), (est, r) in reps.items():
        arm = Arm.parse(arm_name)
        lo, hi = interval(r)
        row = {
            "pool": pool,
            "classifier": clf,
            "n": n if n is not None else pool_size,
            "arm": arm_name,
            "description": arm.describe(m_max),
            "real subjects per class": (n or 0) + (arm.count if arm.kind == "E" else 0)
            if arm.uses_real
            else (pool_size if arm.kind == "ceiling" else 0),
            "auroc": est,
            "ci_low": lo,
            "ci_high": hi,
        }
        rows.append(row)
    return rows


def _gain_rows(reps, acfg: AugmentConfig, pool: str) -> list[dict]:
    """Every arm minus A, C minus A_H, and the leak C_pool minus the draw's own C."""
    top = primary_arm(acfg).name
    rows = []
    for clf in CLASSIFIERS:
        for n in acfg.augment_n:
            base = {name: reps[(clf, name, n)] for name in ("A", "A_H", top)}
            pairs = [
                (a.name, "A") for a in arms_of(acfg) if a.per_draw and a.kind not in ("A", "C_pool")
            ]
            pairs += [(top, "A_H"), ("C_pool", top)]
            for arm, ref in pairs:
                est, r = reps[(clf, arm, n)]
                g_r = r - base[ref][1]
                gain = est - base[ref][0]
                lo, hi = interval(g_r)
                rows.append(
                    {
                        "pool": pool,
                        "classifier": clf,
                        "n": n,
                        "comparison": f"{arm} - {ref}",
                        "arm": arm,
                        "reference": ref,
                        "gain": gain,
                        "ci_low": lo,
                        "ci_high": hi,
                        "p": p_value(gain, g_r),
                        "primary": bool(
                            pool == "test"
                            and clf == "logistic"
                            and n == acfg.primary_n
                            and arm == top
                            and ref == "A"
                        ),
                    }
                )
    return rows


def _curve_points(reps, acfg: AugmentConfig, clf: str, pool_size: int, b: int | None):
    """Real-only points ``(m, auroc)``: A at n, E_k at n + k, the ceiling at the pool size."""
    pts = []
    for n in acfg.augment_n:
        pts.append((n, reps[(clf, "A", n)][0] if b is None else reps[(clf, "A", n)][1][b]))
        for k in acfg.augment_real_k:
            v = reps[(clf, f"E{k}", n)]
            pts.append((n + k, v[0] if b is None else v[1][b]))
    c = reps[(clf, "ceiling", None)]
    pts.append((pool_size, c[0] if b is None else c[1][b]))
    m, v = np.array(pts).T
    return m, v


def _worth(reps, acfg: AugmentConfig, pool: str, pool_size: int):
    """The worth table (every non-real arm at every n) and the fitted curves."""
    rows, curves = [], []
    shown = [a.name for a in arms_of(acfg) if a.kind in ("B", "C", "C_pool", "A_H")]
    n_rep = min(WORTH_REPLICATES, acfg.augment_bootstrap)
    for clf in CLASSIFIERS:
        m, v = _curve_points(reps, acfg, clf, pool_size, None)
        curve = fit_curve(m, v)
        fits = [fit_curve(*_curve_points(reps, acfg, clf, pool_size, b)) for b in range(n_rep)]
        grid = np.unique(np.geomspace(1, pool_size, 40))
        curves += [
            {"pool": pool, "classifier": clf, "subjects per class": g, "fitted auroc": f}
            for g, f in zip(grid, curve[0] - curve[1] * grid ** (-curve[2]), strict=True)
        ]
        for n in acfg.augment_n:
            ref, ref_r = reps[(clf, "A", n)]
            for name in shown:
                val, val_r = reps[(clf, name, n)]
                value, how = worth_of(val, ref, curve, pool_size)
                sample = [worth_of(val_r[b], ref_r[b], fits[b], pool_size) for b in range(n_rep)]
                lo, hi = interval(np.array([v for v, _ in sample]))
                censored = float(np.mean([h == "at least" for _, h in sample]))
                rows.append(
                    {
                        "pool": pool,
                        "classifier": clf,
                        "n": n,
                        "arm": name,
                        "auroc": val,
                        "a auroc": ref,
                        "worth (real subjects per class)": value,
                        "how": how,
                        "ci_low": lo,
                        "ci_high": hi,
                        "censored replicates": censored,
                        "curve a": curve[0],
                        "curve b": curve[1],
                        "curve c": curve[2],
                    }
                )
    return rows, curves


def summarise_draws(
    draws: dict[int, list[dict[str, np.ndarray]]],
    ceiling: dict[str, np.ndarray],
    evals: dict,
    acfg: AugmentConfig,
    pool_size: int,
) -> dict[str, Any]:
    """Every table of the experiment from the draws' scores (``{n: [scores of each draw]}``)
    and the ceiling's; ``pool_size``: training-pool subjects per class."""
    m_max = max(acfg.augment_synthetic)
    chosen, tuning = _tune(draws, ceiling, evals, acfg)
    top = primary_arm(acfg).name
    draws_scores = {  # the primary's two arms at their tuned settings, test pool
        (acfg.primary_n, arm): [
            d[f"{arm}|logistic|{chosen[('logistic', arm, acfg.primary_n)]}|test"]
            for d in draws[acfg.primary_n]
        ]
        for arm in ("A", top)
    }
    table, gains, worth, curves = [], [], [], []
    for pool in _REPORT_POOLS:
        reps = _replicates(draws, ceiling, evals, chosen, acfg, pool)
        table += _rows(reps, acfg, pool, m_max, pool_size)
        gains += _gain_rows(reps, acfg, pool)
        w, c = _worth(reps, acfg, pool, pool_size)
        worth += w
        curves += c
    gains_df = pd.DataFrame(gains)
    # the family: every comparison of both pools and learners but the primary one and the E_k
    # rows (points of the real learning curve, not hypotheses)
    family = ~gains_df["primary"] & ~gains_df["arm"].str.match(r"E\d")
    gains_df["p_holm"] = np.nan
    gains_df.loc[family, "p_holm"] = holm(gains_df.loc[family, "p"].to_numpy())
    primary = gains_df[gains_df["primary"]].iloc[0]
    top = primary_arm(acfg).name
    sd_draws, sd_test = sd_split(
        np.stack(draws_scores[(acfg.primary_n, top)]),
        np.stack(draws_scores[(acfg.primary_n, "A")]),
        evals["test"].y,
        acfg.augment_bootstrap,
        acfg.seed,
    )
    half = float((primary["ci_high"] - primary["ci_low"]) / 2)
    endpoint = {
        "statement": primary_statement(acfg),
        "gain": float(primary["gain"]),
        "ci_low": float(primary["ci_low"]),
        "ci_high": float(primary["ci_high"]),
        "half_width": half,
        "p": float(primary["p"]),
        "draws": len(draws[acfg.primary_n]),
        "sd_from_draws": sd_draws,
        "sd_from_test_subjects": sd_test,
        "draws_for_half_width_0.05": draws_for(0.05, sd_draws, sd_test, len(draws[acfg.primary_n])),
    }
    return {
        "table": pd.DataFrame(table),
        "gains": gains_df,
        "worth": pd.DataFrame(worth),
        "curve": pd.DataFrame(curves),
        "tuning": tuning,
        "primary": endpoint,
    }


def primary_statement(acfg: AugmentConfig) -> str:
    """The primary endpoint in words, as the chapter states it before any result."""
    m = max(acfg.augment_synthetic)
    return (
        f"the difference in test-pool AUROC between arm C{m} (the draw's {acfg.primary_n} real "
        f"subjects per class + {m} synthetic images per class from the draw's own generator) and "
        f"arm A (the same real subjects alone), both with the logistic regression tuned on the "
        f"validation pool, at n = {acfg.primary_n}; 95 % interval from the hierarchical "
        "bootstrap over draws (each with its own generator) and test subjects"
    )
