"""The readers and writers of the preprocessing stage's outputs (manifest, splits and their index
tables, split, QC and cohort tables, histograms, volumes).

The writers write into the stage's temporary folder (``io.atomic_dir``), which is renamed into
place once the manifest, written last, marks it complete; the preprocessing workers write each
volume as its scan is done (:func:`write_volume`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import LOCATION_PARAMS, ConfigError, Params, PreprocessConfig
from ..errors import DataError
from ..intensity import to_model_range
from ..io import atomic_write_json
from ..registry import PREPROCESS
from .folders import preprocessed_dir

__all__ = [
    "PREPROCESSED_FORMAT",
    "load_histograms",
    "load_manifest",
    "load_preprocessed_cohort",
    "load_preprocessed_volume",
    "load_qc",
    "load_split",
    "load_split_table",
    "volume_path",
    "write_manifest",
    "write_split_arrays",
    "write_tables",
    "write_volume",
]

#: Written into the preprocessing manifest (the registry's format), so that old caches are
#: rebuilt and old folders are refused by the readers.
PREPROCESSED_FORMAT = PREPROCESS.format


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
    """``qc.tsv``: one row per scan with its QC measures and ``note``, every reason it was
    flagged (columns: :func:`neurodiff.preprocess.split.qc_table`)."""
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

    path = volume_path(preprocessed_dir(params_or_dir), subject)
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
# Writers
# --------------------------------------------------------------------------------------------


def volume_path(folder: str | Path, subject: str, kind: str = "volumes") -> Path:
    """``volumes/<subject>.nii.gz`` of a preprocessed folder (float32 in [0, 1], RAS), or with
    ``kind="masks"`` the subject's brain mask on the same grid (uint8, ``masks/``)."""
    return Path(folder) / kind / f"{subject}.nii.gz"


def write_volume(
    folder: str | Path,
    subject: str,
    volume: np.ndarray,
    affine: np.ndarray,
    kind: str = "volumes",
) -> Path:
    """A preprocessed volume (float32 in [0, 1], RAS mm affine) at :func:`volume_path`, or a
    brain mask (uint8) with ``kind="masks"``."""
    import nibabel as nib

    out = volume_path(folder, subject, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, out)
    return out


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    """A table as tab-separated values, without the index."""
    table.to_csv(path, sep="\t", index=False)


def write_split_arrays(
    folder: Path, split: pd.DataFrame, slices: list[int], spatial: tuple[int, ...]
) -> dict[str, dict]:
    """``<split>.npy`` float32 ``(N, 1, *spatial)`` in [-1, 1] and ``<split>_index.tsv`` for the
    train and test subjects of ``split``, from the volumes in ``folder``: ``slices`` are the
    axial slice indices of each volume (``[-1]`` = the whole volume). Volumes are read back one
    at a time into a memory-mapped ``.npy``. Returns each split's ``shape`` and ``range``."""
    import nibabel as nib

    info = {}
    for name in ("train", "test"):
        part = split[split["split"] == name]
        grouped = "group" in part.columns
        rows = [
            (r.subject, r.site, k, *((r.group,) if grouped else ()))
            for r in part.itertuples()
            for k in slices
        ]
        arr = np.lib.format.open_memmap(
            folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(rows), 1, *spatial)
        )
        lo, hi = np.inf, -np.inf
        for i, r in enumerate(part.itertuples()):
            vol = np.asarray(nib.load(volume_path(folder, r.subject)).dataobj, dtype=np.float32)
            for j, k in enumerate(slices):
                img = to_model_range(vol if k < 0 else vol[:, :, k])
                arr[i * len(slices) + j, 0] = img
                lo, hi = min(lo, float(img.min())), max(hi, float(img.max()))
        arr.flush()
        del arr
        _write_tsv(
            folder / f"{name}_index.tsv",
            pd.DataFrame(
                [(i, *r) for i, r in enumerate(rows)],
                columns=["row", "subject", "site", "slice", *(["group"] if grouped else [])],
            ),
        )
        info[name] = {"shape": [len(rows), 1, *spatial], "range": [lo, hi] if rows else None}
    return info


def write_tables(
    folder: Path,
    *,
    split: pd.DataFrame,
    qc: pd.DataFrame,
    cohort: pd.DataFrame,
    histograms: dict[str, np.ndarray],
) -> None:
    """``split.tsv``, ``qc.tsv``, ``cohort.tsv`` (source paths made absolute) and
    ``histograms.npz`` (``subject``, ``site``, ``before``, ``after``)."""
    _write_tsv(folder / "split.tsv", split)
    _write_tsv(folder / "qc.tsv", qc)
    table = cohort.copy()
    table["path"] = [str(Path(p).resolve()) for p in table["path"]]
    _write_tsv(folder / "cohort.tsv", table)
    np.savez_compressed(folder / "histograms.npz", **histograms)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """``manifest.json``, written last: it marks the folder complete."""
    path = folder / "manifest.json"
    atomic_write_json(path, manifest)
    return path
