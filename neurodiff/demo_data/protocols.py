"""The simulated sites' acquisition protocols and the bvFTD-like atrophy pattern."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

__all__ = ["BVFTD_REGIONS", "GENERATOR_NAME", "SITE_PROTOCOLS", "SiteProtocol", "site_protocols"]

GENERATOR_NAME = "neurodiff demo-data"

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
    """How one simulated site acquires and stores its T1 volumes, and the heads it sees.

    Intensities are relative to white matter (= 1) before ``scale`` is applied. The head around
    the brain (skull and scalp thickness, their contrast, the neck's muscle) differs between
    sites as the people scanned there do.
    """

    name: str
    description: str
    voxel_size: tuple[float, float, float]  # mm, along the stored axes
    orientation: str  # nibabel axis codes of the stored axes, e.g. "LPS"
    dtype: str  # on-disk dtype
    scale: float  # white-matter level on disk
    fov_mm: tuple[float, float, float]  # field of view along x, y, z (mm)
    # csf, gm, skull, marrow, scalp, muscle (the neck's)
    contrast: dict[str, float] = field(default_factory=dict)
    skull_mm: float = 6.5  # skull thickness (marrow in its middle)
    scalp_mm: float = 6.0  # scalp thickness; the neck's skin rim is as thick
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
        contrast={
            "csf": 0.15,
            "gm": 0.55,
            "skull": 0.06,
            "marrow": 0.40,
            "scalp": 0.90,
            "muscle": 0.50,
        },
        skull_mm=6.5,
        scalp_mm=5.0,
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
        contrast={
            "csf": 0.30,
            "gm": 0.72,
            "skull": 0.10,
            "marrow": 0.50,
            "scalp": 0.95,
            "muscle": 0.58,
        },
        skull_mm=7.5,
        scalp_mm=7.0,
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
        contrast={
            "csf": 0.22,
            "gm": 0.63,
            "skull": 0.08,
            "marrow": 0.35,
            "scalp": 0.85,
            "muscle": 0.44,
        },
        skull_mm=5.5,
        scalp_mm=6.0,
        noise=0.03,
        bias=(0.0, -0.25, 0.05, -0.05, 0.10, -0.05, 0.0, 0.03, 0.06),
        quantum=2.0**-10,
    ),
)

_EXTRA_ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "PIR", "ASL")
_DTYPE_SCALE = {"uint16": 1000.0, "int16": 2000.0, "float32": 1.0}
#: Plausible adult thickness (mm) of the skull and the scalp; derived sites stay within them.
_SKULL_MM_RANGE, _SCALP_MM_RANGE = (5.0, 8.0), (4.0, 8.0)


def site_protocols(n: int) -> tuple[SiteProtocol, ...]:
    """The first ``n`` site protocols: A, B, C, then variations derived from them.

    Sites beyond the third are drawn from a generator seeded by the site's index only, so a
    site's protocol never depends on the cohort seed.
    """
    if not 1 <= n <= 26:
        raise ConfigError(f"sites must be between 1 and 26; got {n}", parameter="sites")
    return tuple(SITE_PROTOCOLS[:n]) + tuple(
        _derived_site(i) for i in range(len(SITE_PROTOCOLS), n)
    )


def _jitter(value: float, rng: np.random.Generator, lo: float, hi: float) -> float:
    """``value`` times a factor in [0.85, 1.15), clipped to [lo, hi]."""
    return float(np.clip(value * rng.uniform(0.85, 1.15), lo, hi))


def _derived_site(i: int) -> SiteProtocol:
    """Site number ``i`` (from 0) beyond the reference sites: a variation of one of them."""
    rng = np.random.default_rng([1000, i])
    base = SITE_PROTOCOLS[i % len(SITE_PROTOCOLS)]
    dtype = str(rng.choice(list(_DTYPE_SCALE)))
    vox = tuple(float(v) for v in np.round(rng.uniform(1.0, 1.5, 3) / 0.1) * 0.1)
    contrast = {k: _jitter(v, rng, 0.02, 0.98) for k, v in base.contrast.items() if k != "muscle"}
    scale = _DTYPE_SCALE[dtype] * float(rng.uniform(0.8, 1.25))
    noise = float(rng.uniform(0.015, 0.045))
    bias = tuple(float(b) for b in rng.normal(0.0, 0.08, 9))
    # The neck's muscle and the head's thickness are drawn after the acquisition, so the
    # draws above are the same whatever the head model draws.
    contrast["muscle"] = _jitter(base.contrast["muscle"], rng, 0.4, 0.6)
    skull_mm = round(_jitter(base.skull_mm, rng, *_SKULL_MM_RANGE), 1)
    scalp_mm = round(_jitter(base.scalp_mm, rng, *_SCALP_MM_RANGE), 1)
    return SiteProtocol(
        name=chr(ord("A") + i),
        description=f"variation of site {base.name}",
        voxel_size=vox,  # type: ignore[arg-type]
        orientation=_EXTRA_ORIENTATIONS[i % len(_EXTRA_ORIENTATIONS)],
        dtype=dtype,
        scale=scale,
        fov_mm=base.fov_mm,
        contrast=contrast,
        skull_mm=skull_mm,
        scalp_mm=scalp_mm,
        noise=noise,
        bias=bias,  # type: ignore[arg-type]
        quantum=2.0**-10 if dtype == "float32" else 0.0,
    )
