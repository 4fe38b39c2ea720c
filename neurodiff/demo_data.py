"""A SIMULATED multi-site T1 cohort, written as BIDS, for running the study without real data.

Nothing here is real patient data. Every volume is built from the MNI ICBM152 2009a nonlinear
symmetric templates that ship inside the nilearn wheel (T1, grey-matter and white-matter
probability maps, brain mask; Fonov et al. 2009, 2011), so no download is needed.

How a volume is made
--------------------
Template space (once per cohort)
    The template T1 is remapped, piecewise-linearly through its CSF, grey- and white-matter
    levels, to each site's tissue contrast. A crude head is grown around the brain mask from a
    distance map: a CSF rim, the skull (dark, with a brighter marrow layer) and the scalp (bright,
    like fat on T1). The volumes stop at the template's lower edge, below the cerebellum.

Each subject (its own anatomy)
    * grey-matter thinning with age: part of the grey-matter signal is replaced by CSF signal
      (up to 35 % at 86 years);
    * ventricular enlargement with age: a smooth radial expansion centred on the lateral
      ventricles (MNI (0, -17, 15) mm, widths (14, 24, 12) mm; up to ~5 mm);
    * a smooth random deformation (cubic spline through random displacements on a 24 mm
      lattice, 2 mm standard deviation);
    * a global size (sex-linked, ~4 % spread), small anisotropic stretch, rotation (pitch 5 deg,
      roll and yaw 3 deg standard deviation) and translation (4 mm).

Each site (its own acquisition, see :data:`SITE_PROTOCOLS`)
    tissue contrast, a smooth multiplicative bias field, Rician noise level, voxel size and field
    of view, intensity scale and on-disk dtype (uint16, int16, float32), and storage orientation
    (site A is stored RAS, site B LPS, site C LIA). All of this is one composed coordinate
    mapping, so each volume is interpolated exactly once (trilinear).

Patients (``patients > 0``)
    Extra subjects with a pattern modelled on behavioural-variant frontotemporal dementia:
    grey-matter loss (35-60 % of the grey-matter signal at the core of the pattern) in the
    frontal lobes (dorsolateral, medial and orbitofrontal), the insula and the anterior temporal
    lobes, asymmetric (each hemisphere weighted 0.5-1), plus extra ventricular enlargement.
    Ages 45-80 (mean 62), 60 % male. They are numbered after the healthy subjects, so adding
    patients leaves the healthy subjects' files unchanged; ``participants.tsv`` gets a ``group``
    column (``control`` / ``patient``).

Determinism
    The same arguments give byte-identical files (every random draw comes from a generator
    seeded by ``(seed, group, subject index)``; gzip headers carry no time stamp), whatever the
    number of worker processes. Another seed gives other subjects.

The output is a BIDS raw dataset: ``dataset_description.json`` (which says that the data are
simulated, from what and how, with every generator parameter), ``participants.tsv``
(``participant_id``, ``site``, ``age``, ``sex`` [, ``group``]), ``participants.json``, a
``README`` and ``sub-*/anat/sub-*_T1w.nii.gz``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ConfigError
from .io import atomic_dir

__all__ = [
    "BVFTD_REGIONS",
    "SITE_PROTOCOLS",
    "SiteProtocol",
    "make_demo_cohort",
    "site_protocols",
]

log = logging.getLogger(__name__)

GENERATOR_NAME = "neurodiff demo-data"

# Template T1 levels (mean intensity, nilearn's MNI152 2009a T1 scaled to [0, 1]) of voxels that
# are mostly CSF, grey and white matter; measured once on the 1 mm template.
_TEMPLATE_LEVELS = {"csf": 0.284, "gm": 0.651, "wm": 0.864}
# Centre (MNI mm) and widths (mm) of the lateral ventricles, from the template's deep CSF.
_VENTRICLE_CENTRE = np.array([0.0, -17.0, 15.0])
_VENTRICLE_WIDTH = np.array([14.0, 24.0, 12.0])
# Centre of rotation of the head (MNI mm) and of every site's field of view.
_HEAD_CENTRE = np.array([0.0, -17.0, 12.0])
# Head model: distances (mm) outside a smoothed brain hull.
_RIM_MM, _SKULL_MM, _SCALP_MM = 2.0, 6.5, 6.0
# Random deformation: cubic spline through displacements on a lattice (mm).
_LATTICE_SPACING_MM = 24.0
_LATTICE_ORIGIN = np.array([-134.0, -170.0, -110.0])
_LATTICE_SHAPE = (12, 14, 12)
_DEFORM_SD_MM = 2.0
# Coordinates and bias are computed every _COARSE voxels and interpolated in between.
_COARSE = 6

#: Regions of the bvFTD-like atrophy pattern: (name, centre in MNI mm for the right hemisphere,
#: half-widths in mm). Each is a rounded box, weight exp(-(sum of ((x - c) / w) ** 4) / 2): flat
#: over the region, falling off within ~a third of a half-width. Mirrored (x -> -x) on the left.
BVFTD_REGIONS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("dorsolateral and medial prefrontal", (30.0, 40.0, 20.0), (38.0, 32.0, 35.0)),
    ("orbitofrontal", (20.0, 35.0, -15.0), (25.0, 22.0, 12.0)),
    ("anterior cingulate", (5.0, 30.0, 20.0), (8.0, 22.0, 18.0)),
    ("insula", (38.0, 5.0, 2.0), (8.0, 20.0, 15.0)),
    ("anterior temporal", (42.0, 12.0, -30.0), (18.0, 18.0, 14.0)),
)


@dataclass(frozen=True)
class SiteProtocol:
    """How one simulated site acquires and stores its T1 volumes.

    Intensities are relative to white matter (= 1) before ``scale`` is applied.
    """

    name: str
    description: str
    voxel_size: tuple[float, float, float]  # mm, along the stored axes
    orientation: str  # nibabel axis codes of the stored axes, e.g. "LPS"
    dtype: str  # on-disk dtype
    scale: float  # white-matter level on disk
    fov_mm: tuple[float, float, float]  # field of view along x, y, z (mm)
    contrast: dict[str, float] = field(default_factory=dict)  # csf, gm, skull, marrow, scalp
    noise: float = 0.03  # Rician noise SD, relative to white matter
    bias: tuple[float, ...] = (0.0,) * 9  # log-bias coefficients (x, y, z, x2, y2, z2, xy, xz, yz)
    quantum: float = 0.0  # float dtypes: values stored as multiples of this (0 = full precision)


#: The three reference sites; more sites are derived from them (:func:`site_protocols`).
SITE_PROTOCOLS: tuple[SiteProtocol, ...] = (
    SiteProtocol(
        name="A",
        description="3T-like: strong grey/white contrast, strong bias field, low noise; "
        "stored RAS, uint16",
        voxel_size=(1.2, 1.2, 1.2),
        orientation="RAS",
        dtype="uint16",
        scale=1000.0,
        fov_mm=(200.0, 240.0, 200.0),
        contrast={"csf": 0.15, "gm": 0.55, "skull": 0.06, "marrow": 0.40, "scalp": 0.90},
        noise=0.02,
        bias=(0.10, -0.12, 0.18, -0.10, -0.06, -0.08, 0.04, 0.05, -0.03),
    ),
    SiteProtocol(
        name="B",
        description="1.5T-like: flat contrast, weak bias, more noise; thick sagittal voxels; "
        "stored LPS (DICOM-like), int16",
        voxel_size=(1.5, 1.2, 1.2),
        orientation="LPS",
        dtype="int16",
        scale=2500.0,
        fov_mm=(200.0, 240.0, 200.0),
        contrast={"csf": 0.30, "gm": 0.72, "skull": 0.10, "marrow": 0.50, "scalp": 0.95},
        noise=0.04,
        bias=(-0.04, 0.05, -0.06, -0.03, -0.02, -0.04, 0.0, 0.0, 0.02),
    ),
    SiteProtocol(
        name="C",
        description="1.5T-like with a surface-coil bias (bright back of the head); coarser "
        "voxels; stored LIA (FreeSurfer-like), float32",
        voxel_size=(1.4, 1.4, 1.4),
        orientation="LIA",
        dtype="float32",
        scale=1.0,
        fov_mm=(200.0, 240.0, 200.0),
        contrast={"csf": 0.22, "gm": 0.63, "skull": 0.08, "marrow": 0.35, "scalp": 0.85},
        noise=0.03,
        bias=(0.0, -0.25, 0.05, -0.05, 0.10, -0.05, 0.0, 0.03, 0.06),
        quantum=2.0**-10,
    ),
)

_EXTRA_ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "PIR", "ASL")
_DTYPE_SCALE = {"uint16": 1000.0, "int16": 2000.0, "float32": 1.0}


def site_protocols(n: int) -> tuple[SiteProtocol, ...]:
    """The first ``n`` site protocols: A, B, C, then variations derived from them.

    Sites beyond the third are drawn from a generator seeded by the site's index only, so a
    site's protocol never depends on the cohort seed.
    """
    if not 1 <= n <= 26:
        raise ConfigError(f"sites must be between 1 and 26; got {n}", parameter="sites")
    out = list(SITE_PROTOCOLS[:n])
    for i in range(len(SITE_PROTOCOLS), n):
        rng = np.random.default_rng([1000, i])
        base = SITE_PROTOCOLS[i % len(SITE_PROTOCOLS)]
        dtype = str(rng.choice(list(_DTYPE_SCALE)))
        vox = tuple(float(v) for v in np.round(rng.uniform(1.0, 1.5, 3) / 0.1) * 0.1)
        contrast = {
            k: float(np.clip(v * rng.uniform(0.85, 1.15), 0.02, 0.98))
            for k, v in base.contrast.items()
        }
        out.append(
            SiteProtocol(
                name=chr(ord("A") + i),
                description=f"variation of site {base.name}",
                voxel_size=vox,  # type: ignore[arg-type]
                orientation=_EXTRA_ORIENTATIONS[i % len(_EXTRA_ORIENTATIONS)],
                dtype=dtype,
                scale=_DTYPE_SCALE[dtype] * float(rng.uniform(0.8, 1.25)),
                fov_mm=base.fov_mm,
                contrast=contrast,
                noise=float(rng.uniform(0.015, 0.045)),
                bias=tuple(float(b) for b in rng.normal(0.0, 0.08, 9)),
                quantum=2.0**-10 if dtype == "float32" else 0.0,
            )
        )
    return tuple(out)


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
    return _Templates(affine=affine, t1=t1, gm=gm, outside=outside, dist=dist)


@lru_cache(maxsize=2)
def _gm_regions(resolution: int) -> dict[str, np.ndarray]:
    """``"left"``/``"right"``: grey matter x the bvFTD-like region weight (template grid)."""
    tpl = _templates(resolution)
    axes = [
        tpl.affine[i, i] * np.arange(n, dtype=np.float32) + tpl.affine[i, 3]
        for i, n in enumerate(tpl.gm.shape)
    ]
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


def _head_profile(c: dict[str, float]) -> tuple[list[float], list[float]]:
    """Signal against distance outside the brain hull (mm): CSF rim, skull with a marrow
    layer in its middle, scalp, then air. Piecewise linear, with ~1 mm transitions."""
    s0 = _RIM_MM
    s1 = s0 + _SKULL_MM
    s2 = s1 + _SCALP_MM
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


def _site_base(tpl: _Templates, site: SiteProtocol) -> np.ndarray:
    """The template head in this site's contrast (white matter = 1), template grid."""
    c = site.contrast
    lv = _TEMPLATE_LEVELS
    slope = (1.0 - c["gm"]) / (lv["wm"] - lv["gm"])
    xp = [0.0, lv["csf"], lv["gm"], lv["wm"], 1.0]
    fp = [0.0, c["csf"], c["gm"], 1.0, 1.0 + (1.0 - lv["wm"]) * slope]
    head = np.interp(tpl.t1, xp, fp).astype(np.float32)
    head += tpl.outside * np.interp(tpl.dist, *_head_profile(c)).astype(np.float32)
    return head


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
    signal = ndi.map_coordinates(
        volume, full, order=1, mode="constant", cval=0.0, prefilter=False, output=np.float32
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


# State shared with forked workers (set before the pool starts; read-only in workers).
_STATE: dict[str, Any] = {}


def _single_thread() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread: the matrix products then give the same bits whatever the machine load.

    (BLAS splits work between threads differently with their number, and fused multiply-adds
    round differently in another order, so the volumes would depend on the thread count.)
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with nilearn's scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _limit_threads() -> None:
    _single_thread()


def _work(index: int) -> int:
    st = _STATE
    subject: _Subject = st["subjects"][index]
    site = st["sites"][subject.site]
    data = _render(subject, site, st["bases"][subject.site], st["templates"], st["resolution"])
    _, affine = _site_grid(site, st["resolution"])
    pid = subject.participant_id
    _write_nifti(st["root"] / pid / "anat" / f"{pid}_T1w.nii.gz", data, affine)
    return index


def _draw_subjects(subjects: int, patients: int, n_sites: int, seed: int) -> list[_Subject]:
    width = max(3, len(str(subjects + patients)))
    out = []
    rng = np.random.default_rng([seed, 0])
    sites = rng.permutation(np.arange(subjects) % n_sites)
    ages = rng.integers(20, 87, subjects)
    sexes = rng.choice(["F", "M"], subjects)
    for i in range(subjects):
        out.append(
            _Subject(
                f"sub-{i + 1:0{width}d}",
                int(sites[i]),
                int(ages[i]),
                str(sexes[i]),
                "control",
                (seed, 2, i),
            )
        )
    if patients:
        rng = np.random.default_rng([seed, 1])
        sites = rng.permutation(np.arange(patients) % n_sites)
        ages = np.clip(np.rint(rng.normal(62.0, 8.0, patients)), 45, 80).astype(int)
        sexes = np.where(rng.uniform(size=patients) < 0.6, "M", "F")
        for j in range(patients):
            out.append(
                _Subject(
                    f"sub-{subjects + j + 1:0{width}d}",
                    int(sites[j]),
                    int(ages[j]),
                    str(sexes[j]),
                    "patient",
                    (seed, 3, j),
                )
            )
    return out


def _description(
    subjects: int, sites: Sequence[SiteProtocol], seed: int, patients: int, resolution: int
) -> dict[str, Any]:
    import nilearn

    how = (
        "SIMULATED DATA - not images of real people. Each volume is built from the MNI ICBM152 "
        "2009a nonlinear symmetric templates (T1, grey/white-matter maps, brain mask) shipped "
        f"with nilearn {nilearn.__version__}, remapped to a site's tissue contrast, with a crude "
        "layered head (CSF rim, skull with marrow, scalp) grown from the brain mask. Each "
        "subject gets age-linked grey-matter thinning and ventricular enlargement, a smooth "
        "random deformation, and a random head size, rotation and translation; each site its "
        "own voxel size, field of view, storage orientation, on-disk dtype and intensity scale, "
        "bias field and Rician noise."
    )
    if patients:
        how += (
            " Subjects with group 'patient' add a pattern modelled on behavioural-variant "
            "frontotemporal dementia: asymmetric grey-matter loss in frontal (dorsolateral, "
            "medial, orbitofrontal, anterior cingulate), insular and anterior temporal cortex, "
            "and extra ventricular enlargement."
        )
    return {
        "Name": "neurodiff simulated multi-site T1w cohort (SIMULATED DATA)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "The images derive from the MNI ICBM152 2009a templates; see their copyright "
        "notice (McConnell Brain Imaging Centre, Montreal Neurological Institute).",
        "Authors": ["neurodiff demo-data (simulation)"],
        "HowToAcknowledge": "Cite the MNI ICBM152 2009 templates (Fonov et al. 2009, 2011).",
        "ReferencesAndLinks": [
            "Fonov V, Evans A, McKinstry R, Almli C, Collins D. Unbiased nonlinear average "
            "age-appropriate brain templates from birth to adulthood. NeuroImage 47:S102 (2009).",
            "Fonov V et al. Unbiased average age-appropriate atlases for pediatric studies. "
            "NeuroImage 54(1):313-327 (2011).",
        ],
        "GeneratedBy": [
            {
                "Name": GENERATOR_NAME,
                "Version": __version__,
                "Description": how,
            }
        ],
        "SourceDatasets": [
            {
                "Description": "MNI ICBM152 2009a nonlinear symmetric templates as shipped inside "
                f"the nilearn {nilearn.__version__} wheel",
            }
        ],
        "Simulated": True,
        "SimulationParameters": {
            "subjects": subjects,
            "patients": patients,
            "sites": len(sites),
            "seed": seed,
            "resolution_mm": resolution,
            "site_protocols": [asdict(s) for s in sites],
            "ventricle_centre_mm": _VENTRICLE_CENTRE.tolist(),
            "ventricle_width_mm": _VENTRICLE_WIDTH.tolist(),
            "deformation_lattice_mm": _LATTICE_SPACING_MM,
            "deformation_sd_mm": _DEFORM_SD_MM,
            "grey_matter_loss_at_86_years": 0.35,
            "bvftd_regions": [
                {"name": n, "centre_mm_right": list(c), "width_mm": list(w)}
                for n, c, w in BVFTD_REGIONS
            ]
            if patients
            else [],
            "bvftd_regional_loss": [0.35, 0.6] if patients else [],
        },
    }


_PARTICIPANTS_JSON = {
    "participant_id": {"Description": "subject label"},
    "site": {
        "Description": "simulated acquisition site (see SimulationParameters in "
        "dataset_description.json)"
    },
    "age": {"Description": "simulated age", "Units": "year"},
    "sex": {"Description": "simulated sex", "Levels": {"F": "female", "M": "male"}},
    "group": {
        "Description": "diagnostic group",
        "Levels": {"control": "healthy control", "patient": "simulated bvFTD-like atrophy pattern"},
    },
}


def _is_demo_cohort(path: Path) -> bool:
    try:
        desc = json.loads((path / "dataset_description.json").read_text())
        return desc.get("GeneratedBy", [{}])[0].get("Name") == GENERATOR_NAME
    except (OSError, ValueError, AttributeError, IndexError, TypeError):
        return False


def make_demo_cohort(
    out: str | Path,
    subjects: int = 48,
    sites: int = 3,
    seed: int = 0,
    patients: int = 0,
    *,
    resolution: int = 1,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the simulated multi-site BIDS cohort to ``out`` and return its path.

    Parameters
    ----------
    out : str or Path
        Output folder. Replaced atomically; an existing folder is replaced only if it is empty
        or a cohort written by this function.
    subjects : int
        Healthy subjects (``sub-001`` ...), spread evenly over the sites.
    sites : int
        Number of sites (1-26): A, B and C are :data:`SITE_PROTOCOLS`, more are variations.
    seed : int
        Same seed, same bytes; another seed, other subjects.
    patients : int
        Extra subjects with the bvFTD-like pattern (adds a ``group`` column).
    resolution : {1, 2}
        Template resolution in mm; 2 also doubles every site's voxel size (8x fewer voxels), a
        fast mode for tests.
    workers : int, optional
        Processes rendering volumes (default: up to 2 on Linux, forked; 1 elsewhere, or when
        the calling process runs other threads). The output does not depend on it.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        ``out``, holding ``dataset_description.json``, ``participants.tsv``,
        ``participants.json``, ``README`` and ``sub-*/anat/sub-*_T1w.nii.gz``.
    """
    for name, value, lo in (
        ("subjects", subjects, 1),
        ("sites", sites, 1),
        ("seed", seed, 0),
        ("patients", patients, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}; got {value!r}", parameter=name)
    protocols = site_protocols(int(sites))
    if sites > subjects:
        raise ConfigError(
            f"sites ({sites}) must not exceed subjects ({subjects}): every site "
            "needs at least one subject",
            parameter="sites",
        )
    if resolution not in (1, 2):
        raise ConfigError(
            f"resolution must be 1 or 2 (mm); got {resolution!r}", parameter="resolution"
        )
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ConfigError(
                f"--out {out} is a file; expected a folder for the cohort",
                parameter="out",
                path=out,
            )
        if any(out.iterdir()) and not _is_demo_cohort(out):
            raise ConfigError(
                f"--out {out} exists and is not a cohort written by "
                f"'{GENERATOR_NAME}'; refusing to replace it. Choose a new or "
                "empty folder.",
                parameter="out",
                path=out,
            )

    import pandas as pd
    from tqdm.auto import tqdm

    people = _draw_subjects(int(subjects), int(patients), int(sites), int(seed))
    tpl = _templates(resolution)
    bases = [_site_base(tpl, s) for s in protocols]
    if patients:
        _gm_regions(resolution)  # once, before the workers fork
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if sys.platform.startswith("linux") else 1
    workers = max(1, min(int(workers), len(people)))
    if workers > 1 and threading.active_count() > 1:
        # forking a multi-threaded process (a Jupyter kernel, say) can deadlock
        log.info("other threads are running: rendering in this process only")
        workers = 1
    log.info(
        "simulating %d subjects (%d patients) at %d sites, seed %d, %d worker(s)",
        len(people),
        patients,
        sites,
        seed,
        workers,
    )

    with atomic_dir(out) as root:
        _STATE.update(
            subjects=people,
            sites=protocols,
            bases=bases,
            templates=tpl,
            resolution=resolution,
            root=root,
        )
        try:
            bar = tqdm(total=len(people), desc="demo cohort", unit="subject", disable=not progress)
            if workers > 1:
                ctx = mp.get_context("fork")
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_limit_threads
                ) as pool:
                    for _ in pool.map(_work, range(len(people))):
                        bar.update()
            else:
                with _single_thread():
                    for i in range(len(people)):
                        _work(i)
                        bar.update()
            bar.close()
        finally:
            _STATE.clear()
        rows = {
            "participant_id": [p.participant_id for p in people],
            "site": [protocols[p.site].name for p in people],
            "age": [p.age for p in people],
            "sex": [p.sex for p in people],
        }
        if patients:
            rows["group"] = [p.group for p in people]
        pd.DataFrame(rows).to_csv(
            root / "participants.tsv", sep="\t", index=False, lineterminator="\n"
        )
        pjson = {k: v for k, v in _PARTICIPANTS_JSON.items() if k in rows}
        (root / "participants.json").write_text(json.dumps(pjson, indent=2) + "\n")
        desc = _description(int(subjects), protocols, int(seed), int(patients), resolution)
        (root / "dataset_description.json").write_text(json.dumps(desc, indent=2) + "\n")
        (root / "README").write_text(
            "SIMULATED DATA - not images of real people.\n\n"
            + desc["GeneratedBy"][0]["Description"]
            + "\n\n"
            f"Written by `{GENERATOR_NAME} --subjects {subjects} --sites {sites} --seed {seed}"
            + (f" --patients {patients}" if patients else "")
            + "`"
            + (f" at {resolution} mm (fast mode)" if resolution != 1 else "")
            + ".\n"
        )
    return out
