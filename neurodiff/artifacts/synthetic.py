"""The writer and readers of the sampling stage's outputs: the synthetic cohort (BIDS-like NIfTI,
``participants.tsv``, ``dataset_description.json`` with its provenance), its groups."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import Params
from ..errors import DataError
from ..io import atomic_dir
from .folders import synthetic_dir

__all__ = ["load_synthetic", "provenance", "synthetic_groups", "write_synthetic"]


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


def write_synthetic(
    out_dir: str | Path,
    images: np.ndarray,
    *,
    affine: np.ndarray,
    generated_by: dict[str, Any],
    name: str = "neurodiff synthetic cohort",
    groups: Any = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write images as a BIDS-like synthetic cohort, atomically (the folder appears complete or
    not at all).

    Parameters
    ----------
    out_dir : path
        The folder to (re)create.
    images : np.ndarray
        ``(N, 1, H, W)`` or ``(N, 1, D, H, W)`` float32 in [0, 1].
    affine : np.ndarray
        4 x 4 voxel-to-world (RAS mm) affine of the volume grid (3D) or of the slice (2D); it
        carries the voxel size (2D: in-plane spacing and slice thickness).
    generated_by : dict
        Provenance merged into ``dataset_description.json``'s ``GeneratedBy`` entry.
    groups : sequence of str, optional
        The group each image was sampled as (a class-conditional model): a ``group`` column of
        ``participants.tsv``.
    extra : callable, optional
        Called with the temporary folder before it is renamed, to add files of the stage's own
        (the preview grid, drawn by the figure kit, a floor above).
    """
    import nibabel as nib
    import pandas as pd

    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (4, 5) or images.shape[1] != 1:
        raise DataError(
            f"synthetic images must be (N, 1, H, W) or (N, 1, D, H, W); got shape {images.shape}"
        )
    spatial_dims = images.ndim - 2
    width = max(4, len(str(len(images))))
    ids = [f"sub-synth{i + 1:0{width}d}" for i in range(len(images))]
    affine = np.asarray(affine, dtype=np.float64)
    with atomic_dir(out_dir) as tmp:
        for pid, img in zip(ids, images):
            data = img[0] if spatial_dims == 3 else img[0][:, :, None]  # 2D slice -> (H, W, 1)
            nii = nib.Nifti1Image(data, affine)
            nii.header.set_xyzt_units("mm")
            nii.header["descrip"] = b"neurodiff synthetic"
            anat = tmp / pid / "anat"
            anat.mkdir(parents=True)
            nib.save(nii, anat / f"{pid}_T1w.nii.gz")
        table = pd.DataFrame(
            {"participant_id": ids, "site": "synthetic", "sample_index": np.arange(len(ids))}
        )
        if groups is not None:
            if len(groups) != len(ids):
                raise DataError(f"{len(groups)} group names for {len(ids)} synthetic images")
            table["group"] = list(groups)
        table.to_csv(tmp / "participants.tsv", sep="\t", index=False)
        description = {
            "Name": name,
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {
                    "Name": "neurodiff",
                    "Version": __version__,
                    "Description": "samples of a denoising diffusion model",
                    "SpatialDims": spatial_dims,
                    **generated_by,
                }
            ],
        }
        (tmp / "dataset_description.json").write_text(
            json.dumps(description, indent=2, default=str) + "\n"
        )
        if extra is not None:
            extra(tmp)
    return Path(out_dir)
