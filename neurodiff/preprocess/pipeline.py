"""The per-scan pipeline of stage 2: MONAI transforms, dipy registration, QC score, timings.

See :mod:`neurodiff.preprocess` for the steps and why dipy registers. :func:`preprocess_scan`
runs them on one file; the template grids are computed once per process (cached).
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_volume
from ..config import PreprocessConfig
from ..errors import CohortError
from ..templates import mni152, target_affine
from .intensities import HIST_SAMPLES, dice, ncc, normalise, sample_pair
from .strip import strip

__all__ = [
    "HIST_SAMPLES",
    "REG_SPACING",
    "STEPS",
    "ScanResult",
    "ncc",
    "preprocess_scan",
    "registration_settings",
]

#: Voxel size (mm) at which registration is estimated (the transform is applied at full spacing).
REG_SPACING = 4.0


#: dipy optimiser: iterations per pyramid level (coarse to fine) and the pyramid itself.
REG_LEVEL_ITERS = (100, 25)


REG_SIGMAS = (1.0, 0.0)


REG_FACTORS = (2, 1)


#: Margin (mm) kept around the template brain for registration.
REG_MARGIN = 12.0


#: The per-scan steps, in order, as timed in the manifest and by the benchmark.
STEPS = (
    "load",
    "reorient",
    "resample",
    "strip",
    "register",
    "crop",
    "mask",
    "resize",
    "normalise",
    "qc",
    "write",
)


_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass
class ScanResult:
    """One preprocessed scan (see :func:`preprocess_scan`).

    ``volume`` is float32 ``(S, S, S)`` in [0, 1] with ``S = image_size``, RAS, with ``affine``;
    ``mask`` its brain mask (uint8, same grid; None when ``skull_strip`` is off).
    ``ncc`` is the QC score, the NCC with the template inside the template's brain (NaN when it
    could not be computed, ``note`` says why); ``overlap`` the Dice of the scan's brain mask with
    the template's (NaN without a mask or registration); ``head`` whether a skull was found,
    ``stripped`` whether it was removed, ``outside`` the share of the foreground outside the
    brain that decided it (:mod:`.strip`). ``before`` / ``after`` are
    intensity samples of the same foreground voxels before and after normalisation;
    ``timings`` maps each of :data:`STEPS` to seconds.
    """

    subject: str
    volume: np.ndarray
    affine: np.ndarray
    ncc: float
    note: str
    timings: dict[str, float]
    before: np.ndarray
    after: np.ndarray
    overlap: float = float("nan")
    head: bool = False
    stripped: bool = False
    outside: float = float("nan")
    mask: np.ndarray | None = None


def _meta(array: np.ndarray, affine: np.ndarray):
    import torch
    from monai.data import MetaTensor

    return MetaTensor(
        torch.as_tensor(np.ascontiguousarray(array)[None], dtype=torch.float32),
        affine=torch.as_tensor(affine, dtype=torch.float64),
    )


@functools.lru_cache(maxsize=4)
def _template_for(register: str, target_spacing: float, fov: int) -> tuple[np.ndarray, np.ndarray]:
    """Template T1 and brain mask on the grid a subject lands on before resizing: ``(fov,)*3``.

    Registered: the MNI cube. Not registered: the template put through the same crop/pad as a
    subject, so the QC score compares like with like.
    """
    from monai.transforms import SpatialResample

    t1, mask, affine = mni152()
    if register != "none":
        dst = target_affine(target_spacing, fov)
        rs = SpatialResample(mode="bilinear", padding_mode="zeros")
        out = [
            np.asarray(rs(_meta(x, affine), dst_affine=dst, spatial_size=(fov,) * 3)[0])
            for x in (t1, mask)
        ]
        return out[0], (out[1] > 0.5).astype(np.float32)
    d = {"image": _meta(t1, affine), "mask": _meta(mask, affine)}
    d = _resample_step(d, target_spacing, keys=("image", "mask"))
    d = _crop_step(d, fov, keys=("image", "mask"))
    return np.asarray(d["image"][0]), (np.asarray(d["mask"][0]) > 0.5).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _template_final(register: str, target_spacing: float, fov: int, size: int) -> np.ndarray:
    """The template T1 as a subject ends up before normalisation: ``(size,) * 3``."""
    from monai.transforms import Resize

    t1, _mask = _template_for(register, target_spacing, fov)
    return np.asarray(Resize((size,) * 3, mode="area")(t1[None])[0], dtype=np.float32)


@functools.lru_cache(maxsize=4)
def _template_mask_final(register: str, target_spacing: float, fov: int, size: int) -> np.ndarray:
    """The template brain mask as a subject's lands before normalisation (bool, ``(size,) * 3``)."""
    from monai.transforms import Resize

    _t1, mask = _template_for(register, target_spacing, fov)
    return np.asarray(Resize((size,) * 3, mode="area")(mask[None])[0]) > 0.5


@functools.lru_cache(maxsize=2)
def _template_static(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """dipy's static image: the template at ``spacing``, cropped to its brain + REG_MARGIN mm.

    The crop keeps the optimiser on the brain and its edges (a third fewer points than the
    whole template box, and a better fit on the demo cohort).
    """
    from monai.transforms import Spacingd

    t1, mask, affine = mni152()
    d = {"image": _meta(t1, affine), "mask": _meta(mask, affine)}
    d = Spacingd(keys=("image", "mask"), pixdim=(spacing,) * 3, mode=("bilinear", "nearest"))(d)
    img, brain = np.asarray(d["image"][0], dtype=np.float64), np.asarray(d["mask"][0]) > 0.5
    idx = np.argwhere(brain)
    margin = int(math.ceil(REG_MARGIN / spacing))
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, img.shape)
    grid2world = np.asarray(d["image"].affine, dtype=np.float64).copy()
    grid2world[:3, 3] = (grid2world @ np.append(lo, 1.0))[:3]
    static = img[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return np.ascontiguousarray(static), grid2world


def _resample_step(d: dict, spacing: float, keys: tuple[str, ...] = ("image",)) -> dict:
    """Anti-alias where the scan is finer than ``spacing``, then ``Spacingd`` to it."""
    import torch
    from monai.transforms import Spacingd

    img = d[keys[0]]
    pixdim = np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
    # sigma = (factor - 1) / 2 voxels, the rule skimage.transform.rescale uses for anti-aliasing
    sigma = [max((spacing / p - 1.0) / 2.0, 0.0) for p in pixdim]
    if max(sigma) > 0.25:
        # scipy's separable filter, not monai GaussianSmoothd: the latter is a dense torch
        # convolution, ~50x slower on a CPU for a 1 mm head (seconds instead of tens of ms).
        from scipy.ndimage import gaussian_filter

        smooth = gaussian_filter(np.asarray(img[0]), sigma=sigma, mode="nearest")
        d = {**d, keys[0]: img.clone().copy_(torch.as_tensor(smooth)[None])}
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    return Spacingd(keys=keys, pixdim=(spacing,) * 3, mode=modes, padding_mode="zeros")(d)


def _head_voxels(x):
    """Foreground for cropping an unregistered scan: above 10 % of its 99th percentile."""
    import torch

    flat = x.reshape(-1)
    step = max(1, flat.numel() // 200_000)
    q = torch.quantile(flat[::step].float(), 0.99)
    return x > 0.1 * q


def _crop_step(d: dict, fov: int, keys: tuple[str, ...] = ("image",)) -> dict:
    """Unregistered scans: crop to the head's bounding box, then centre it in an ``fov`` cube."""
    from monai.transforms import CropForegroundd, ResizeWithPadOrCropd

    d = CropForegroundd(keys=keys, source_key=keys[0], select_fn=_head_voxels, allow_smaller=True)(
        d
    )
    return ResizeWithPadOrCropd(keys=keys, spatial_size=(fov,) * 3, mode="constant")(d)


def _register(img, cfg: PreprocessConfig) -> np.ndarray:
    """Estimate the world-to-world transform template -> scan (4x4) with dipy at REG_SPACING."""
    from dipy.align.imaffine import (
        AffineRegistration,
        MutualInformationMetric,
        transform_centers_of_mass,
    )
    from dipy.align.transforms import AffineTransform3D, RigidTransform3D
    from monai.transforms import Spacingd

    static, static_aff = _template_static(REG_SPACING)
    if cfg.target_spacing < REG_SPACING:
        low = Spacingd(
            keys="image", pixdim=(REG_SPACING,) * 3, mode="bilinear", padding_mode="zeros"
        )({"image": img})["image"]
    else:
        low = img
    moving = np.asarray(low[0], dtype=np.float64)
    moving_aff = np.asarray(low.affine, dtype=np.float64)
    com = transform_centers_of_mass(static, static_aff, moving, moving_aff)
    reg = AffineRegistration(
        metric=MutualInformationMetric(nbins=32, sampling_proportion=None),
        level_iters=list(REG_LEVEL_ITERS),
        sigmas=list(REG_SIGMAS),
        factors=list(REG_FACTORS),
        verbosity=0,
    )
    kw = {"static_grid2world": static_aff, "moving_grid2world": moving_aff}
    found = reg.optimize(static, moving, RigidTransform3D(), None, starting_affine=com.affine, **kw)
    if cfg.register == "affine":
        found = reg.optimize(
            static, moving, AffineTransform3D(), None, starting_affine=found.affine, **kw
        )
    affine = np.asarray(found.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-3:
        raise ValueError(f"degenerate transform {affine.round(3).tolist()}")
    return affine


def registration_settings() -> list:
    """The registration constants, as recorded in the manifest and in the cache key."""
    return [REG_SPACING, REG_LEVEL_ITERS, REG_SIGMAS, REG_FACTORS, REG_MARGIN]


class _Clock:
    """Accumulates the seconds spent in each of :data:`STEPS`."""

    def __init__(self) -> None:
        self.timings = dict.fromkeys(STEPS, 0.0)
        self._last = time.perf_counter()

    def tick(self, step: str) -> None:
        now = time.perf_counter()
        self.timings[step] += now - self._last
        self._last = now


def _load_ras(path: str | Path, cfg: PreprocessConfig, subject: str, clock: _Clock) -> dict:
    """Steps 1-3: read, reorient to RAS, anti-alias and resample to ``target_spacing``."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd

    d = LoadImaged(keys="image", reader="NibabelReader", image_only=True)({"image": str(path)})
    d = EnsureChannelFirstd(keys="image", channel_dim="no_channel")(d)
    pixdim = np.sqrt((np.asarray(d["image"].affine)[:3, :3] ** 2).sum(0))
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise CohortError(
            f"subject {subject}: voxel size must be > 0 mm; the header of {path} "
            f"says {pixdim.round(4).tolist()}",
            path=path,
        )
    clock.tick("load")
    d = Orientationd(keys="image", axcodes="RAS", labels=_RAS_LABELS)(d)
    clock.tick("reorient")
    d = _resample_step(d, cfg.target_spacing)
    clock.tick("resample")
    return d


def load_resampled(path: str | Path, cfg: PreprocessConfig) -> tuple[np.ndarray, float]:
    """A scan as stripping sees it: RAS at ``target_spacing`` (steps 1-3), with that spacing."""
    d = _load_ras(path, cfg, Path(path).name, _Clock())
    return np.asarray(d["image"][0], dtype=np.float32), cfg.target_spacing


def template_final(cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """The template T1 and its brain mask as a subject lands at ``image_size`` (for figures)."""
    args = (cfg.register, cfg.target_spacing, cfg.fov_voxels, cfg.image_size)
    return _template_final(*args), _template_mask_final(*args)


def _strip_step(d: dict, cfg: PreprocessConfig, clock: _Clock):
    """Step 3b: skull stripping (:mod:`.strip`); adds the brain mask as ``d["brain"]``."""
    import torch

    img = d["image"]
    out = strip(np.asarray(img[0]), cfg.target_spacing, cfg.skull_strip)
    if out.mask is not None:
        d["image"] = img.clone().copy_(torch.as_tensor(out.image)[None])
        d["brain"] = img.clone().copy_(torch.as_tensor(out.mask.astype(np.float32))[None])
    clock.tick("strip")
    return d, out


def _to_field_of_view(d: dict, cfg: PreprocessConfig, clock: _Clock) -> tuple[dict, str]:
    """Step 4: register to the template and resample onto its cube, or crop/pad the head.

    Returns the data and a note (non-empty when the registration failed).
    """
    import torch
    from monai.transforms import SpatialResample

    fov = cfg.fov_voxels
    note = ""
    keys = tuple(k for k in ("image", "brain") if k in d)
    if cfg.register != "none":
        img = d["image"]
        try:
            transform = _register(img, cfg)  # on the stripped brain when there is a mask
        except Exception as exc:  # noqa: BLE001 - any optimiser failure becomes a QC failure
            note = f"registration failed: {type(exc).__name__}: {exc}"
            transform = np.eye(4)
        clock.tick("register")
        # The found transform maps template world -> scan world; moving the scan's affine by its
        # inverse puts the scan in template space, and MONAI resamples it onto the MNI cube.
        for key in keys:
            moved = d[key].clone()
            moved.affine = torch.as_tensor(
                np.linalg.inv(transform) @ np.asarray(img.affine), dtype=torch.float64
            )
            d[key] = SpatialResample(mode="bilinear", padding_mode="zeros")(
                moved,
                dst_affine=torch.as_tensor(target_affine(cfg.target_spacing, fov)),
                spatial_size=(fov,) * 3,
            )
    else:
        d = _crop_step(d, fov, keys=keys)
    clock.tick("crop")
    return d, note


def _mask_resize_qc(d: dict, cfg: PreprocessConfig, note: str, clock: _Clock):
    """Steps 5-6 and QC: template mask, area resize to ``image_size``, the QC measures.

    Returns the data, the scan's brain mask at ``image_size`` (or None), the QC scores
    ``(ncc, overlap)`` and the note.
    """
    from monai.transforms import MaskIntensityd, Resized

    fov = cfg.fov_voxels
    keys = tuple(k for k in ("image", "brain") if k in d)
    resize = Resized(keys=keys, spatial_size=(cfg.image_size,) * 3, mode="area")
    unmasked = None
    if cfg.mask_brain:  # QC judges the scan, not the template's mask
        unmasked = Resized(keys="image", spatial_size=(cfg.image_size,) * 3, mode="area")(
            {"image": d["image"]}
        )["image"]
        _template, brain = _template_for(cfg.register, cfg.target_spacing, fov)
        d = MaskIntensityd(keys="image", mask_data=brain[None])(d)
    clock.tick("mask")
    d = resize(d)
    own = np.asarray(d.pop("brain")[0]) > 0.5 if "brain" in d else None
    clock.tick("resize")
    # QC: NCC with the template put through the same steps, inside the template's brain at the
    # final resolution (a skull or a neck outside it does not count), and the Dice of the scan's
    # own brain mask with the template's: both drop when the brain lands in the wrong place.
    template = _template_final(cfg.register, cfg.target_spacing, fov, cfg.image_size)
    tmask = _template_mask_final(cfg.register, cfg.target_spacing, fov, cfg.image_size)
    # unregistered (register none, the paper's crop): the head is only centred, so the score
    # stays over the whole field of view, as the template's brain need not be where the scan's is
    region = tmask if cfg.register != "none" else None
    score = ncc(np.asarray((d["image"] if unmasked is None else unmasked)[0]), template, region)
    # unregistered, the template's brain is only roughly where the scan's is: no overlap test
    judged = own is not None and cfg.register != "none"
    overlap = dice(own, tmask) if judged else float("nan")
    if not np.isfinite(score) and not note:
        note = "scan is flat after preprocessing (nothing landed in the field of view)"
    clock.tick("qc")
    return d, own, (score, overlap), note


def preprocess_scan(
    path: str | Path, cfg: PreprocessConfig, subject: str = "", write_to: str | Path | None = None
) -> ScanResult:
    """Run the whole per-scan pipeline on one NIfTI file (see :mod:`neurodiff.preprocess`).

    Parameters
    ----------
    path : str or Path
        A 3D T1 NIfTI file (any orientation, voxel size and dtype).
    cfg : PreprocessConfig
        The stage parameters.
    subject : str
        Name used in messages and for the output file.
    write_to : str or Path, optional
        A preprocessed run folder to write the volume into (float32 in [0, 1], at
        :func:`neurodiff.artifacts.volume_path`).

    Returns
    -------
    ScanResult
        The volume, float32 ``(image_size,) * 3`` in [0, 1], RAS, with its affine, the QC score
        and per-step timings.
    """

    subject = subject or Path(path).name.split(".")[0]
    clock = _Clock()
    d = _load_ras(path, cfg, subject, clock)
    d, stripped = _strip_step(d, cfg, clock)
    d, note = _to_field_of_view(d, cfg, clock)
    note = "; ".join(n for n in (stripped.note, note) if n)
    d, brain, (score, overlap), note = _mask_resize_qc(d, cfg, note, clock)
    scale_mask = brain
    if brain is not None and cfg.mask_brain:  # the template's mask zeroed the rest
        scale_mask = brain & template_final(cfg)[1]
    d, before, volume = normalise(d, cfg, scale_mask)
    affine = np.asarray(d["image"].affine, dtype=np.float64).round(9) + 0.0  # no -0, no 1e-17
    b, a = sample_pair(before, volume, zlib.crc32(f"{cfg.seed}:{subject}".encode()))
    clock.tick("normalise")
    mask = None if brain is None else brain.astype(np.uint8)
    if write_to is not None:
        write_volume(write_to, subject, volume, affine)
        if mask is not None:
            write_volume(write_to, subject, mask, affine, kind="masks")
    clock.tick("write")
    return ScanResult(
        subject,
        volume,
        affine,
        score,
        note,
        clock.timings,
        b,
        a,
        overlap=overlap,
        head=stripped.head,
        stripped=stripped.stripped,
        outside=stripped.outside,
        mask=mask,
    )
