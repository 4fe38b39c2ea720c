"""Result containers (one metric, one run), the tables and plain readings built from them, and
the Markdown summary of ``metrics.json`` that the book's Discussion includes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import registry
from ..io import shown_path
from ..measures.memorisation import MemorisationAudit

__all__ = [
    "DIFFERENCE_METRICS",
    "METRICS",
    "METRIC_SPECS",
    "PAPER_RESULTS",
    "MetricValue",
    "MetricsData",
    "MetricsResult",
    "comparison_table",
    "interpret",
    "jsonable",
    "results_markdown",
]


# name -> (label, which way is better, lower bound, upper bound)
METRICS: dict[str, tuple[str, str, float | None, float | None]] = {
    "mmd_linear": ("MMD (linear kernel, images; MONAI)", "lower", None, None),
    "mmd_rbf": ("MMD^2 (RBF kernel, features)", "lower", None, None),
    "fid": ("FID (features)", "lower", 0.0, None),
    "kid": ("KID (polynomial-kernel MMD^2, features; torchmetrics)", "lower", None, None),
    "ms_ssim_diversity": ("MS-SSIM within set (diversity)", "close to baseline", 0.0, 1.0),
    "precision": ("precision", "higher", 0.0, 1.0),
    "recall": ("recall", "higher", 0.0, 1.0),
    "density": ("density", "higher (about 1)", 0.0, None),
    "coverage": ("coverage", "higher", 0.0, 1.0),
    "memorised_fraction": (
        "memorised fraction (closer to train than 99% of test)",
        "lower",
        0.0,
        1.0,
    ),
    "nn_distance": ("median distance to nearest training sample", "close to baseline", 0.0, None),
    "nn_ssim": ("mean SSIM to nearest training sample", "close to baseline", -1.0, 1.0),
    "csf_fraction_gap": (
        "CSF fraction gap, synthetic vs real at matched slice levels",
        "lower",
        0.0,
        1.0,
    ),
    "gm_fraction_gap": (
        "grey-matter fraction gap, synthetic vs real at matched slice levels",
        "lower",
        0.0,
        1.0,
    ),
    "wm_fraction_gap": (
        "white-matter fraction gap, synthetic vs real at matched slice levels",
        "lower",
        0.0,
        1.0,
    ),
}

#: The metrics of the group difference map (``by_group.json`` only), in the form of
#: :data:`METRICS`.
DIFFERENCE_METRICS: dict[str, tuple[str, str, float | None, float | None]] = {
    "difference_map_r": (
        "group difference map (case - reference): correlation, real vs synthetic, in the brain",
        "higher",
        -1.0,
        1.0,
    ),
    "atrophy_effect_gap": (
        "group difference in the atrophy regions: synthetic - real",
        "close to baseline",
        None,
        None,
    ),
}

#: Every metric a :class:`MetricValue` can hold.
METRIC_SPECS = {**METRICS, **DIFFERENCE_METRICS}


PAPER_RESULTS: dict[str, str] = {
    "mmd_linear": "0.036 (kernel, features and image size not reported)",
    "mmd_rbf": "0.036 (kernel, features and image size not reported)",
    "fid": "'suboptimal' (no value reported)",
    "ms_ssim_diversity": "'suboptimal' (no value reported)",
}
"""What the paper (Basile et al. 2024, CEUR Vol-3880 paper 24) reports, by metric."""


@dataclass(frozen=True)
class MetricValue:
    """One metric: synthetic vs real, and real vs real, each with a 95 % CI."""

    name: str
    value: float
    ci: tuple[float, float]
    baseline: float
    baseline_ci: tuple[float, float]
    extractor: str
    n_real: int
    n_synthetic: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return METRIC_SPECS[self.name][0]

    @property
    def better(self) -> str:
        return METRIC_SPECS[self.name][1]

    @property
    def verdict(self) -> str:
        """``inside`` or ``outside`` the real-vs-real range (``baseline_ci``), by direction.

        For a lower-is-better metric (FID, MMD, memorised fraction) only the upper end counts: a
        value under the range is as good as real data. For a higher-is-better one (precision,
        recall, coverage) only the lower end. For the others (density, diversity, distances to
        the training set) both ends: too far from real data either way.
        """
        lo, hi = self.baseline_ci
        v = self.value
        if not all(np.isfinite(x) for x in (v, lo, hi)):
            return "undecided"
        better = self.better
        if better == "lower":
            inside = v <= hi
        elif better == "higher":
            inside = v >= lo
        else:
            inside = lo <= v <= hi
        return "inside" if inside else "outside"

    def to_dict(self, params_hash: str | None = None) -> dict[str, Any]:
        d = {
            "label": self.label,
            "value": self.value,
            "ci": list(self.ci),
            "baseline": self.baseline,
            "baseline_ci": list(self.baseline_ci),
            "better": self.better,
            "verdict": self.verdict,
            "extractor": self.extractor,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            **self.extra,
        }
        if params_hash is not None:
            d["params_hash"] = params_hash
        return d


@dataclass(frozen=True)
class MetricsData:
    """Arrays kept for the figures (not written to disk).

    Images ``(N, 1, *spatial)`` in [0, 1]; features ``(N, F)``; ``*_sites`` per sample or None;
    ``subset`` holds the indices of the equal-size subsets used for the set-level metrics;
    ``tissue`` the tissue fractions and levels of every image
    (:class:`neurodiff.metrics.anatomy.TissueData`).
    """

    real: np.ndarray
    synthetic: np.ndarray
    train: np.ndarray
    features: dict[str, np.ndarray]
    subset: dict[str, np.ndarray]
    real_sites: np.ndarray | None = None
    train_sites: np.ndarray | None = None
    train_index: pd.DataFrame | None = None
    real_index: pd.DataFrame | None = None
    tissue: Any = None


@dataclass(frozen=True)
class MetricsResult:
    """All metrics of one run; ``str()`` is a table, :meth:`to_dict` the JSON written to disk.

    Built once, complete (:func:`neurodiff.metrics.evaluate`); ``path`` is where
    :func:`neurodiff.metrics.run` wrote ``metrics.json`` (None for a result from arrays)."""

    metrics: dict[str, MetricValue]
    extractor: str
    n_subset: int
    n_real: int
    n_synthetic: int
    n_train: int
    n_bootstrap: int
    ms_ssim_kernel: int
    ms_ssim_weights: tuple[float, ...]
    audit: MemorisationAudit
    per_site: pd.DataFrame | None = None
    n_redraws: int = 0
    bandwidth: float | None = None
    params_hash: str | None = None
    config: dict[str, Any] | None = None
    path: Path | None = None
    data: MetricsData | None = field(default=None, repr=False)

    def table(self) -> pd.DataFrame:
        """One row per metric: value [CI], baseline [CI], which way is better, features, n."""
        rows = []
        for m in self.metrics.values():
            rows.append(
                {
                    "metric": m.name,
                    "synthetic vs real": _with_ci(m.value, m.ci),
                    "real vs real": _with_ci(m.baseline, m.baseline_ci),
                    "better": m.better,
                    "verdict": m.verdict,
                    "features": m.extractor,
                    "n real/synth": f"{m.n_real}/{m.n_synthetic}",
                }
            )
        return pd.DataFrame(rows).set_index("metric")

    @property
    def baseline_description(self) -> str:
        """How the real-vs-real column was made (for tables, logs and ``metrics.json``)."""
        if self.n_redraws:
            return (
                f"real vs real: median and central 95% range of {self.n_redraws} subject-level "
                "redraws of the train/test split, stratified by site as the split is (two "
                "disjoint groups of real subjects, the test split's size and the rest, each "
                "subsampled to the set size); memorisation metrics: real test vs train with a "
                "bootstrap interval; synthetic intervals resample real images by subject and "
                "synthetic images one by one"
            )
        return "real vs real: the real test subset vs an equal-size subset of the training split"

    def verdict_line(self) -> str:
        """One line: each metric's value and whether it is inside the real-vs-real range."""
        return "; ".join(f"{k} {_fmt(m.value)} {m.verdict}" for k, m in self.metrics.items())

    def __str__(self) -> str:
        with pd.option_context(
            "display.width", 200, "display.max_colwidth", 60, "display.max_columns", None
        ):
            body = self.table().to_string()
        where = f"\nwritten to {shown_path(self.path)}" if self.path else ""
        return (
            f"metrics: synthetic vs real test on equal-size subsets of {self.n_subset} (of "
            f"{self.n_synthetic} synthetic, {self.n_real} test, {self.n_train} train; the "
            f"memorisation audit uses all); {self.baseline_description}; features: "
            f"{self.extractor}; 95% CIs from {self.n_bootstrap} bootstrap resamples\n"
            f"{body}\n{int(self.audit.flagged.sum())} synthetic sample(s) flagged as "
            f"possible copies of training samples{where}"
        )

    def to_dict(self) -> dict[str, Any]:
        closest = self.audit.closest(10)
        index = self.data.train_index if self.data is not None else None
        if isinstance(index, pd.DataFrame) and len(index) == self.n_train:
            for col in ("subject", "site", "slice"):
                if col in index:
                    closest[f"train_{col}"] = index[col].to_numpy()[closest["train"].to_numpy()]
        d: dict[str, Any] = {
            "format": registry.METRICS.format,
            "params_hash": self.params_hash,
            "extractor": self.extractor,
            "n_subset": self.n_subset,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_train": self.n_train,
            "baseline": self.baseline_description,
            "n_redraws": self.n_redraws,
            "rbf_bandwidth": self.bandwidth,
            "bootstrap": {
                "n": self.n_bootstrap,
                "level": 0.95,
                "interval": "bootstrap spread around its median, on the estimate",
            },
            "ms_ssim": {
                "kernel_size": self.ms_ssim_kernel,
                "scales": len(self.ms_ssim_weights),
                "weights": list(self.ms_ssim_weights),
            },
            "metrics": {k: m.to_dict(self.params_hash) for k, m in self.metrics.items()},
            "memorisation": {
                "quantile": self.audit.quantile,
                "threshold": self.audit.threshold,
                "n_flagged": int(self.audit.flagged.sum()),
                "flagged": [int(i) for i in np.flatnonzero(self.audit.flagged)],
                "closest": closest.astype({"flagged": bool}).to_dict(orient="records"),
            },
        }
        if self.per_site is not None:
            d["per_site"] = self.per_site.reset_index().to_dict(orient="records")
        if self.config is not None:
            d["config"] = self.config
        return d


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def comparison_table(result: Any) -> pd.DataFrame:
    """Our values next to the real-vs-real range, the verdict and the paper's reported values:
    of a :class:`MetricsResult`, or of anything else holding ``metrics`` (``{name:
    MetricValue}``, e.g. :class:`neurodiff.metrics.GroupDifference`)."""
    rows = []
    for m in result.metrics.values():
        rows.append(
            {
                "metric": m.label,
                "this run (synthetic vs real)": _with_ci(m.value, m.ci),
                "real vs real": _with_ci(m.baseline, m.baseline_ci),
                "verdict": m.verdict,
                "paper": PAPER_RESULTS.get(m.name, "not reported"),
                "better": m.better,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


_CLOSE_READINGS = {
    "ms_ssim_diversity": (
        "less diverse than real data (mode collapse?)",
        "more varied than real data (noise or artefacts?)",
    ),
    "nn_distance": (
        "farther from the training data than unseen real data (off the manifold)",
        "closer to the training data than unseen real data (memorisation?)",
    ),
    "nn_ssim": (
        "more alike to training samples than unseen real data (copying?)",
        "less alike to training samples than unseen real data",
    ),
}


def interpret(result: MetricsResult) -> pd.DataFrame:
    """A plain reading of each metric: inside or outside the real-vs-real range, and which way.

    "Inside" reads "as far from the real test set as another group of real subjects can be" --
    not "equal": with few samples the range is wide and a real difference can hide inside it.
    """
    rows = []
    for m in result.metrics.values():
        better = METRICS[m.name][1]
        above = m.value > m.baseline_ci[1]
        if m.verdict == "inside":
            reading = "inside the real-vs-real range"
        elif m.verdict == "undecided":
            reading = "undecided (no finite value or range)"
        elif m.name in _CLOSE_READINGS:
            reading = "outside: " + _CLOSE_READINGS[m.name][0 if above else 1]
        elif m.name == "memorised_fraction":
            reading = "outside: more near-copies of training samples than real data has"
        elif better.startswith("higher") and not above:
            reading = "outside: worse than real vs real"
        elif better.startswith("higher"):
            reading = "outside: above real vs real (check the memorisation audit)"
        else:
            reading = "outside: worse than real vs real"
        rows.append(
            {
                "metric": m.name,
                "synthetic vs real": _fmt(m.value),
                "real-vs-real range": f"[{_fmt(m.baseline_ci[0])}, {_fmt(m.baseline_ci[1])}]",
                "reading": reading,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars made Python numbers and NaN/inf made None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _test_lines(rbf: Mapping[str, Any]) -> list[str]:
    """The Discussion's line on the synthetic-vs-real MMD test (and the two real groups')."""
    base_p = rbf.get("baseline_p_value")
    two_real = (
        f" Two real groups (test vs train subjects, subject permutations): p = {base_p:.3g}."
        if base_p is not None
        else ""
    )
    if rbf.get("p_value") is None:
        why = rbf.get("test", "not run")
        return [f"- **Synthetic-vs-real MMD test**: {why}.{two_real}"] if rbf else []
    p = rbf["p_value"]
    return [
        f"- **Synthetic-vs-real MMD test** ({rbf.get('test', 'RBF kernel')}): p = {p:.3g}, so it "
        f"{'rejects' if p <= 0.05 else 'does not reject'} at 5 % that the synthetic images are "
        f"drawn like real slices.{two_real}"
    ]


def results_markdown(metrics_json: Mapping[str, Any]) -> str:
    """A Markdown summary of ``metrics.json`` for the book's Discussion.

    One row per metric with the synthetic-vs-real value, the real-vs-real median and range, the
    verdict (inside or outside that range) and the paper's figure; then the count of metrics
    inside, the synthetic-vs-real MMD test and the memorisation audit.
    """
    metrics = metrics_json["metrics"]
    n_redraws = metrics_json.get("n_redraws") or 0
    how = (
        f"real vs real: median [central 95 % range] of {n_redraws} subject-level redraws of the "
        "train/test split, stratified by site"
        if n_redraws
        else "real vs real: the test split against the training split"
    )
    lines = [
        f"Features: `{metrics_json['extractor']}`; {metrics_json['n_synthetic']} synthetic, "
        f"{metrics_json['n_real']} real test and {metrics_json['n_train']} real training "
        f"images; synthetic intervals from {metrics_json['bootstrap']['n']} bootstrap resamples; "
        f"{how}.",
        "",
        "| metric | synthetic vs real | real vs real | verdict | better | paper |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in metrics.items():
        paper = PAPER_RESULTS.get(key, "–")
        lines.append(
            f"| {m['label']} | {_with_ci(m['value'], tuple(m['ci']))} | "
            f"{_with_ci(m['baseline'], tuple(m['baseline_ci']))} | {m.get('verdict', '–')} | "
            f"{m['better']} | {paper} |"
        )
    inside = [k for k, m in metrics.items() if m.get("verdict") == "inside"]
    verdicts = [
        f"- **{len(inside)} of {len(metrics)} metrics** are inside the real-vs-real range"
        + (f" ({', '.join(inside)})." if inside else ".")
    ]
    verdicts += _test_lines(metrics.get("mmd_rbf", {}))
    memo = metrics_json.get("memorisation", {})
    if memo:
        verdicts.append(
            f"- **Memorisation audit**: {memo['n_flagged']} of {metrics_json['n_synthetic']} "
            "synthetic samples are closer to a training image than 99 % of real test images are."
        )
    return "\n".join(lines + ["", *verdicts, ""])
