"""Where each stage writes, and the readers of everything it writes.

Stage folders live under ``<derived_dir>/<profile>/<stage>/<key>/``, the stage named by the
constants below and the key by the parameters that shape its outputs (:mod:`neurodiff.runs`). Every
function that reads a stage's outputs (the preprocessing manifest, the splits and their index
tables, the QC table, the training loss log and previews, the synthetic cohort and its
provenance, ``metrics.json``) is here, so that a later stage, a figure or the runner never reads
another stage's files by hand -- and never needs to import that stage.

Each reader takes the run's :class:`~neurodiff.config.Params` (the folder is then derived from
them, and where it matters checked against them) or a folder path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import LOCATION_PARAMS, ConfigError, Params, PreprocessConfig
from .errors import DataError
from .runs import chain_keys, list_runs, run_dir

__all__ = [
    "AUGMENT",
    "LOCATION_PARAMS",
    "METRICS",
    "PREPROCESSED",
    "PREPROCESSED_FORMAT",
    "RUN_METRICS",
    "SYNTHETIC",
    "TRAIN",
    "augment_dir",
    "load_histograms",
    "load_manifest",
    "load_metrics_json",
    "load_preprocessed_cohort",
    "load_preprocessed_volume",
    "load_qc",
    "load_split",
    "load_split_table",
    "load_synthetic",
    "synthetic_groups",
    "metrics_dir",
    "preprocessed_dir",
    "preview_images",
    "provenance",
    "read_loss_log",
    "runs_table",
    "synthetic_dir",
    "train_dir",
]

#: Stage folder names under ``<derived_dir>/<profile>/`` (each holds one folder per run).
PREPROCESSED = "preprocessed"
TRAIN = "train"
SYNTHETIC = "synthetic"
METRICS = "metrics"
AUGMENT = "augment"

#: Written into the preprocessing manifest; bumped when the pipeline changes so that old caches
#: are rebuilt and old folders are refused by the readers.
PREPROCESSED_FORMAT = "neurodiff-preprocessed/2"

_PREVIEW_RE = re.compile(r"step-(\d+)")


def _folder(params_or_dir: Params | str | Path, name: str) -> Path:
    if isinstance(params_or_dir, Params):
        return run_dir(params_or_dir, name)
    return Path(params_or_dir)


def preprocessed_dir(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/preprocessed/<key>`` of ``params``, or the folder given."""
    return _folder(params_or_dir, PREPROCESSED)


def train_dir(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/train/<key>`` of ``params``, or the folder given."""
    return _folder(params_or_dir, TRAIN)


def synthetic_dir(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/synthetic/<key>`` of ``params``, or the folder given."""
    return _folder(params_or_dir, SYNTHETIC)


def metrics_dir(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/metrics/<key>`` of ``params``, or the folder given."""
    return _folder(params_or_dir, METRICS)


def augment_dir(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/augment/<key>`` of ``params``, or the folder given."""
    return _folder(params_or_dir, AUGMENT)


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def _missing(folder: Path, what: str, params_or_dir: Any) -> DataError:
    how = (
        f"`neurodiff preprocess --profile {params_or_dir.profile}` with the same parameters"
        if isinstance(params_or_dir, Params)
        else "`neurodiff preprocess`"
    )
    return DataError(
        f"no complete preprocessed data in {folder} ({what}); run {how} first", path=folder
    )


def load_manifest(params_or_dir: Params | str | Path) -> dict:
    """The manifest of a preprocessed folder (``Params`` or a path); DataError if incomplete.

    Given ``Params``, the manifest must also match their preprocessing parameters.
    """
    folder = preprocessed_dir(params_or_dir)
    path = folder / "manifest.json"
    if not path.is_file():
        raise _missing(folder, "manifest.json is missing", params_or_dir)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}); run `neurodiff preprocess` again", path=path
        ) from None
    if manifest.get("format") != PREPROCESSED_FORMAT:
        raise _missing(
            folder,
            f"format {manifest.get('format')!r}, expected {PREPROCESSED_FORMAT!r}",
            params_or_dir,
        )
    if isinstance(params_or_dir, Params):
        cfg = params_or_dir.stage(PreprocessConfig)
        stored = manifest.get("params", {})
        diff = [
            f"{k}={stored.get(k)!r} (now {v!r})"
            for k, v in cfg.to_dict().items()
            if k not in LOCATION_PARAMS and stored.get(k) != v
        ]
        if diff:
            raise DataError(
                f"the preprocessed data in {folder} were built with other "
                f"parameters: {', '.join(diff)}; run "
                f"`neurodiff preprocess --profile {cfg.profile}` with the same "
                "parameters first",
                path=folder,
            )
    return manifest


def load_split(
    params_or_dir: Params | str | Path,
    split: str = "train",
    mmap: bool = False,
    group: str | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """One split of the preprocessed dataset.

    Parameters
    ----------
    params_or_dir : Params or str or Path
        The run's parameters (the data must have been built with the same preprocessing
        parameters) or a preprocessed folder.
    split : {"train", "test"}
    mmap : bool
        Memory-map the array read-only instead of reading it (large 3D datasets).
    group : str, optional
        Only the images of subjects of this group (the cohort's ``group`` column); the index
        keeps its ``row`` numbers into the whole split.

    Returns
    -------
    images : np.ndarray
        float32 ``(N, 1, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D), in [-1, 1].
    index : pandas.DataFrame
        One row per image: ``row, subject, site, slice`` (``slice`` = -1 for volumes), and
        ``group`` when the cohort has one.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test'; got {split!r}", parameter="split")
    folder = preprocessed_dir(params_or_dir)
    manifest = load_manifest(params_or_dir)
    arr_path, idx_path = folder / f"{split}.npy", folder / f"{split}_index.tsv"
    for p in (arr_path, idx_path):
        if not p.is_file():
            raise _missing(folder, f"{p.name} is missing", params_or_dir)
    try:
        images = np.load(arr_path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{arr_path} cannot be read ({exc}); run `neurodiff preprocess` again", path=arr_path
        ) from None
    index = pd.read_csv(idx_path, sep="\t", dtype={"subject": str, "site": str, "group": str})
    expected = manifest["shapes"][split]
    if list(images.shape) != expected or images.dtype != np.float32 or len(index) != len(images):
        raise DataError(
            f"{arr_path} holds {images.dtype} {list(images.shape)} with "
            f"{len(index)} index rows; the manifest expects float32 {expected}; "
            "run `neurodiff preprocess` again",
            path=arr_path,
        )
    if group is not None:
        if "group" not in index.columns:
            raise DataError(
                f"{idx_path} has no 'group' column (the cohort has no groups); cannot select "
                f"group {group!r}",
                path=idx_path,
            )
        keep = (index["group"] == group).to_numpy()
        images, index = np.asarray(images[keep]), index[keep].reset_index(drop=True)
    return images, index


def load_split_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``split.tsv``: subject, site, split (``train`` | ``test`` | ``excluded``)."""
    folder = preprocessed_dir(params_or_dir)
    load_manifest(params_or_dir)
    return pd.read_csv(
        folder / "split.tsv", sep="\t", dtype={"subject": str, "site": str, "group": str}
    )


def load_qc(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``qc.tsv``: subject, site, ncc, flagged, excluded, note."""
    folder = preprocessed_dir(params_or_dir)
    load_manifest(params_or_dir)
    qc = pd.read_csv(folder / "qc.tsv", sep="\t", dtype={"subject": str, "site": str})
    qc["note"] = ["" if pd.isna(v) else str(v) for v in qc["note"]]
    return qc


def load_preprocessed_cohort(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``cohort.tsv`` of a preprocessed folder: one row per source scan (subject, site, path...)."""
    folder = preprocessed_dir(params_or_dir)
    load_manifest(params_or_dir)
    return pd.read_csv(folder / "cohort.tsv", sep="\t", dtype={"subject": str, "site": str})


def load_preprocessed_volume(params_or_dir: Params | str | Path, subject: str):
    """The preprocessed volume of ``subject`` as a nibabel image (float32 in [0, 1], RAS)."""
    import nibabel as nib

    path = preprocessed_dir(params_or_dir) / "volumes" / f"{subject}.nii.gz"
    if not path.is_file():
        raise DataError(
            f"no preprocessed volume for subject {subject!r}: {path} is missing", path=path
        )
    return nib.load(path)


def load_histograms(params_or_dir: Params | str | Path) -> dict[str, np.ndarray]:
    """``histograms.npz``: per subject (``subject``, ``site``), intensity samples of the same head
    voxels ``before`` and ``after`` normalisation, ``(n_subjects, K)`` padded with NaN."""
    folder = preprocessed_dir(params_or_dir)
    load_manifest(params_or_dir)
    with np.load(folder / "histograms.npz") as h:
        return {k: h[k] for k in h.files}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def read_loss_log(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``loss.csv`` of a training folder as a DataFrame (step, loss, lr, grad_norm, seconds)."""
    path = train_dir(params_or_dir) / "loss.csv"
    if not path.is_file():
        raise DataError(f"no loss log {str(path)!r}; train first", path=path)
    return pd.read_csv(path)


def preview_images(params_or_dir: Params | str | Path) -> list[tuple[int, np.ndarray]]:
    """The preview grids saved during training, oldest first: ``(step, RGBA array)`` pairs."""
    import matplotlib.image

    out = []
    for f in sorted(train_dir(params_or_dir).joinpath("previews").glob("step-*.png")):
        m = _PREVIEW_RE.search(f.name)
        out.append((int(m.group(1)) if m else -1, matplotlib.image.imread(f)))
    return out


# --------------------------------------------------------------------------------------------
# Sampling and metrics
# --------------------------------------------------------------------------------------------


def provenance(out_dir: str | Path) -> dict[str, Any]:
    """The ``GeneratedBy`` record of a synthetic cohort (checkpoint hash, sampler, steps, eta,
    seed, parameters hash ...), without the long model configuration."""
    path = Path(out_dir) / "dataset_description.json"
    generated_by = json.loads(path.read_text())["GeneratedBy"][0]
    return {k: v for k, v in generated_by.items() if k != "ModelConfig"}


def load_synthetic(params_or_dir: Params | str | Path, group: str | None = None) -> np.ndarray:
    """Read a synthetic cohort written by :func:`neurodiff.sample.run`.

    ``group``: only the images sampled as that group (a class-conditional model; its
    ``participants.tsv`` has a ``group`` column).

    Returns
    -------
    np.ndarray
        ``(N, 1, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D) float32 in [0, 1], in participant order.
    """
    import nibabel as nib

    root = synthetic_dir(params_or_dir)
    desc_path = root / "dataset_description.json"
    if not desc_path.is_file():
        raise DataError(
            f"no synthetic cohort in {root} (dataset_description.json missing); run "
            "`neurodiff sample --profile <profile>` first",
            path=root,
        )
    try:
        spatial_dims = int(json.loads(desc_path.read_text())["GeneratedBy"][0]["SpatialDims"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise DataError(
            f"{desc_path} is not a neurodiff synthetic dataset description "
            "(GeneratedBy[0].SpatialDims missing)",
            path=desc_path,
        ) from None
    files = sorted(root.glob("sub-*/anat/sub-*_T1w.nii.gz"))
    if not files:
        raise DataError(f"no sub-*/anat/sub-*_T1w.nii.gz files in {root}", path=root)
    if group is not None:
        table = synthetic_groups(root)
        if group not in set(table.values()):
            raise DataError(
                f"the synthetic cohort in {root} has no images of group {group!r} (groups: "
                f"{sorted(set(table.values())) or 'none: an unconditional model'})",
                path=root,
            )
        files = [f for f in files if table.get(f.name.split("_T1w")[0]) == group]
    arrays = []
    for f in files:
        data = np.asarray(nib.load(f).dataobj, dtype=np.float32)
        if spatial_dims == 2:
            if data.ndim != 3 or data.shape[2] != 1:
                raise DataError(
                    f"{f}: expected a 2D slice stored as (H, W, 1); got shape {data.shape}", path=f
                )
            data = data[:, :, 0]
        arrays.append(data[None])
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"synthetic images in {root} differ in shape: {sorted(shapes)}", path=root)
    return np.stack(arrays)


def synthetic_groups(params_or_dir: Params | str | Path) -> dict[str, str]:
    """``{participant_id: group}`` of a synthetic cohort (empty for an unconditional model)."""
    import pandas as pd

    path = synthetic_dir(params_or_dir) / "participants.tsv"
    if not path.is_file():
        raise DataError(f"{path} is missing; run `neurodiff sample` again", path=path)
    table = pd.read_csv(path, sep="\t", dtype=str)
    if "group" not in table.columns:
        return {}
    return dict(zip(table["participant_id"], table["group"], strict=True))


def load_metrics_json(params_or_dir: Params | str | Path) -> dict[str, Any] | None:
    """``metrics.json`` of a run as a dict, or None when the metrics were not computed yet."""
    path = metrics_dir(params_or_dir) / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# The runs of a profile
# --------------------------------------------------------------------------------------------

#: The metrics ``neurodiff runs`` shows per metrics run (value and real-vs-real baseline).
RUN_METRICS = ("fid", "mmd_rbf", "precision", "recall", "coverage")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _metric_cell(m: dict | None) -> str:
    if not m:
        return ""
    verdict = {"inside": " in", "outside": " out"}.get(m.get("verdict", ""), "")
    return f"{m['value']:.3g} ({m['baseline']:.3g}){verdict}"


def runs_table(profile_dir: str | Path, current: Params | None = None) -> pd.DataFrame:
    """One row per run folder of a profile: stage, key, the run it was made from, state, the
    parameters in which the runs of that stage differ, and (metrics runs) the key metrics as
    ``value (real-vs-real median) in|out`` (inside or outside the real-vs-real range).
    ``current`` marks the runs of those parameters with ``*``.
    ``table.attrs["strays"]`` lists the entries that are not run folders (an older layout).
    """
    runs, strays = list_runs(profile_dir)
    mine = set(chain_keys(current).values()) if current is not None else set()
    rows = []
    for stage in {r.stage: None for r in runs}:
        group = [r for r in runs if r.stage == stage]
        names = sorted({k for r in group for k in r.params})
        varying = [k for k in names if len({json.dumps(r.params.get(k)) for r in group}) > 1]
        for r in group:
            row = {
                "stage": stage,
                "run": r.key + (" *" if r.key in mine else ""),
                "from": r.upstream or "",
                "state": "complete" if r.complete else "incomplete",
                "updated": r.updated.replace("T", " ")[:16],
                "differs": " ".join(f"{k}={_show(r.params.get(k))}" for k in varying),
            }
            if stage == METRICS:
                found = load_metrics_json(r.path) or {"metrics": {}}
                for name in RUN_METRICS:
                    m = found["metrics"].get(name)
                    row[name] = _metric_cell(m)
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["strays"] = strays
    return table
