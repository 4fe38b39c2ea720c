"""Tables about a preprocessed build (notebook 02), read from its outputs through
:mod:`neurodiff.artifacts`, and the examples the figures of :mod:`neurodiff.viz.preprocess` draw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import (
    load_manifest,
    load_preprocessed_cohort,
    load_preprocessed_volume,
    load_qc,
    load_split_table,
    preprocessed_dir,
    volume_path,
)
from ..cohort import check_scan
from ..config import Params, PreprocessConfig, project_root
from .pipeline import STEPS, load_resampled, template_final
from .strip import strip

#: The skull-stripping benchmark's results (``python benchmarks/skull_strip.py``), under the root.
STRIP_RESULTS = Path("benchmarks/results/skull_strip.json")

__all__ = [
    "before_after_examples",
    "example_subjects",
    "qc_overlays",
    "split_summary",
    "strip_benchmark",
    "strip_examples",
    "summary_table",
    "timing_table",
]


def example_subjects(params_or_dir: Params | str | Path) -> list[str]:
    """The first subject (by name) of each site: the examples the figures show."""
    return _first_per_site(load_preprocessed_cohort(params_or_dir))


def _first_per_site(cohort: pd.DataFrame) -> list[str]:
    return cohort.sort_values("subject").groupby("site", sort=True)["subject"].first().tolist()


def split_summary(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """Subjects per site and split (``train``, ``test``, ``excluded``), with totals."""
    split = load_split_table(params_or_dir)
    table = pd.crosstab(split["site"], split["split"], margins=True, margins_name="total")
    cols = [c for c in ("train", "test", "excluded") if c in table.columns] + ["total"]
    table = table[cols]
    table.index.name = "site"
    table.columns.name = None
    return table


def summary_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """The key facts of a build, from its manifest: grid, sizes, counts, cache key, time."""
    m = load_manifest(params_or_dir)
    t, ds, n, p = m["target"], m["downsampling"], m["n"], m["params"]
    dims = "2D axial slices" if p["spatial_dims"] == 2 else "3D volumes"
    rows = [
        ("space", t["space"]),
        ("registration", p["register"]),
        ("skull stripping", f"{p.get('skull_strip', 'off')} (deepbet)"),
        ("template brain mask", "yes" if p["mask_brain"] else "no"),
        (
            "normalisation",
            p["normalise"]
            + (
                f" {p['clip_percentiles'][0]:g}-{p['clip_percentiles'][1]:g} %"
                if p["normalise"] == "percentile"
                else ""
            ),
        ),
        (
            "field of view",
            f"{t['fov_mm']:g} mm cube = {t['fov_voxels']}^3 voxels of {t['spacing_mm']:g} mm",
        ),
        (
            "resized to",
            f"{ds['image_size']}^3 (x{1 / ds['resize_factor']:.3g}), voxels of "
            f"{t['volume_spacing_mm']:.3g} mm",
        ),
        ("model input", f"{dims}, {m['shapes']['train'][1:]} float32 in [-1, 1]"),
        (
            "UNet downsampling factor",
            f"{ds['unet_downsample_factor']} (image_size divisible: {ds['divisible']})",
        ),
        (
            "subjects",
            f"{n['subjects']}: {n['train_subjects']} train, {n['test_subjects']} test, "
            f"{n['excluded']} excluded by QC",
        ),
        ("images", f"{n['train_images']} train, {n['test_images']} test"),
        ("source files (checksummed)", str(len(m["sources"]))),
        ("cache key (parameters + pipeline)", m["params_hash"]),
        (
            "built",
            f"{m['created']} in {m['timing']['wall_seconds']:.1f} s with "
            f"{m['timing']['workers']} process(es)",
        ),
    ]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def timing_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """Seconds per subject and share of the total for each step."""
    per = load_manifest(params_or_dir)["timing"]["seconds_per_subject"]
    table = pd.DataFrame(
        {"seconds per subject": [per[s] for s in STEPS if s in per]},
        index=pd.Index([s for s in STEPS if s in per], name="step"),
    )
    table["share"] = table["seconds per subject"] / table["seconds per subject"].sum()
    return table.round({"seconds per subject": 3, "share": 3})


def before_after_examples(
    params_or_dir: Params | str | Path, subjects: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One scan per site (default: :func:`example_subjects`) as stored and as preprocessed.

    Returns one record per subject: ``subject``, ``site``; the stored array ``stored`` with its
    axis codes ``stored_codes`` (e.g. ``"LPS"``), voxel size ``stored_zooms`` and
    ``stored_dtype``; the preprocessed ``volume`` (RAS, [0, 1]) with ``volume_zooms``. For
    :func:`neurodiff.viz.preprocess.plot_before_after`.
    """
    import nibabel as nib

    table = load_preprocessed_cohort(params_or_dir)
    subjects = list(subjects) if subjects is not None else _first_per_site(table)
    cohort = table.set_index("subject")
    out = []
    for subject in subjects:
        rec = cohort.loc[subject]
        raw = check_scan(rec["path"])
        done = load_preprocessed_volume(params_or_dir, subject)
        out.append(
            {
                "subject": subject,
                "site": rec["site"],
                "stored": np.asarray(raw.dataobj, dtype=np.float32),
                "stored_codes": "".join(nib.aff2axcodes(raw.affine)),
                "stored_zooms": [float(z) for z in raw.header.get_zooms()[:3]],
                "stored_dtype": str(raw.get_data_dtype()),
                "volume": np.asarray(done.dataobj, dtype=np.float32),
                "volume_zooms": [float(z) for z in done.header.get_zooms()[:3]],
            }
        )
    return out


def strip_examples(params: Params, subjects: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Skull stripping of one scan per site (default: :func:`example_subjects`), redone here.

    Returns per subject: ``subject``, ``site``, the scan as stripping sees it (``scan``: RAS at
    ``target_spacing``), deepbet's ``mask`` on it, the ``stripped`` image, the decision
    (``head``, ``outside``: share of the foreground outside the grown mask) and the
    preprocessed ``volume``. For :func:`neurodiff.viz.preprocess.plot_skull_strip`.
    """
    cfg = params.stage(PreprocessConfig)
    table = load_preprocessed_cohort(params).set_index("subject")
    subjects = list(subjects) if subjects is not None else example_subjects(params)
    out = []
    for subject in subjects:
        scan, spacing = load_resampled(table.loc[subject, "path"], cfg)
        mode = cfg.skull_strip if cfg.skull_strip != "off" else "on"  # show what it would do
        s = strip(scan, spacing, mode)
        out.append(
            {
                "subject": subject,
                "site": table.loc[subject, "site"],
                "scan": scan,
                "mask": s.mask,
                "stripped": s.image,
                "head": s.head,
                "outside": s.outside,
                "applied": cfg.skull_strip != "off",
                "volume": np.asarray(load_preprocessed_volume(params, subject).dataobj),
            }
        )
    return out


def qc_overlays(params_or_dir: Params | str | Path, n_passed: int = 1) -> list[dict[str, Any]]:
    """Every flagged scan, and the ``n_passed`` lowest-scoring scans that passed, for overlays.

    Per subject: ``subject``, ``site``, ``flagged``, ``note`` (the reasons), ``ncc``,
    ``overlap``, the preprocessed ``volume``, its brain ``mask`` (None without one) and the
    template's brain mask ``template_mask`` on the same grid.
    """
    import nibabel as nib

    folder = preprocessed_dir(params_or_dir)
    manifest = load_manifest(params_or_dir)
    cfg = PreprocessConfig.from_params(manifest["params"])
    _t1, tmask = template_final(cfg)
    qc = load_qc(params_or_dir).sort_values("ncc", na_position="first")
    rows = pd.concat([qc[qc["flagged"]], qc[~qc["flagged"]].head(n_passed)])
    out = []
    for r in rows.itertuples():
        mask_file = volume_path(folder, r.subject, kind="masks")
        vol_file = volume_path(folder, r.subject)
        out.append(
            {
                "subject": r.subject,
                "site": r.site,
                "flagged": bool(r.flagged),
                "note": r.note,
                "ncc": r.ncc,
                "overlap": getattr(r, "overlap", np.nan),
                "volume": np.asarray(nib.load(vol_file).dataobj) if vol_file.is_file() else None,
                "mask": np.asarray(nib.load(mask_file).dataobj) if mask_file.is_file() else None,
                "template_mask": tmask,
            }
        )
    return out


@dataclass
class StripBenchmark:
    """``benchmarks/results/skull_strip.json`` read for chapter 2: the tools' table and the values
    the prose glues (``strip_*``), or placeholders saying the file is missing."""

    tools: pd.DataFrame
    glue: dict[str, str]


def strip_benchmark(path: str | Path | None = None) -> StripBenchmark:
    """The skull-stripping benchmark's results (default :data:`STRIP_RESULTS`)."""
    import json

    file = Path(path) if path is not None else project_root() / STRIP_RESULTS
    keys = ("cpu", "r_auto", "slice_auto", "inside_auto", "r_off", "dice", "s")
    keys += ("ncc_wrong", "ncc_head", "ncc_head_off")
    if not file.is_file():
        missing = "(not measured: run python benchmarks/skull_strip.py)"
        return StripBenchmark(pd.DataFrame(), {f"strip_{k}": missing for k in keys})
    res = json.loads(file.read_text())
    tools = pd.DataFrame(res["tools"]).set_index("tool").astype(object).fillna("")
    chosen = next(t for t in res["tools"] if t["tool"].startswith("deepbet, 192"))
    auto, off = res["pipeline"]["auto"], res["pipeline"]["off"]
    values = {
        "cpu": f"{res['cpu']}, {res['cores']} cores, {res['date']}",
        "r_auto": f"{auto['r_volume']:.3f}",
        "slice_auto": f"{auto['r_slice_whole']['min']:.3f}",
        "inside_auto": f"{auto['r_slice_inside']['median']:.3f}",
        "r_off": f"{off['r_volume']:.3f}",
        "dice": f"{chosen['dice']:.3f}",
        "s": f"{chosen['s']:.1f}",
        "ncc_wrong": f"{auto['qc']['wrong']['ncc']:.2f}",
        "ncc_head": f"{auto['qc']['head']['ncc']:.2f}",
        "ncc_head_off": f"{off['qc']['head']['ncc']:.2f}",
    }
    return StripBenchmark(tools, {f"strip_{k}": v for k, v in values.items()})
