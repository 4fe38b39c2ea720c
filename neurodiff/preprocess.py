"""Stage 2: from raw multi-site T1 scans to a model-ready, cached, split dataset.

Every scan goes through the same chain of MONAI dictionary transforms (one ``"image"`` key):

1. ``LoadImaged`` + ``EnsureChannelFirstd`` -- read the NIfTI (any dtype, any storage order);
2. ``Orientationd("RAS")`` -- one axis convention for every site (an LPS-stored scan and its RAS
   twin give the same array from here on);
3. a Gaussian anti-aliasing filter where the scan is finer than the target, then
   ``Spacingd(target_spacing)`` -- isotropic voxels;
4. **registration** (``register = rigid | affine``) to the MNI152 2009 template shipped with
   nilearn, then ``SpatialResample`` onto a cube of ``fov_mm`` centred on the template's brain;
   **or** (``register = none``, the paper's code) ``CropForegroundd`` to the head and
   ``ResizeWithPadOrCropd`` to the same cube around it;
5. ``MaskIntensityd`` with the template brain mask (``mask_brain``; needs a registration);
6. ``Resized(image_size, mode="area")`` -- area averaging, so shrinking the cube does not alias;
7. ``ScaleIntensityRangePercentilesd`` (``normalise = percentile``: clip to the
   ``clip_percentiles`` then [0, 1]) or ``ScaleIntensityd`` (``minmax``, the paper's code);
8. 3D: the volume is one sample; 2D: ``slices_per_subject`` axial slices from ``slice_range``.

Why dipy for registration and not ANTsPy: ``dipy.align.imaffine`` is a pure ``pip`` wheel for
every platform (ANTsPy ships large platform wheels that lag behind new Python versions), works
offline, is actively maintained, and its multi-resolution mutual-information optimiser registers a
4 mm copy of a scan rigidly in one to two seconds on one core -- fast enough to run at every
preprocessing. Registration is estimated at :data:`REG_SPACING` and applied once, at the target
spacing, by MONAI.

Quality control: the normalised cross-correlation (NCC) between each preprocessed scan (before
intensity normalisation) and the template put through the same steps, over the whole field of
view at ``image_size``. A head where the template's is scores 0.7-0.8 on the demo cohort, noise or
a scrambled scan about 0 (unregistered) to 0.3 (registered), a gross misregistration in between.
A scan under ``qc_threshold`` is flagged; with ``qc_exclude`` it is left out of the split, and
listed in ``qc.tsv``, ``split.tsv``, the manifest and the result -- never silently. A registration
that fails outright is an error naming the subject unless ``qc_exclude`` is on.

Outputs (``params.stage_dir("preprocessed")``, written into a temporary folder and renamed into
place, the manifest last): ``manifest.json``, ``split.tsv``, ``qc.tsv``, ``cohort.tsv``,
``train.npy`` / ``test.npy`` float32 ``(N, 1, *spatial)`` in [-1, 1] with ``train_index.tsv`` /
``test_index.tsv``, ``volumes/<subject>.nii.gz`` (float32 in [0, 1]) and ``histograms.npz``
(intensity samples before and after normalisation, for the figures). The same parameters and the
same source files reuse the cache; anything else rebuilds it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .config import ConfigError, ModelConfig, Params, PreprocessConfig
from .errors import CohortError, DataError, NeurodiffError
from .io import atomic_dir, atomic_write_json, file_sha256

if TYPE_CHECKING:  # pragma: no cover
    from monai.data import CacheDataset

__all__ = [
    "FORMAT",
    "REG_SPACING",
    "STEPS",
    "PreprocessResult",
    "ScanResult",
    "cache_key",
    "check_params",
    "load_manifest",
    "load_qc",
    "load_split",
    "load_split_table",
    "ncc",
    "preprocess_scan",
    "run",
    "split_subjects",
    "stage_folder",
    "target_affine",
    "training_dataset",
]

log = logging.getLogger(__name__)

#: Written into the manifest; bump when the pipeline changes so old caches are rebuilt.
FORMAT = "neurodiff-preprocessed/1"
#: Voxel size (mm) at which registration is estimated (the transform is applied at full spacing).
REG_SPACING = 4.0
#: dipy optimiser: iterations per pyramid level (coarse to fine) and the pyramid itself.
REG_LEVEL_ITERS = (100, 25)
REG_SIGMAS = (1.0, 0.0)
REG_FACTORS = (2, 1)
#: Margin (mm) kept around the template brain for registration.
REG_MARGIN = 12.0
#: Intensity samples kept per subject for the before/after histograms.
HIST_SAMPLES = 2000
#: The per-scan steps, in order, as timed in the manifest and by the benchmark.
STEPS = (
    "load",
    "reorient",
    "resample",
    "register",
    "crop",
    "mask",
    "resize",
    "normalise",
    "qc",
    "write",
)
#: Files of a cohort folder that fingerprint it for the cache (scans and tables).
_SOURCE_SUFFIXES = (".nii", ".nii.gz", ".tsv", ".csv", ".xls", ".xlsx", ".json")
#: Parameters that choose where outputs go, not what they contain (left out of the cache key).
_LOCATION_PARAMS = ("profile", "derived_dir")
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


# --------------------------------------------------------------------------------------------
# Results and small public helpers
# --------------------------------------------------------------------------------------------


@dataclass
class PreprocessResult:
    """What :func:`run` built (or found in the cache)."""

    out_dir: Path
    cached: bool
    spatial_dims: int
    shape: tuple[int, ...]
    n_subjects: int
    n_train_subjects: int
    n_test_subjects: int
    n_train: int
    n_test: int
    excluded: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    seconds: float = 0.0
    build_seconds: float = 0.0
    params_hash: str = ""

    def __str__(self) -> str:
        how = (
            f"reused the cache (built in {self.build_seconds:.1f} s)"
            if self.cached
            else f"built in {self.seconds:.1f} s"
        )
        kind = "slices" if self.spatial_dims == 2 else "volumes"
        lines = [
            f"preprocessed {self.n_subjects} subjects -> {self.out_dir} ({how})",
            f"  train: {self.n_train_subjects} subjects, {self.n_train} {kind} of shape "
            f"{self.shape}",
            f"  test:  {self.n_test_subjects} subjects, {self.n_test} {kind}",
            f"  QC flagged {len(self.flagged)}"
            + (f": {', '.join(self.flagged)}" if self.flagged else ""),
            f"  excluded {len(self.excluded)}"
            + (f": {', '.join(self.excluded)}" if self.excluded else ""),
            f"  parameters hash {self.params_hash}",
        ]
        return "\n".join(lines)


@dataclass
class ScanResult:
    """One preprocessed scan (see :func:`preprocess_scan`).

    ``volume`` is float32 ``(S, S, S)`` in [0, 1] with ``S = image_size``, RAS, with ``affine``.
    ``ncc`` is the QC score (NaN when it could not be computed), ``note`` says why if so.
    ``before`` / ``after`` are intensity samples of the same foreground voxels before and after
    normalisation; ``timings`` maps each of :data:`STEPS` to seconds.
    """

    subject: str
    volume: np.ndarray
    affine: np.ndarray
    ncc: float
    note: str
    timings: dict[str, float]
    before: np.ndarray
    after: np.ndarray


def stage_folder(params_or_dir: Params | str | Path) -> Path:
    """``<derived_dir>/<profile>/preprocessed`` of ``params``, or the folder given."""
    if isinstance(params_or_dir, Params):
        return params_or_dir.stage_dir("preprocessed")
    return Path(params_or_dir)


def cache_key(cfg: PreprocessConfig) -> str:
    """Hash of everything that decides the content of the outputs (parameters + pipeline)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _LOCATION_PARAMS}
    d["_format"] = FORMAT
    d["_registration"] = [REG_SPACING, REG_LEVEL_ITERS, REG_SIGMAS, REG_FACTORS, REG_MARGIN]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised cross-correlation (Pearson r) of ``a`` and ``b`` inside ``mask``; NaN if flat."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is not None:
        m = np.asarray(mask) > 0
        a, b = a[m], b[m]
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / den) if den > 0 else float("nan")


def split_subjects(table: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Seeded subject-level train/test split, stratified by site.

    In each site (subjects sorted, then shuffled by a generator seeded with ``seed`` and the site
    name, so adding a site leaves the others' splits unchanged), ``round(test_fraction * n)``
    subjects go to test -- at least one and at most ``n - 1`` when the site has two or more.
    Written by hand because the whole rule is these few lines and scikit-learn is not a
    dependency.

    Returns a table ``subject, site, split`` (``train`` | ``test``) sorted by subject.
    """
    rows = []
    for site, group in table.groupby("site", sort=True):
        subjects = sorted(group["subject"].astype(str))
        n = len(subjects)
        n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        rng = np.random.default_rng([seed, zlib.crc32(str(site).encode())])
        order = rng.permutation(n)
        test = {subjects[i] for i in order[:n_test]}
        rows += [(s, site, "test" if s in test else "train") for s in subjects]
    out = pd.DataFrame(rows, columns=["subject", "site", "split"])
    return out.sort_values("subject", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Templates and the target grid (computed once per process)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mni() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nilearn's MNI152 2009 T1 template and brain mask at 2 mm (bundled, no download)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1 = load_mni152_template(resolution=2)
    mask = load_mni152_brain_mask(resolution=2)
    return (
        np.asarray(t1.get_fdata(), dtype=np.float32),
        np.asarray(mask.get_fdata() > 0, dtype=np.float32),
        t1.affine.astype(np.float64),
    )


def _brain_centre() -> np.ndarray:
    """World coordinates (mm) of the centre of the template brain mask's bounding box."""
    _t1, mask, affine = _mni()
    idx = np.argwhere(mask > 0)
    centre_vox = (idx.min(0) + idx.max(0)) / 2.0
    return (affine @ np.append(centre_vox, 1.0))[:3]


def target_affine(target_spacing: float, n: int) -> np.ndarray:
    """RAS affine of an ``n``-voxel cube at ``target_spacing`` centred on the MNI brain."""
    aff = np.diag([target_spacing, target_spacing, target_spacing, 1.0])
    aff[:3, 3] = _brain_centre() - target_spacing * (n - 1) / 2.0
    return aff


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

    t1, mask, affine = _mni()
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


@functools.lru_cache(maxsize=2)
def _template_static(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """dipy's static image: the template at ``spacing``, cropped to its brain + REG_MARGIN mm.

    The crop keeps the optimiser on the brain and its edges (a third fewer points than the
    whole template box, and a better fit on the demo cohort).
    """
    from monai.transforms import Spacingd

    t1, mask, affine = _mni()
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


# --------------------------------------------------------------------------------------------
# The per-scan pipeline
# --------------------------------------------------------------------------------------------


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


def _sample_pair(before: np.ndarray, after: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """The same random head voxels before and after normalisation.

    Head = above 10 % of the normalised range, which leaves out the background noise.
    """
    idx = np.flatnonzero(after.ravel() > 0.1)
    if idx.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    rng = np.random.default_rng(seed)
    pick = rng.choice(idx, size=min(HIST_SAMPLES, idx.size), replace=False)
    return before.ravel()[pick].astype(np.float32), after.ravel()[pick].astype(np.float32)


def preprocess_scan(
    path: str | Path, cfg: PreprocessConfig, subject: str = "", write_to: str | Path | None = None
) -> ScanResult:
    """Run the whole per-scan pipeline on one NIfTI file (see the module docstring).

    Parameters
    ----------
    path : str or Path
        A 3D T1 NIfTI file (any orientation, voxel size and dtype).
    cfg : PreprocessConfig
        The stage parameters.
    subject : str
        Name used in messages and for the output file.
    write_to : str or Path, optional
        Folder to write ``<subject>.nii.gz`` (float32 in [0, 1]) into.

    Returns
    -------
    ScanResult
        The volume, float32 ``(image_size,) * 3`` in [0, 1], RAS, with its affine, the QC score
        and per-step timings.
    """
    import nibabel as nib
    import torch
    from monai.transforms import (
        EnsureChannelFirstd,
        LoadImaged,
        MaskIntensityd,
        Orientationd,
        Resized,
        ScaleIntensityd,
        ScaleIntensityRangePercentilesd,
        SpatialResample,
    )

    subject = subject or Path(path).name.split(".")[0]
    timings = dict.fromkeys(STEPS, 0.0)
    clock = time.perf_counter()

    def tick(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] += now - clock
        clock = now

    fov = cfg.fov_voxels
    d = LoadImaged(keys="image", reader="NibabelReader", image_only=True)({"image": str(path)})
    d = EnsureChannelFirstd(keys="image", channel_dim="no_channel")(d)
    pixdim = np.sqrt((np.asarray(d["image"].affine)[:3, :3] ** 2).sum(0))
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        raise CohortError(
            f"subject {subject}: voxel size must be > 0 mm; the header of {path} "
            f"says {pixdim.round(4).tolist()}",
            path=path,
        )
    tick("load")
    d = Orientationd(keys="image", axcodes="RAS", labels=_RAS_LABELS)(d)
    tick("reorient")
    d = _resample_step(d, cfg.target_spacing)
    tick("resample")

    note = ""
    if cfg.register != "none":
        img = d["image"]
        try:
            transform = _register(img, cfg)
        except Exception as exc:  # noqa: BLE001 - any optimiser failure becomes a QC failure
            note = f"registration failed: {type(exc).__name__}: {exc}"
            transform = np.eye(4)
        tick("register")
        # The found transform maps template world -> scan world; moving the scan's affine by its
        # inverse puts the scan in template space, and MONAI resamples it onto the MNI cube.
        moved = img.clone()
        moved.affine = torch.as_tensor(
            np.linalg.inv(transform) @ np.asarray(img.affine), dtype=torch.float64
        )
        d["image"] = SpatialResample(mode="bilinear", padding_mode="zeros")(
            moved,
            dst_affine=torch.as_tensor(target_affine(cfg.target_spacing, fov)),
            spatial_size=(fov,) * 3,
        )
    else:
        d = _crop_step(d, fov)
    tick("crop")

    resize = Resized(keys="image", spatial_size=(cfg.image_size,) * 3, mode="area")
    unmasked = None
    if cfg.mask_brain:
        unmasked = resize({"image": d["image"]})["image"]  # QC judges the head, not the mask
        _template, brain = _template_for(cfg.register, cfg.target_spacing, fov)
        d = MaskIntensityd(keys="image", mask_data=brain[None])(d)
    tick("mask")
    d = resize(d)
    tick("resize")
    # QC: NCC with the template put through the same steps, over the whole field of view at
    # the final resolution -- high for a head where the template's is (0.7-0.8 on the demo
    # cohort), near 0 for noise or a scrambled scan, low for a gross misregistration.
    template = _template_final(cfg.register, cfg.target_spacing, fov, cfg.image_size)
    score = ncc(np.asarray((d["image"] if unmasked is None else unmasked)[0]), template)
    if not np.isfinite(score) and not note:
        note = "scan is flat after preprocessing (nothing landed in the field of view)"
    tick("qc")
    before = np.asarray(d["image"][0], dtype=np.float32).copy()
    if float(before.max() - before.min()) <= 0:
        volume = np.zeros_like(before)
    else:
        if cfg.normalise == "percentile":
            lo, hi = cfg.clip_percentiles
            norm = ScaleIntensityRangePercentilesd(
                keys="image", lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True
            )
        else:
            norm = ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)
        d = norm(d)
        volume = np.clip(np.asarray(d["image"][0], dtype=np.float32), 0.0, 1.0)
    affine = np.asarray(d["image"].affine, dtype=np.float64).round(9) + 0.0  # no -0, no 1e-17
    b, a = _sample_pair(before, volume, zlib.crc32(f"{cfg.seed}:{subject}".encode()))
    tick("normalise")
    if write_to is not None:
        out = Path(write_to) / f"{subject}.nii.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(volume, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, out)
    tick("write")
    return ScanResult(subject, volume, affine, score, note, timings, b, a)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _work(args: tuple[str, str, dict[str, Any], str]) -> ScanResult | tuple[str, str]:
    path, subject, cfg_dict, out = args
    try:
        res = preprocess_scan(path, PreprocessConfig(**cfg_dict), subject, out)
    except NeurodiffError as exc:  # reported by the parent, naming the subject
        return subject, str(exc)
    # the volume is on disk; the parent reads it back when it assembles the arrays, so memory
    # stays at one volume per process however large the cohort
    return dataclasses.replace(res, volume=np.zeros(0, np.float32))


def _default_workers(n: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, n, 8))


def _warm_up(cfg: PreprocessConfig) -> None:
    """Import the libraries and build the template grids once, before workers fork from us."""
    import dipy.align.imaffine  # noqa: F401
    import monai.transforms  # noqa: F401

    if cfg.register != "none":
        _template_static(REG_SPACING)
    _template_final(cfg.register, cfg.target_spacing, cfg.fov_voxels, cfg.image_size)


def _map_scans(jobs: list[tuple], workers: int, cfg: PreprocessConfig):
    """Yield per-scan results in completion order, in worker processes when workers > 1."""
    from tqdm.auto import tqdm

    _warm_up(cfg)
    bar = tqdm(total=len(jobs), desc="preprocess", unit="scan", file=sys.stderr)
    if workers <= 1:
        for job in jobs:
            yield _work(job)
            bar.update()
    else:
        # fork (Linux) shares the already imported MONAI/dipy with the workers; elsewhere spawn.
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
        )
        try:
            for fut in concurrent.futures.as_completed([pool.submit(_work, j) for j in jobs]):
                yield fut.result()
                bar.update()
        finally:  # on an error or interrupt, drop the scans not started yet
            pool.shutdown(wait=True, cancel_futures=True)
    bar.close()


# --------------------------------------------------------------------------------------------
# Sources and the cache
# --------------------------------------------------------------------------------------------


def _source_files(root: Path, table: Path | None) -> dict[str, Path]:
    """Files whose change invalidates the cache: the cohort's scans and tables, and the table."""
    files: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.name.lower().endswith(_SOURCE_SUFFIXES):
            files[rel.as_posix()] = p
    if table is not None and table.resolve() not in {p.resolve() for p in files.values()}:
        files[str(table.resolve())] = table
    return files


def _stat(p: Path) -> dict[str, int]:
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cache_valid(out_dir: Path, key: str, files: dict[str, Path]) -> dict | None:
    """The manifest if ``out_dir`` holds a complete build for ``key`` and unchanged sources."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or manifest.get("params_hash") != key:
        return None
    sources = manifest.get("sources", {})
    if set(sources) != set(files):
        return None
    for rel, p in files.items():
        rec, now = sources[rel], _stat(p)
        if rec["size"] != now["size"]:
            return None
        if rec["mtime_ns"] != now["mtime_ns"] and rec["sha256"] != file_sha256(p):
            return None
    for rel, size in manifest.get("outputs", {}).items():
        f = out_dir / rel
        if not f.is_file() or f.stat().st_size != size:
            return None
    return manifest


def _result_from_manifest(
    out_dir: Path, manifest: dict, cached: bool, seconds: float
) -> PreprocessResult:
    n = manifest["n"]
    return PreprocessResult(
        out_dir=out_dir,
        cached=cached,
        spatial_dims=manifest["params"]["spatial_dims"],
        shape=tuple(manifest["shapes"]["train"][1:]),
        n_subjects=n["subjects"],
        n_train_subjects=n["train_subjects"],
        n_test_subjects=n["test_subjects"],
        n_train=n["train_images"],
        n_test=n["test_images"],
        excluded=list(manifest["qc"]["excluded"]),
        flagged=list(manifest["qc"]["flagged"]),
        seconds=seconds,
        build_seconds=manifest["timing"]["wall_seconds"],
        params_hash=manifest["params_hash"],
    )


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def check_params(params: Params) -> PreprocessConfig:
    """Every check that needs no data, so mistakes surface before any work starts."""
    cfg: PreprocessConfig = params.stage(PreprocessConfig)
    params.stage(ModelConfig)  # validated: image_size vs the UNet's downsampling factor
    root = params.path(cfg.cohort)
    if not root.is_dir():
        raise ConfigError(
            f"parameter 'cohort' must be a folder of scans; {str(root)!r} "
            + ("is not a folder" if root.exists() else "does not exist")
            + " (`neurodiff demo-data --out data/raw/demo` writes the demo cohort)",
            parameter="cohort",
            path=root,
        )
    if cfg.cohort_table and not params.path(cfg.cohort_table).is_file():
        raise ConfigError(
            f"parameter 'cohort_table': {cfg.cohort_table!r} is not a file",
            parameter="cohort_table",
            path=params.path(cfg.cohort_table),
        )
    return cfg


def run(params: Params, *, workers: int | None = None, force: bool = False) -> PreprocessResult:
    """Build (or reuse) the preprocessed dataset of ``params``.

    Parameters
    ----------
    params : Params
        The run's parameters (the :class:`~neurodiff.config.PreprocessConfig` fields matter).
    workers : int, optional
        Worker processes (default: the available CPUs, at most 8 and at most one per scan).
    force : bool
        Rebuild even when the cache is valid.

    Returns
    -------
    PreprocessResult
        Counts, shapes, QC exclusions, and whether the cache was reused.

    Raises
    ------
    ConfigError
        The cohort folder or table is missing. (Parameters that cannot work -- an unreachable
        ``image_size``, a slice range, ``mask_brain`` without registration, an ``image_size`` the
        UNet cannot halve -- are refused when ``params`` is built.)
    CohortError
        A scan cannot be read (see :func:`neurodiff.data.load_cohort`).
    DataError
        Too few subjects left for a split, or a registration failed with ``qc_exclude`` off.
    """
    start = time.perf_counter()
    cfg = check_params(params)
    root = params.path(cfg.cohort)
    out_dir = params.stage_dir("preprocessed")
    key = cache_key(cfg)
    table_path = params.path(cfg.cohort_table) if cfg.cohort_table else None
    files = _source_files(root, table_path)
    if not force:
        manifest = _cache_valid(out_dir, key, files)
        if manifest is not None:
            log.info("preprocessed data in %s are up to date (parameters hash %s)", out_dir, key)
            return _result_from_manifest(out_dir, manifest, True, time.perf_counter() - start)

    from .data import load_cohort

    cohort = load_cohort(root, table=table_path, skip_bad=cfg.skip_bad)
    if len(cohort) == 0:
        raise DataError(f"no usable scans in {root}", path=root)
    cohort = cohort.sort_values("subject", kind="stable").reset_index(drop=True)
    cohort["subject"] = cohort["subject"].astype(str)
    cohort["site"] = cohort["site"].astype(str)
    sources = {rel: {**_stat(p), "sha256": file_sha256(p)} for rel, p in files.items()}
    workers = _default_workers(len(cohort)) if workers is None else max(1, int(workers))
    log.info(
        "preprocessing %d scans from %s with %d worker(s): register=%s, %dD at %d, spacing %g mm",
        len(cohort),
        root,
        workers,
        cfg.register,
        cfg.spatial_dims,
        cfg.image_size,
        cfg.target_spacing,
    )

    with atomic_dir(out_dir) as tmp:
        vol_dir = tmp / "volumes"
        jobs = [(str(r.path), r.subject, cfg.to_dict(), str(vol_dir)) for r in cohort.itertuples()]
        results: dict[str, ScanResult] = {}
        errors: list[tuple[str, str]] = []
        for res in _map_scans(jobs, workers, cfg):
            if isinstance(res, ScanResult):
                results[res.subject] = res
            else:
                errors.append(res)
        if errors:
            problems = [(Path(cohort.set_index("subject").loc[s, "path"]), m) for s, m in errors]
            raise CohortError(
                f"{len(errors)} scan(s) could not be preprocessed: "
                + "; ".join(m for _s, m in errors),
                problems=problems,
            )

        qc = _qc_table(cohort, results, cfg)
        failed = qc[qc["note"].str.startswith("registration failed")]
        if len(failed) and not cfg.qc_exclude:
            raise DataError(
                "registration failed for "
                + "; ".join(f"subject {r.subject} ({r.note})" for r in failed.itertuples())
                + ". Set qc_exclude=true to leave such subjects out.",
                path=root,
            )
        excluded = qc.loc[qc["excluded"], "subject"].tolist()
        flagged = qc.loc[qc["flagged"], "subject"].tolist()
        if flagged:
            log.warning(
                "QC flagged %d subject(s) with NCC < %g: %s%s",
                len(flagged),
                cfg.qc_threshold,
                ", ".join(flagged),
                " (excluded)" if cfg.qc_exclude else " (kept: qc_exclude is off)",
            )
        kept = cohort[~cohort["subject"].isin(excluded)]
        split = split_subjects(kept[["subject", "site"]], cfg.test_fraction, cfg.seed)
        n_train = int((split["split"] == "train").sum())
        n_test = int((split["split"] == "test").sum())
        if n_train < 1 or n_test < 1:
            raise DataError(
                f"a train/test split needs at least 2 subjects; {len(kept)} left "
                f"of {len(cohort)} after QC (excluded: {excluded or 'none'}). "
                "Add scans, or check qc_threshold and register.",
                path=root,
            )
        if excluded:
            split = pd.concat(
                [
                    split,
                    cohort.loc[cohort["subject"].isin(excluded), ["subject", "site"]].assign(
                        split="excluded"
                    ),
                ]
            )
            split = split.sort_values("subject", kind="stable").reset_index(drop=True)

        arrays = _write_arrays(tmp, split, cfg)
        _write_tsv(tmp / "split.tsv", split)
        _write_tsv(tmp / "qc.tsv", qc)
        table = cohort.copy()
        table["path"] = [str(Path(p).resolve()) for p in table["path"]]
        _write_tsv(tmp / "cohort.tsv", table)
        subjects = sorted(results)
        np.savez_compressed(
            tmp / "histograms.npz",
            subject=np.array(subjects),
            site=np.array([cohort.set_index("subject").loc[s, "site"] for s in subjects]),
            before=_stack([results[s].before for s in subjects]),
            after=_stack([results[s].after for s in subjects]),
        )

        wall = time.perf_counter() - start
        step_total = {s: float(sum(r.timings[s] for r in results.values())) for s in STEPS}
        fov = cfg.fov_voxels
        model = params.stage(ModelConfig)
        manifest = {
            "format": FORMAT,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "params": cfg.to_dict(),
            "params_hash": key,
            "pipeline": {
                "steps": list(STEPS),
                "registration": {
                    "library": "dipy.align.imaffine",
                    "template": "MNI152 2009 (nilearn, 2 mm)",
                    "metric": "mutual information",
                    "spacing_mm": REG_SPACING,
                    "level_iters": REG_LEVEL_ITERS,
                    "sigmas": REG_SIGMAS,
                    "factors": REG_FACTORS,
                },
                "qc": "NCC with the template put through the same steps, whole field of view, "
                "at image_size",
            },
            "target": {
                "space": "MNI152 2009 (rigid)"
                if cfg.register == "rigid"
                else "MNI152 2009 (affine)"
                if cfg.register == "affine"
                else "scanner (RAS, head centred; affine per volume)",
                "spacing_mm": cfg.target_spacing,
                "fov_mm": cfg.fov_mm,
                "fov_voxels": fov,
                "fov_affine": (
                    target_affine(cfg.target_spacing, fov).tolist()
                    if cfg.register != "none"
                    else None
                ),
                "volume_shape": [cfg.image_size] * 3,
                "volume_spacing_mm": cfg.target_spacing * fov / cfg.image_size,
                "volume_affine": (
                    next(iter(results.values())).affine.tolist() if cfg.register != "none" else None
                ),
                "slices": cfg.slice_indices() if cfg.spatial_dims == 2 else None,
            },
            "downsampling": {
                "fov_voxels": fov,
                "image_size": cfg.image_size,
                "resize_factor": fov / cfg.image_size,
                "upsampling": False,
                "unet_downsample_factor": model.downsample_factor,
                "divisible": cfg.image_size % model.downsample_factor == 0,
            },
            "sources": sources,
            "cohort": {
                "path": str(root),
                "n_scans": len(cohort),
                "skipped": [[str(p), m] for p, m in cohort.attrs.get("skipped", [])],
            },
            "n": {
                "subjects": len(cohort),
                "train_subjects": n_train,
                "test_subjects": n_test,
                "train_images": arrays["train"]["shape"][0],
                "test_images": arrays["test"]["shape"][0],
                "excluded": len(excluded),
            },
            "shapes": {k: v["shape"] for k, v in arrays.items()},
            "ranges": {k: v["range"] for k, v in arrays.items()},
            "qc": {
                "threshold": cfg.qc_threshold,
                "exclude": cfg.qc_exclude,
                "flagged": flagged,
                "excluded": excluded,
                "notes": {r.subject: r.note for r in qc.itertuples() if r.note},
            },
            "timing": {
                "wall_seconds": wall,
                "workers": workers,
                "step_seconds": step_total,
                "seconds_per_subject": {s: t / len(results) for s, t in step_total.items()},
            },
        }
        manifest["outputs"] = {
            p.relative_to(tmp).as_posix(): p.stat().st_size
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        atomic_write_json(tmp / "manifest.json", manifest)  # last: marks the folder complete
    log.info("preprocessed data written to %s in %.1f s", out_dir, wall)
    return _result_from_manifest(out_dir, manifest, False, time.perf_counter() - start)


def _stack(samples: list[np.ndarray]) -> np.ndarray:
    """Ragged 1D samples -> ``(n, HIST_SAMPLES)`` float32 padded with NaN."""
    out = np.full((len(samples), HIST_SAMPLES), np.nan, dtype=np.float32)
    for i, s in enumerate(samples):
        out[i, : s.size] = s
    return out


def _qc_table(
    cohort: pd.DataFrame, results: dict[str, ScanResult], cfg: PreprocessConfig
) -> pd.DataFrame:
    rows = []
    for r in cohort.itertuples():
        res = results[r.subject]
        # a note means the registration failed or nothing landed in the field of view
        flagged = bool(res.note) or not (np.isfinite(res.ncc) and res.ncc >= cfg.qc_threshold)
        rows.append(
            (
                r.subject,
                r.site,
                round(res.ncc, 4) if np.isfinite(res.ncc) else np.nan,
                flagged,
                flagged and cfg.qc_exclude,
                res.note,
            )
        )
    return pd.DataFrame(rows, columns=["subject", "site", "ncc", "flagged", "excluded", "note"])


def _write_tsv(path: Path, table: pd.DataFrame) -> None:
    table.to_csv(path, sep="\t", index=False)


def _write_arrays(tmp: Path, split: pd.DataFrame, cfg: PreprocessConfig) -> dict[str, dict]:
    """``<split>.npy`` float32 (N, 1, *spatial) in [-1, 1] and ``<split>_index.tsv``.

    Volumes are read back one at a time from ``volumes/`` into a memory-mapped ``.npy``.
    """
    import nibabel as nib

    info = {}
    slices = cfg.slice_indices() if cfg.spatial_dims == 2 else [-1]
    spatial = (cfg.image_size,) * cfg.spatial_dims
    for name in ("train", "test"):
        part = split[split["split"] == name]
        rows = [(r.subject, r.site, k) for r in part.itertuples() for k in slices]
        arr = np.lib.format.open_memmap(
            tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(rows), 1, *spatial)
        )
        lo, hi = np.inf, -np.inf
        for i, r in enumerate(part.itertuples()):
            vol = np.asarray(
                nib.load(tmp / "volumes" / f"{r.subject}.nii.gz").dataobj, dtype=np.float32
            )
            for j, k in enumerate(slices):
                img = (vol if k < 0 else vol[:, :, k]) * 2.0 - 1.0
                arr[i * len(slices) + j, 0] = img
                lo, hi = min(lo, float(img.min())), max(hi, float(img.max()))
        arr.flush()
        del arr
        _write_tsv(
            tmp / f"{name}_index.tsv",
            pd.DataFrame(
                [(i, *r) for i, r in enumerate(rows)], columns=["row", "subject", "site", "slice"]
            ),
        )
        info[name] = {"shape": [len(rows), 1, *spatial], "range": [lo, hi] if rows else None}
    return info


# --------------------------------------------------------------------------------------------
# Readers for later stages
# --------------------------------------------------------------------------------------------


def _missing(folder: Path, what: str, params_or_dir: Any) -> DataError:
    profile = (
        params_or_dir.profile
        if isinstance(params_or_dir, Params)
        else folder.parent.name or "<profile>"
    )
    return DataError(
        f"no complete preprocessed data in {folder} ({what}); run "
        f"`neurodiff preprocess --profile {profile}` first",
        path=folder,
    )


def load_manifest(params_or_dir: Params | str | Path) -> dict:
    """The manifest of a preprocessed folder (``Params`` or a path); DataError if incomplete.

    Given ``Params``, the manifest must also match their preprocessing parameters.
    """
    folder = stage_folder(params_or_dir)
    path = folder / "manifest.json"
    if not path.is_file():
        raise _missing(folder, "manifest.json is missing", params_or_dir)
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc}); run `neurodiff preprocess` again", path=path
        ) from None
    if manifest.get("format") != FORMAT:
        raise _missing(
            folder, f"format {manifest.get('format')!r}, expected {FORMAT!r}", params_or_dir
        )
    if isinstance(params_or_dir, Params):
        cfg = params_or_dir.stage(PreprocessConfig)
        if manifest.get("params_hash") != cache_key(cfg):
            stored = manifest.get("params", {})
            diff = [
                f"{k}={stored.get(k)!r} (now {v!r})"
                for k, v in cfg.to_dict().items()
                if k not in _LOCATION_PARAMS and stored.get(k) != v
            ]
            raise DataError(
                f"the preprocessed data in {folder} were built with other "
                f"parameters: {', '.join(diff) or 'an older pipeline'}; run "
                f"`neurodiff preprocess --profile {cfg.profile}` with the same "
                "parameters first",
                path=folder,
            )
    return manifest


def load_split(
    params_or_dir: Params | str | Path, split: str = "train", mmap: bool = False
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

    Returns
    -------
    images : np.ndarray
        float32 ``(N, 1, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D), in [-1, 1].
    index : pandas.DataFrame
        One row per image: ``row, subject, site, slice`` (``slice`` = -1 for volumes).
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test'; got {split!r}", parameter="split")
    folder = stage_folder(params_or_dir)
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
    index = pd.read_csv(idx_path, sep="\t", dtype={"subject": str, "site": str})
    expected = manifest["shapes"][split]
    if list(images.shape) != expected or images.dtype != np.float32 or len(index) != len(images):
        raise DataError(
            f"{arr_path} holds {images.dtype} {list(images.shape)} with "
            f"{len(index)} index rows; the manifest expects float32 {expected}; "
            "run `neurodiff preprocess` again",
            path=arr_path,
        )
    return images, index


def load_split_table(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``split.tsv``: subject, site, split (``train`` | ``test`` | ``excluded``)."""
    folder = stage_folder(params_or_dir)
    load_manifest(params_or_dir)
    return pd.read_csv(folder / "split.tsv", sep="\t", dtype={"subject": str, "site": str})


def load_qc(params_or_dir: Params | str | Path) -> pd.DataFrame:
    """``qc.tsv``: subject, site, ncc, flagged, excluded, note."""
    folder = stage_folder(params_or_dir)
    load_manifest(params_or_dir)
    qc = pd.read_csv(folder / "qc.tsv", sep="\t", dtype={"subject": str, "site": str})
    qc["note"] = ["" if pd.isna(v) else str(v) for v in qc["note"]]
    return qc


def training_dataset(
    params_or_dir: Params | str | Path, split: str = "train", cache_rate: float = 1.0
) -> CacheDataset:
    """A MONAI ``CacheDataset`` of ``{"image": tensor (1, *spatial) float32 in [-1, 1]}``.

    Deterministic: the items come in the order of ``<split>_index.tsv``; shuffling is the
    ``DataLoader``'s job (give it a seeded ``torch.Generator``).
    """
    import torch
    from monai.data import CacheDataset
    from monai.transforms import EnsureTyped

    images, _index = load_split(params_or_dir, split)
    data = [{"image": images[i]} for i in range(len(images))]
    transform = EnsureTyped(keys="image", data_type="tensor", dtype=torch.float32, track_meta=False)
    return CacheDataset(data=data, transform=transform, cache_rate=cache_rate, progress=False)
