"""Rendering one simulated subject: template-space tissue maps, a layered head on a neck, the
subject's anatomy (ageing, deformation, pose) and the site's acquisition, interpolated once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .protocols import BVFTD_REGIONS, SiteProtocol

# Template T1 levels (mean intensity, nilearn's MNI152 2009a T1 scaled to [0, 1]) of voxels that
# are mostly CSF, grey and white matter; measured once on the 1 mm template.
_TEMPLATE_LEVELS = {"csf": 0.284, "gm": 0.651, "wm": 0.864}
# Centre (MNI mm) and widths (mm) of the lateral ventricles, from the template's deep CSF.
_VENTRICLE_CENTRE = np.array([0.0, -17.0, 15.0])
_VENTRICLE_WIDTH = np.array([14.0, 24.0, 12.0])
# Centre of rotation of the head (MNI mm) and of every site's field of view.
_HEAD_CENTRE = np.array([0.0, -17.0, 12.0])
# Head model: layers at distances (mm) outside a smoothed brain hull: a CSF rim of _RIM_MM, then
# the site's skull and scalp (SiteProtocol.skull_mm, scalp_mm).
_RIM_MM = 2.0
# The neck: a vertical elliptical column (centre x, y and semi-axes in MNI mm, ~12 cm across),
# present below _NECK_Z_MM[0] and fading out up to _NECK_Z_MM[1], both inside the head's outline
# (the column leaves the head's underside below the cerebellum, z ~ -50 mm).
_NECK_CENTRE_MM = (0.0, -32.0)
_NECK_SEMI_AXES_MM = (58.0, 62.0)
_NECK_Z_MM = (-45.0, -25.0)
# Random deformation: cubic spline through displacements on a lattice (mm).
_LATTICE_SPACING_MM = 24.0
_LATTICE_ORIGIN = np.array([-134.0, -170.0, -110.0])
_LATTICE_SHAPE = (12, 14, 12)
_DEFORM_SD_MM = 2.0
# Coordinates and bias are computed every _COARSE voxels and interpolated in between.
_COARSE = 6


# --------------------------------------------------------------------------------------------
# Template space
# --------------------------------------------------------------------------------------------


@dataclass
class _Templates:
    """Template-space arrays shared by every subject (float32, template grid)."""

    affine: np.ndarray  # template voxel -> MNI mm
    t1: np.ndarray
    gm: np.ndarray
    outside: np.ndarray  # 1 - soft brain mask
    dist: np.ndarray  # mm outside a smoothed brain hull (0 inside it)
    neck_depth: np.ndarray  # (x, y): mm inside the neck column's edge (negative outside it)
    neck_level: np.ndarray  # (z,): 1 where the neck is, 0 above the skull base


def _template_axes(affine: np.ndarray, shape: Sequence[int]) -> list[np.ndarray]:
    """MNI mm of the template grid's voxel centres along x, y and z (the affine is diagonal)."""
    return [
        affine[i, i] * np.arange(n, dtype=np.float32) + affine[i, 3] for i, n in enumerate(shape)
    ]


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


@lru_cache(maxsize=2)
def _templates(resolution: int) -> _Templates:
    """Load nilearn's bundled MNI152 templates and the distance map the head is grown from."""
    from nilearn import datasets
    from scipy import ndimage as ndi

    t1_img = datasets.load_mni152_template(resolution=resolution)
    affine = t1_img.affine.copy()
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32))
    gm = np.asarray(
        datasets.load_mni152_gm_template(resolution=resolution).get_fdata(dtype=np.float32)
    )
    mask = np.asarray(
        datasets.load_mni152_brain_mask(resolution=resolution).get_fdata(dtype=np.float32)
    )
    # Distance to a smoothed brain hull, computed on a 2 mm grid (cheap; the head layers are
    # smooth at that scale) and interpolated back to the template grid.
    step = max(1, 2 // resolution)
    coarse = mask[::step, ::step, ::step] > 0.5
    hull = ndi.gaussian_filter(coarse.astype(np.float32), 6.0 / (resolution * step)) > 0.35
    dist = ndi.distance_transform_edt(~hull).astype(np.float32) * np.float32(resolution * step)
    if step > 1:
        dist = ndi.zoom(
            dist, [n / c for n, c in zip(mask.shape, dist.shape)], order=1, grid_mode=False
        )[: mask.shape[0], : mask.shape[1], : mask.shape[2]]
    outside = np.float32(1.0) - np.clip(mask, 0.0, 1.0)
    depth, level = _neck_geometry(_template_axes(affine, mask.shape))
    return _Templates(
        affine=affine, t1=t1, gm=gm, outside=outside, dist=dist, neck_depth=depth, neck_level=level
    )


def _neck_geometry(axes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The neck column on the template grid: depth (mm) inside its edge over the (x, y) plane,
    and its level (1 below the skull base, 0 above) along z."""
    x = axes[0][:, None] - np.float32(_NECK_CENTRE_MM[0])
    y = axes[1][None, :] - np.float32(_NECK_CENTRE_MM[1])
    a, b = _NECK_SEMI_AXES_MM
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    # distance to the edge to first order, (1 - r) / |grad r|: exact at the edge, where it counts
    grad = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2) / np.maximum(r, 1e-6)
    depth = ((1.0 - r) / np.maximum(grad, 1e-6)).astype(np.float32)
    level = _smoothstep(-axes[2], -_NECK_Z_MM[1], -_NECK_Z_MM[0])
    return depth, level


@lru_cache(maxsize=2)
def _gm_regions(resolution: int) -> dict[str, np.ndarray]:
    """``"left"``/``"right"``: grey matter x the bvFTD-like region weight (template grid)."""
    tpl = _templates(resolution)
    axes = _template_axes(tpl.affine, tpl.gm.shape)
    regions = {}
    for side, sign in (("left", -1.0), ("right", 1.0)):
        weight = np.zeros(tpl.gm.shape, np.float32)
        for _name, centre, width in BVFTD_REGIONS:
            c = (sign * centre[0], centre[1], centre[2])
            g = [
                np.exp(-0.5 * ((a - ci) / wi) ** 4).astype(np.float32)
                for a, ci, wi in zip(axes, c, width)
            ]
            blob = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
            np.maximum(weight, blob, out=weight)
        # keep each hemisphere's pattern on its own side of the midline
        side_mask = _smoothstep(sign * axes[0], -4.0, 4.0)[:, None, None]
        regions[side] = tpl.gm * weight * side_mask
    return regions


def _head_profile(site: SiteProtocol) -> tuple[list[float], list[float]]:
    """Signal against distance outside the brain hull (mm): CSF rim, the site's skull with a
    marrow layer in its middle, its scalp, then air. Piecewise linear, with ~1 mm transitions."""
    c = site.contrast
    s0 = _RIM_MM
    s1 = s0 + site.skull_mm
    s2 = s1 + site.scalp_mm
    mid = (s0 + s1) / 2
    xp = [
        0.0,
        s0 - 0.5,
        s0 + 0.5,
        mid - 1.5,
        mid,
        mid + 1.5,
        s1 - 0.5,
        s1 + 0.5,
        s2 - 1.0,
        s2 + 1.0,
    ]
    fp = [
        c["csf"],
        c["csf"],
        c["skull"],
        c["skull"],
        c["marrow"],
        c["skull"],
        c["skull"],
        c["scalp"],
        c["scalp"],
        0.0,
    ]
    return xp, fp


def _brain(tpl: _Templates, site: SiteProtocol) -> np.ndarray:
    """The template T1 remapped to the site's CSF, grey- and white-matter levels (WM = 1)."""
    c = site.contrast
    lv = _TEMPLATE_LEVELS
    slope = (1.0 - c["gm"]) / (lv["wm"] - lv["gm"])
    xp = [0.0, lv["csf"], lv["gm"], lv["wm"], 1.0]
    fp = [0.0, c["csf"], c["gm"], 1.0, 1.0 + (1.0 - lv["wm"]) * slope]
    return np.interp(tpl.t1, xp, fp).astype(np.float32)


def _head(tpl: _Templates, site: SiteProtocol) -> np.ndarray:
    """The head's signal around the brain (template grid; weighted by ``tpl.outside`` later).

    The layers of :func:`_head_profile`; below the skull base, beyond the skull, the neck
    replaces them: muscle inside an elliptical column with a skin rim as thick as the scalp.
    """
    c = site.contrast
    head = np.interp(tpl.dist, *_head_profile(site)).astype(np.float32)
    # only the slab where the neck is, the lowest slices of the grid, is touched
    top = int(np.count_nonzero(tpl.neck_level))
    skin = site.scalp_mm
    column = np.interp(tpl.neck_depth, [skin - 1.0, skin + 1.0], [c["scalp"], c["muscle"]])
    inside = _smoothstep(tpl.neck_depth, -1.0, 1.0)  # the column's edge: 2 mm, like the scalp's
    beyond_skull = _smoothstep(
        tpl.dist[:, :, :top], _RIM_MM + site.skull_mm, _RIM_MM + site.skull_mm + 1.0
    )
    weight = inside[:, :, None] * tpl.neck_level[None, None, :top] * beyond_skull
    slab = head[:, :, :top]
    slab += weight * (column.astype(np.float32)[:, :, None] - slab)
    return head


def _site_base(tpl: _Templates, site: SiteProtocol) -> np.ndarray:
    """The template head in this site's contrast (white matter = 1), template grid."""
    base = _brain(tpl, site)
    base += tpl.outside * _head(tpl, site)
    return base


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

_AXIS_CODES = {
    "R": (0, 1.0),
    "L": (0, -1.0),
    "A": (1, 1.0),
    "P": (1, -1.0),
    "S": (2, 1.0),
    "I": (2, -1.0),
}


def _site_grid(site: SiteProtocol, resolution: int) -> tuple[tuple[int, int, int], np.ndarray]:
    """Stored shape and voxel -> scanner-mm affine of a site (fast mode: voxels x resolution)."""
    affine = np.eye(4)
    shape = []
    for i, letter in enumerate(site.orientation):
        axis, sign = _AXIS_CODES[letter]
        size = site.voxel_size[i] * resolution
        affine[:3, i] = 0.0
        affine[axis, i] = sign * size
        shape.append(int(round(site.fov_mm[axis] / size)))
    affine[:3, 3] = _HEAD_CENTRE - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return tuple(shape), affine  # type: ignore[return-value]


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (fixed axes), angles in degrees: ``Rz @ Ry @ Rx``."""
    # The closed form, not scipy.spatial.transform.Rotation.from_euler("xyz", ...).as_matrix():
    # scipy builds the same matrix through quaternions and differs in the last bits, and the demo
    # cohort promises byte-identical files for the same seed across versions of neurodiff.
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _interp_matrix(n: int, nc: int) -> np.ndarray:
    """(n, nc) linear-interpolation weights from nc points spanning [0, n-1] to every index."""
    pos = np.linspace(0.0, n - 1.0, nc)
    eye = np.eye(nc, dtype=np.float32)
    return np.stack([np.interp(np.arange(n), pos, eye[j]) for j in range(nc)], axis=1).astype(
        np.float32
    )


def _upsample(coarse: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
    """Separable trilinear upsampling of a (c0, c1, c2) array with (n_i, c_i) matrices.

    Three small matrix products: faster than scipy.ndimage.zoom on millions of voxels.
    """
    t = np.tensordot(mats[0], coarse, axes=(1, 0))  # (n0, c1, c2)
    t = np.tensordot(t, mats[1], axes=(1, 1))  # (n0, c2, n1)
    t = np.tensordot(t, mats[2], axes=(1, 1))  # (n0, n1, n2)
    return np.ascontiguousarray(t, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Subjects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subject:
    participant_id: str
    site: int
    age: int
    sex: str
    group: str
    seed_key: tuple[int, ...]


@dataclass(frozen=True)
class _Anatomy:
    """One subject's random draws (all that makes its volume)."""

    gm_loss: float
    ventricles: float
    regional: float
    hemisphere_weights: tuple[float, float]
    scale: np.ndarray
    angles: np.ndarray
    shift: np.ndarray
    lattice: np.ndarray
    bias_jitter: np.ndarray
    gain: float


def _draw_anatomy(subject: _Subject, rng: np.random.Generator) -> _Anatomy:
    frac = (subject.age - 20.0) / 66.0
    gm_loss = float(np.clip(0.35 * max(frac, 0.0) ** 1.3 + rng.normal(0.0, 0.03), 0.0, 0.4))
    ventricles = float(np.clip(0.05 + 0.45 * max(frac, 0.0) ** 2 + rng.normal(0.0, 0.05), 0.0, 0.8))
    # every subject makes the same draws, so a patient differs from a control with the same
    # seed only by the atrophy pattern
    regional = float(rng.uniform(0.35, 0.6))
    hemis = (float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.5, 1.0)))
    extra_ventricles = float(rng.uniform(0.15, 0.3))
    if subject.group == "patient":
        ventricles = min(ventricles + extra_ventricles, 0.85)
    else:
        regional, hemis = 0.0, (0.0, 0.0)
    size = 1.0 + (0.02 if subject.sex == "M" else -0.02) + rng.normal(0.0, 0.035)
    scale = size * (1.0 + rng.normal(0.0, 0.02, 3))
    angles = np.clip(rng.normal(0.0, [5.0, 3.0, 3.0]), -12.0, 12.0)
    shift = np.clip(rng.normal(0.0, 4.0, 3), -10.0, 10.0)
    lattice = rng.normal(0.0, _DEFORM_SD_MM, (3, *_LATTICE_SHAPE)).astype(np.float64)
    bias_jitter = rng.normal(0.0, 0.03, 9)
    gain = float(rng.uniform(0.9, 1.1))
    return _Anatomy(
        gm_loss, ventricles, regional, hemis, scale, angles, shift, lattice, bias_jitter, gain
    )


def _template_coordinates(world: np.ndarray, anat: _Anatomy, tpl_affine: np.ndarray) -> np.ndarray:
    """Scanner mm (3, N) -> template voxel coordinates (3, N): pose, deformation, ventricles."""
    from scipy import ndimage as ndi

    rs = _rotation(anat.angles) @ np.diag(anat.scale)
    # inverse pose: x_anat = c + (R S)^-1 (x - c - t)
    x = np.linalg.solve(rs, world - (_HEAD_CENTRE + anat.shift)[:, None]) + _HEAD_CENTRE[:, None]
    # smooth random deformation (backward displacement field)
    lat = (x - _LATTICE_ORIGIN[:, None]) / _LATTICE_SPACING_MM
    disp = np.stack(
        [ndi.map_coordinates(anat.lattice[c], lat, order=3, mode="nearest") for c in range(3)]
    )
    # ventricular enlargement: sample from closer to the ventricles' centre
    d = (x - _VENTRICLE_CENTRE[:, None]) / _VENTRICLE_WIDTH[:, None]
    radial = -anat.ventricles * np.exp(-0.5 * np.sum(d * d, axis=0))
    xt = x + disp + radial * (x - _VENTRICLE_CENTRE[:, None])
    inv = np.linalg.inv(tpl_affine)
    return inv[:3, :3] @ xt + inv[:3, 3:4]


def _bias(world: np.ndarray, coef: np.ndarray) -> np.ndarray:
    u = (world - _HEAD_CENTRE[:, None]) / 100.0
    x, y, z = u
    basis = np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z])
    return np.exp(coef @ basis)


def _render(
    subject: _Subject, site: SiteProtocol, base: np.ndarray, tpl: _Templates, resolution: int
) -> np.ndarray:
    """The stored array of one subject at its site, in the site's dtype."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(list(subject.seed_key))
    anat = _draw_anatomy(subject, rng)
    c = site.contrast
    # subject anatomy in template space: grey matter partly replaced by CSF signal
    loss = np.float32(anat.gm_loss) * tpl.gm
    if anat.regional > 0:
        wl, wr = anat.hemisphere_weights
        regions = _gm_regions(resolution)
        loss += np.float32(anat.regional * wl) * regions["left"]
        loss += np.float32(anat.regional * wr) * regions["right"]
    volume = base + np.float32(c["csf"] - c["gm"]) * loss

    shape, affine = _site_grid(site, resolution)
    ncs = [max(2, math.ceil((n - 1) / _COARSE) + 1) for n in shape]
    grids = np.meshgrid(
        *[np.linspace(0.0, n - 1.0, nc) for n, nc in zip(shape, ncs)], indexing="ij"
    )
    vox = np.stack([g.ravel() for g in grids])
    world = affine[:3, :3] @ vox + affine[:3, 3:4]
    coords = _template_coordinates(world, anat, tpl.affine)
    bias = _bias(world, np.asarray(site.bias) + anat.bias_jitter) * anat.gain
    mats = [_interp_matrix(n, nc) for n, nc in zip(shape, ncs)]
    # The whole mapping (pose, deformation, ventricles, site grid) is smooth, so it is computed
    # on the coarse grid and interpolated; the image itself is interpolated once, trilinearly.
    # (MONAI's Rand3DElastic draws its field at full resolution and cannot compose it with a
    # resampling to another grid and orientation in one interpolation.)
    full = [_upsample(coords[k].reshape(ncs), mats) for k in range(3)]
    # Below the template's lower edge the neck goes on to the edge of the field of view: the
    # lowest slice is repeated ("nearest"; on every other side the grid's edge is air).
    signal = ndi.map_coordinates(
        volume, full, order=1, mode="nearest", prefilter=False, output=np.float32
    )
    del full
    signal *= _upsample(bias.reshape(ncs).astype(np.float32), mats)
    # Rician noise: magnitude of a complex signal with Gaussian noise on both channels
    sd = np.float32(site.noise)
    real = signal + sd * rng.standard_normal(shape, dtype=np.float32)
    imag = sd * rng.standard_normal(shape, dtype=np.float32)
    out = np.sqrt(real * real + imag * imag) * np.float32(site.scale)
    if site.dtype == "float32":
        if site.quantum > 0:
            # stored as multiples of a power of two, as after an integer -> float conversion
            out = np.round(out / site.quantum) * np.float32(site.quantum)
        return out.astype(np.float32)
    info = np.iinfo(site.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(site.dtype)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    # nibabel writes gzip with mtime 0 and no file name, so files are byte-reproducible
    img.to_filename(path)
