"""The per-group view of stage 5: each group's synthetic images against its own real subjects.

The report's realism is measured on the healthy controls, as the paper measured healthy
subjects (:func:`.inputs.reference_group`). A class-conditional model also makes patients, and
with few real patients the risks are highest -- above all that the model copies the training
patients. So every group is measured the same way: its synthetic images against its real test
subjects, the memorisation audit against its training subjects, and the real-vs-real range from
subject-level redraws of that group's own subjects, stratified by site as the split is (the
demo's 24 patients give 6 test subjects, two per site, against 18: thousands of distinct
redraws; a group with fewer distinct redraws than asked for says so in ``baseline from``). A
small group's range is wide, and honestly so: "inside" then means "not distinguishable with
this many subjects", not "as good as real". The synthetic-vs-real MMD test is run per group too
(``p``), calibrated on the same kind of redraws.

Each further group is also compared with the first as a whole: its difference map (mean image
minus the first group's), real against synthetic (:func:`.difference.difference_for`; rows
``difference_map_r`` and ``atrophy_effect_gap`` under that group), with the same intervals and
real-vs-real range.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..config import MetricsConfig
from ..device import resolve_device
from ..errors import MetricError
from ..features import get_extractor
from .difference import GroupDifference, difference_for
from .inputs import MetricsInputs, load_inputs
from .results import MetricsResult, jsonable
from .stage import evaluate_inputs

__all__ = ["GROUP_METRICS", "by_group", "flagged_copies", "group_table"]

log = logging.getLogger(__name__)

#: The make-up of ``by_group.json``'s rows; a stored file of another make-up is recomputed.
ROWS_VERSION = 3

#: The metrics of the per-group table.
GROUP_METRICS = (
    "fid",
    "kid",
    "mmd_rbf",
    "precision",
    "recall",
    "coverage",
    "memorised_fraction",
    "nn_ssim",
)


def by_group(params: Any, force: bool = False) -> pd.DataFrame:
    """One row per group and metric: synthetic vs real test, real vs real, verdict, and the
    number of flagged copies of training images of that group; under each group after the
    first, also the rows of its difference map against the first (``difference_map_r``,
    ``atrophy_effect_gap``, with the region of interest and each map's mean there).

    Computed once per parameters and kept in ``by_group.json`` beside ``metrics.json``
    (:func:`neurodiff.artifacts.load_by_group`, :func:`neurodiff.artifacts.write_by_group`).
    Raises :class:`~neurodiff.errors.MetricError` for an unconditional model (no groups).
    """
    groups = list(params["groups"])
    if not groups:
        raise MetricError(
            "the per-group view needs a class-conditional model; parameter 'groups' is empty"
        )
    stored = None if force else artifacts.load_by_group(params)
    current = stored is not None and stored.get("rows_version") == ROWS_VERSION
    if current and stored.get("params_hash") == params.hash():
        return pd.DataFrame(stored["rows"]).set_index(["group", "metric"])
    cfg = params.stage(MetricsConfig)
    device = resolve_device(cfg.device)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=device)
    rows: list[dict[str, Any]] = []
    loaded: dict[str, MetricsInputs] = {}
    flagged: dict[str, int] = {}
    levels: dict[str, Any] = {}
    for group in groups:
        inputs = loaded[group] = load_inputs(params, group=group)
        log.info(
            "group %r: %d real test, %d synthetic, %d training images",
            group,
            len(inputs.test),
            len(inputs.synthetic),
            len(inputs.train),
        )
        result = evaluate_inputs(
            inputs, cfg, extractor, device, per_group=True, params_hash=params.hash()
        )
        rows.extend(_group_rows(group, inputs, result))
        flagged[group] = int(result.audit.flagged.sum())
        levels[group] = result.data.tissue  # the levels the images were placed at
    for case in groups[1:]:
        diff = difference_for(params, loaded[case], loaded[groups[0]], levels)
        rows.extend(_difference_rows(diff, loaded[case], loaded[groups[0]], flagged[case]))
    payload = {"params_hash": params.hash(), "rows_version": ROWS_VERSION, "rows": rows}
    artifacts.write_by_group(params, jsonable(payload))
    return pd.DataFrame(rows).set_index(["group", "metric"])


def _cells(m: Any) -> dict[str, Any]:
    """A metric's value, interval, real-vs-real range and verdict, as a row of ``by_group.json``."""
    return {
        "synthetic vs real": float(m.value),
        "ci": [float(c) for c in m.ci],
        "real vs real": float(m.baseline),
        "real ci": [float(c) for c in m.baseline_ci],
        "verdict": m.verdict,
        "baseline from": m.extra.get("baseline_from", "the one split (bootstrap)"),
    }


def _group_rows(group: str, inputs: MetricsInputs, result: MetricsResult) -> list[dict[str, Any]]:
    """The rows of :func:`by_group` of one group: one per metric of :data:`GROUP_METRICS`."""
    rows = []
    for name in GROUP_METRICS:
        m = result.metrics[name]
        rows.append(
            {
                "group": group,
                "metric": name,
                **_cells(m),
                "p": m.extra.get("p_value"),
                "n synthetic": len(inputs.synthetic),
                "test subjects": inputs.n_subjects("test"),
                "train subjects": inputs.n_subjects("train"),
                "flagged copies": int(result.audit.flagged.sum()),
            }
        )
    return rows


def _difference_rows(
    diff: GroupDifference, case: MetricsInputs, reference: MetricsInputs, flagged: int
) -> list[dict[str, Any]]:
    """The rows of the group difference map (:func:`.difference.difference_for`), under the case
    group: its metrics are about that group against the reference group."""
    rows = []
    for name, m in diff.metrics.items():
        rows.append(
            {
                "group": diff.case,
                "metric": name,
                **_cells(m),
                "p": None,
                "n synthetic": len(case.synthetic) + len(reference.synthetic),
                "test subjects": case.n_subjects("test") + reference.n_subjects("test"),
                "train subjects": case.n_subjects("train") + reference.n_subjects("train"),
                "flagged copies": flagged,
                "against": diff.reference,
                "roi": diff.roi_source,
                "real roi difference": m.extra["real_roi_difference"],
                "synthetic roi difference": m.extra["synthetic_roi_difference"],
            }
        )
    return rows


def group_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`by_group` for reading: value [CI] and real vs real [CI] as text, one row per
    metric, one column pair per group."""

    def fmt(v: float, ci: Any) -> str:
        return f"{v:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]"

    out = {}
    for (group, metric), r in table.iterrows():
        out.setdefault(metric, {})[(group, "synthetic vs real")] = fmt(
            r["synthetic vs real"], r["ci"]
        )
        out[metric][(group, "real vs real")] = fmt(r["real vs real"], r["real ci"])
        out[metric][(group, "verdict")] = r["verdict"]
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame.fillna("–")  # the difference map's rows: the case group's columns only


def flagged_copies(table: pd.DataFrame) -> dict[str, int]:
    """Synthetic images flagged as possible copies of a training image, per group."""
    return {
        str(g): int(np.asarray(t["flagged copies"])[0])
        for g, t in table.groupby(level="group", sort=False)
    }
