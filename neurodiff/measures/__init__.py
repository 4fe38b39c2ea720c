"""The measures: metric families, bootstrap, interval rules, real-vs-real redraws, calibration.

The middle floor under the stages (as MONAI's ``monai.metrics`` under its applications, or
scikit-learn's ``metrics`` under ``model_selection``): pure functions over arrays, importing
nothing above the package's lower floors. The metrics stage (chapter 5, :mod:`neurodiff.metrics`),
the sampler table (chapter 4) and the augmentation experiment (chapter 6) all use them.

One module per family: :mod:`.mmd`, :mod:`.frechet` (FID), :mod:`.kid` (KID),
:mod:`.similarity` (SSIM, MS-SSIM), :mod:`.manifold` (PRDC), :mod:`.memorisation`,
:mod:`.plausibility` (tissue fractions at matched levels, group difference maps); under them
:mod:`.checks` (input checks, distance and Gram matrices) and :mod:`.bootstrap`;
:mod:`.intervals` (every interval rule); :mod:`.redraws` (the real-vs-real range, stratified as
the split), :mod:`.layout_test` (the synthetic-vs-real MMD test calibrated on redraws) and
:mod:`.calibration` (the ladder of degraded real images).

A metric value for synthetic data means something only beside the same value for two *real*
samples of the same size, with an uncertainty, and with the feature space named. Every metric
here is therefore reported as

* ``value`` -- real (the held-out **test** split) vs synthetic, with a bootstrap 95 % CI;
* ``baseline`` -- real vs real: the same test samples vs an equally large subset of the
  **training** split (different subjects), with its own CI;
* ``extractor`` -- the feature space (``pixels`` for image-space metrics).

All functions take ``(real, synthetic)`` in that order; images are ``(N, 1, *spatial)`` float
arrays in [0, 1], features ``(N, F)``.

Metrics
-------
``mmd_linear``
    MONAI :class:`~monai.metrics.MMDMetric` on the images themselves: the unbiased MMD^2 estimate
    with a linear kernel (Gretton et al. 2012, eq. 3), i.e. the squared distance between the mean
    images minus a finite-sample correction. The most likely reading of the paper's "MMD = 0.036".
    Pitfalls: it only compares mean images (two sets with the same mean but different variety
    score 0); it grows with the number of voxels, so values at different image sizes are not
    comparable; being unbiased, it is **negative** when the sets are closer than chance.
``mmd_rbf``
    MMD^2 (unbiased) on features with a Gaussian kernel, bandwidth by the median heuristic
    (sigma = median pairwise distance of the pooled sample). Sees every moment, not only the
    mean. Its synthetic-vs-real p-value comes from :func:`calibrated_mmd_test` (real subjects'
    slices against single synthetic images are not exchangeable, so no permutation test fits
    that layout); two groups of real subjects are compared by permuting subjects.
``fid``
    Frechet distance between Gaussians fitted to the features (MONAI
    :class:`~monai.metrics.FIDMetric`). Biased upward at small n and scaled by the extractor --
    only the comparison with the baseline at equal n carries meaning.
``kid``
    Kernel (Inception-style) distance: the unbiased MMD^2 with a cubic polynomial kernel on the
    same features (torchmetrics' ``poly_mmd``). Unbiased at any n, so its reading does not rest
    on a small-sample bias that differs from one generator to another, as FID's does.
``ms_ssim_diversity``
    Mean MS-SSIM (MONAI :class:`~monai.metrics.MultiScaleSSIMMetric`) over random pairs *within*
    the synthetic set; the baseline is the same within the real training subset. Lower = more
    diverse; a value far above the baseline means mode collapse, far below means noise.
    Kernel size and number of scales follow the image size: see :func:`ms_ssim_settings`.
``precision``, ``recall``, ``density``, ``coverage``
    k-NN manifold metrics (Kynkaanniemi et al. 2019; Naeem et al. 2020) from the ``prdc``
    package: fidelity (precision, density: are synthetic samples inside the real manifold?) and
    diversity (recall, coverage: is the real manifold covered?).
``memorised_fraction``, ``nn_distance``, ``nn_ssim``
    Memorisation audit (:func:`memorisation_audit`): each synthetic sample's nearest *training*
    sample in feature space; the fraction of synthetic samples closer to a training sample than
    99 % of real test samples are; the median nearest distance; the mean SSIM to the nearest
    training sample. Baselines come from the test samples' own nearest training samples.
``csf_fraction_gap``, ``gm_fraction_gap``, ``wm_fraction_gap``
    Anatomical plausibility (:mod:`.plausibility`): each image's share of brain voxels
    classified CSF, grey or white matter by one Gaussian mixture fitted on the training images;
    the mean over the synthetic images of the absolute difference between their level's mean
    fraction and the real one at that level (levels matched through the nearest training slice).
    The group difference map (mean patient minus mean control image, real vs synthetic) is
    measured in the per-group view (:mod:`neurodiff.metrics.anatomy`).

Uncertainty
-----------
(the interval rules themselves: :mod:`.intervals`)
Bootstrap with ``n_bootstrap`` resamples, on cached features and kernel matrices (never by
re-extracting). Each set is resampled with replacement, independently: real images by subject
(subjects drawn with replacement, their slices kept; :func:`resample_indices`), synthetic images
one by one (each is its own draw; the intervals are conditional on the one trained generator).
MMD, KID and FID replicates
are computed from the pooled Gram matrices (duplicated samples are excluded from the within-set
U-statistic pairs, which would otherwise bias MMD upward). Metrics that are means over samples or
pairs (precision, density / recall, coverage / MS-SSIM / audit) resample their per-sample scores
with the k-NN manifolds held fixed, so their CIs are conditional on the manifolds.

Resampling with replacement leaves ~63 % unique samples, which shifts sample-size-biased
statistics such as FID upward (at n = 64 the bootstrap distribution can lie entirely above the
estimate). The reported 95 % CI is therefore the 2.5-97.5 % spread of the bootstrap distribution
around its median, placed on the point estimate: ``[v + q2.5 - q50, v + q97.5 - q50]``, clipped
to the metric's range. It describes the sampling variability at the given n; it does not remove
the estimator's own small-sample bias, which the baseline at equal n shares.
"""

from .bootstrap import chunks, resample_indices, resampled_means, subset
from .calibration import LADDER, LADDER_METRICS, calibration_ladder, degrade, place_on_ladder
from .checks import check_features, check_images, check_pair, gram, sq_dists, subject_labels
from .frechet import fid, fid_replicates
from .intervals import LEVEL, RANGE_LEVEL, percentile_ci, percentile_interval, real_range
from .kid import kid, poly_kernel
from .layout_test import LayoutTest, calibrated_mmd_test
from .manifold import prdc_from_distances, prdc_metrics, prdc_per_sample
from .memorisation import (
    AUDIT_QUANTILE,
    MemorisationAudit,
    audit_fraction_replicates,
    memorisation_audit,
)
from .mmd import MMDTest, median_bandwidth, mmd2_replicates, mmd_linear, mmd_rbf, per_site_mmd
from .plausibility import (
    BRAIN_THRESHOLD,
    TISSUES,
    TissueModel,
    brain_mask,
    difference_of_means,
    fit_tissue_model,
    group_difference,
    level_gap,
    level_gap_replicates,
    map_correlation,
    nearest_levels,
    roi_mean,
)
from .redraws import (
    first_counts,
    n_partitions,
    redraw_baselines,
    redraw_indices,
    redraw_metrics,
    redraw_singles,
    strata_of,
)
from .similarity import diversity, ms_ssim, ms_ssim_settings, ssim

__all__ = [
    "AUDIT_QUANTILE",
    "BRAIN_THRESHOLD",
    "LADDER",
    "LADDER_METRICS",
    "LEVEL",
    "LayoutTest",
    "MMDTest",
    "MemorisationAudit",
    "RANGE_LEVEL",
    "TISSUES",
    "TissueModel",
    "audit_fraction_replicates",
    "brain_mask",
    "calibrated_mmd_test",
    "calibration_ladder",
    "check_features",
    "check_images",
    "check_pair",
    "chunks",
    "degrade",
    "difference_of_means",
    "diversity",
    "fid",
    "fid_replicates",
    "first_counts",
    "fit_tissue_model",
    "gram",
    "group_difference",
    "kid",
    "level_gap",
    "level_gap_replicates",
    "sq_dists",
    "map_correlation",
    "median_bandwidth",
    "memorisation_audit",
    "mmd2_replicates",
    "mmd_linear",
    "mmd_rbf",
    "ms_ssim",
    "ms_ssim_settings",
    "n_partitions",
    "nearest_levels",
    "per_site_mmd",
    "percentile_ci",
    "percentile_interval",
    "place_on_ladder",
    "poly_kernel",
    "prdc_from_distances",
    "prdc_metrics",
    "prdc_per_sample",
    "real_range",
    "redraw_baselines",
    "redraw_indices",
    "redraw_metrics",
    "redraw_singles",
    "resample_indices",
    "resampled_means",
    "roi_mean",
    "ssim",
    "strata_of",
    "subject_labels",
    "subset",
]
