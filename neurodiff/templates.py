"""The MNI152 template shipped with nilearn, and the target grid built around its brain.

Lower floor: used by preprocessing (registration target, field of view) and by sampling (the
voxel grid written into the synthetic NIfTI headers when the preprocessed volumes share none).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["brain_centre", "mni152", "target_affine"]


@functools.lru_cache(maxsize=1)
def mni152() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's MNI152 2009 T1 template and brain mask at 2 mm (bundled, no download)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1 = load_mni152_template(resolution=2)
    mask = load_mni152_brain_mask(resolution=2)
    return (
        np.asarray(t1.get_fdata(), dtype=np.float32),
        np.asarray(mask.get_fdata() > 0, dtype=np.float32),
        t1.affine.astype(np.float64),
    )


def brain_centre() -> np.ndarray:
    """World coordinates (mm) of the centre of the template brain mask's bounding box."""
    _t1, mask, affine = mni152()
    idx = np.argwhere(mask > 0)
    centre_vox = (idx.min(0) + idx.max(0)) / 2.0
    return (affine @ np.append(centre_vox, 1.0))[:3]


def target_affine(target_spacing: float, n: int) -> np.ndarray:
    """RAS affine of an ``n``-voxel cube at ``target_spacing`` centred on the MNI brain."""
    aff = np.diag([target_spacing, target_spacing, target_spacing, 1.0])
    aff[:3, 3] = brain_centre() - target_spacing * (n - 1) / 2.0
    return aff
