"""The per-group view of stage 5: each group's synthetic images against its own real subjects.

The report's realism is measured on the healthy controls, as the paper measured healthy
subjects (:func:`.stage.reference_group`). A class-conditional model also makes patients, and
with few real patients the risks are highest -- above all that the model copies the training
patients. So every group is measured the same way: its synthetic images against its real test
subjects, the memorisation audit against its training subjects, with the one split's
real-vs-real baseline (train vs test of that group, bootstrap intervals; no redraws: the patient
group is too small to redraw).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import metrics_dir
from ..config import MetricsConfig
from ..device import resolve_device
from ..errors import MetricError
from ..features import get_extractor
from ..io import atomic_write_json
from .results import jsonable
from .stage import evaluate_inputs, load_inputs

__all__ = ["GROUP_METRICS", "by_group", "flagged_copies", "group_table"]

log = logging.getLogger(__name__)

#: The metrics of the per-group table.
GROUP_METRICS = ("fid", "precision", "recall", "coverage", "memorised_fraction", "nn_ssim")

_FILE = "by_group.json"


def by_group(params: Any, force: bool = False) -> pd.DataFrame:
    """One row per group and metric: synthetic vs real test, real vs real, verdict, and the
    number of flagged copies of training images of that group.

    Computed once per parameters and kept in ``by_group.json`` beside ``metrics.json``.
    Raises :class:`~neurodiff.errors.MetricError` for an unconditional model (no groups).
    """
    groups = list(params["groups"])
    if not groups:
        raise MetricError(
            "the per-group view needs a class-conditional model; parameter 'groups' is empty"
        )
    path = metrics_dir(params) / _FILE
    if not force and path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("params_hash") == params.hash():
            return pd.DataFrame(stored["rows"]).set_index(["group", "metric"])
    cfg = params.stage(MetricsConfig)
    device = resolve_device(cfg.device)
    extractor = get_extractor(cfg.extractor, seed=cfg.seed, device=device)
    rows: list[dict[str, Any]] = []
    for group in groups:
        inputs = load_inputs(params, group=group)
        log.info(
            "group %r: %d real test, %d synthetic, %d training images",
            group,
            len(inputs["test"]),
            len(inputs["synthetic"]),
            len(inputs["train"]),
        )
        result = evaluate_inputs(inputs, cfg, extractor, device, per_group=True)
        subjects = {
            split: len(set(inputs[f"{split}_index"]["subject"])) for split in ("test", "train")
        }
        for name in GROUP_METRICS:
            m = result.metrics[name]
            rows.append(
                {
                    "group": group,
                    "metric": name,
                    "synthetic vs real": float(m.value),
                    "ci": [float(c) for c in m.ci],
                    "real vs real": float(m.baseline),
                    "real ci": [float(c) for c in m.baseline_ci],
                    "verdict": m.verdict,
                    "n synthetic": len(inputs["synthetic"]),
                    "test subjects": subjects["test"],
                    "train subjects": subjects["train"],
                    "flagged copies": int(result.audit.flagged.sum()),
                }
            )
    atomic_write_json(path, jsonable({"params_hash": params.hash(), "rows": rows}))
    return pd.DataFrame(rows).set_index(["group", "metric"])


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
    return frame


def flagged_copies(table: pd.DataFrame) -> dict[str, int]:
    """Synthetic images flagged as possible copies of a training image, per group."""
    return {
        str(g): int(np.asarray(t["flagged copies"])[0])
        for g, t in table.groupby(level="group", sort=False)
    }
