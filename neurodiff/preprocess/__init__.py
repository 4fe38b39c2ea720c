"""Stage 2: from raw multi-site T1 scans to a model-ready, cached, split dataset.

Modules: :mod:`.pipeline` (one scan), :mod:`.strip` (skull stripping), :mod:`.intensities`
(normalisation, QC scores), :mod:`.workers` (a cohort, in processes), :mod:`.split`
(QC and the train/test split), :mod:`.cache` (key and validity), :mod:`.stage` (:func:`run`),
:mod:`.report` (tables and figure inputs for notebook 02). The outputs are read back through
:mod:`neurodiff.artifacts`.

Every scan goes through the same chain of MONAI dictionary transforms (``"image"`` and, once
stripped, ``"brain"``):

1. ``LoadImaged`` + ``EnsureChannelFirstd`` -- read the NIfTI (any dtype, any storage order);
2. ``Orientationd("RAS")`` -- one axis convention for every site (an LPS-stored scan and its RAS
   twin give the same array from here on);
3. a Gaussian anti-aliasing filter where the scan is finer than the target, then
   ``Spacingd(target_spacing)`` -- isotropic voxels;
4. **skull stripping** (``skull_strip = auto | on | off``, :mod:`.strip`): deepbet's brain mask
   on the resampled scan; ``auto`` strips only scans with a skull;
5. **registration** (``register = rigid | affine``) of the (stripped) brain to the MNI152 2009
   template shipped with nilearn, started from the centres of mass (rigid, then affine), then
   ``SpatialResample`` of the scan and its mask onto a cube of ``fov_mm`` centred on the
   template's brain; **or** (``register = none``, the paper's code) ``CropForegroundd`` to the
   head and ``ResizeWithPadOrCropd`` to the same cube around it;
6. ``MaskIntensityd`` with the template brain mask (``mask_brain``; needs a registration);
7. ``Resized(image_size, mode="area")`` -- area averaging, so shrinking the cube does not alias;
8. intensities to [0, 1] with bounds taken inside the brain mask when there is one
   (:mod:`.intensities`): the ``clip_percentiles`` (``normalise = percentile``) or the minimum
   and maximum (``minmax``, the paper's code, which uses the whole image);
9. 3D: the volume is one sample; 2D: ``slices_per_subject`` axial slices from ``slice_range``.

Why dipy for registration and not ANTsPy: ``dipy.align.imaffine`` is a pure ``pip`` wheel for
every platform (ANTsPy ships large platform wheels that lag behind new Python versions), works
offline, is actively maintained, and its multi-resolution mutual-information optimiser registers a
4 mm copy of a scan rigidly in one to two seconds on one core -- fast enough to run at every
preprocessing. Registration is estimated at :data:`REG_SPACING` and applied once, at the target
spacing, by MONAI.

Quality control (:func:`.split.qc_table`): the normalised cross-correlation (NCC) between each
preprocessed scan (before intensity normalisation) and the template put through the same steps,
inside the template's brain at ``image_size`` (over the whole field of view without
registration), judged against ``qc_threshold`` and against the cohort's own median (a robust z
under ``-qc_outlier_z``); and the Dice overlap of the scan's brain mask with the template's,
against ``qc_min_overlap``. A flagged scan has every reason in ``qc.tsv``; with ``qc_exclude`` it
is left out of the split and listed in ``qc.tsv``, ``split.tsv``, the manifest and the result --
never silently. A registration that fails outright is an error naming the subject unless
``qc_exclude`` is on; a stripping that finds no brain is a QC flag.

Outputs (:func:`neurodiff.artifacts.preprocessed_dir`, written into a temporary folder and renamed
into place, the manifest last): ``manifest.json``, ``split.tsv``, ``qc.tsv``, ``cohort.tsv``,
``train.npy`` / ``test.npy`` float32 ``(N, 1, *spatial)`` in [-1, 1] with ``train_index.tsv`` /
``test_index.tsv``, ``volumes/<subject>.nii.gz`` (float32 in [0, 1]), ``masks/<subject>.nii.gz``
(the brain mask on the same grid, uint8, when stripping is on) and ``histograms.npz``
(intensity samples before and after normalisation, for the figures). The same parameters and the
same source files reuse the cache; anything else rebuilds it.
"""

from ..artifacts import (
    PREPROCESSED_FORMAT,
    load_manifest,
    load_qc,
    load_split,
    load_split_table,
    preprocessed_dir,
)
from ..templates import target_affine
from .cache import cache_key
from .pipeline import REG_SPACING, STEPS, ScanResult, ncc, preprocess_scan
from .report import (
    before_after_examples,
    example_subjects,
    qc_overlays,
    split_summary,
    strip_benchmark,
    strip_examples,
    summary_table,
    timing_table,
)
from .split import split_subjects
from .stage import PreprocessResult, check_params, run, training_dataset

__all__ = [
    "PREPROCESSED_FORMAT",
    "REG_SPACING",
    "STEPS",
    "PreprocessResult",
    "ScanResult",
    "before_after_examples",
    "cache_key",
    "check_params",
    "example_subjects",
    "load_manifest",
    "load_qc",
    "load_split",
    "load_split_table",
    "ncc",
    "preprocess_scan",
    "preprocessed_dir",
    "qc_overlays",
    "run",
    "split_subjects",
    "split_summary",
    "strip_benchmark",
    "strip_examples",
    "summary_table",
    "target_affine",
    "timing_table",
    "training_dataset",
]
