"""A SIMULATED multi-site T1 cohort, written as BIDS, for running the study without real data.

Nothing here is real patient data. Every volume is built from the MNI ICBM152 2009a nonlinear
symmetric templates that ship inside the nilearn wheel (T1, grey-matter and white-matter
probability maps, brain mask; Fonov et al. 2009, 2011), so no download is needed.

How a volume is made
--------------------
Template space (once per cohort)
    The template T1 is remapped, piecewise-linearly through its CSF, grey- and white-matter
    levels, to each site's tissue contrast. A simple head is grown around the brain mask from a
    distance map: a CSF rim, the skull (dark, with a brighter marrow layer) and the scalp (bright,
    like fat on T1), each site with its own skull and scalp thickness (5-8 and 4-8 mm) and
    contrast. Below the skull base a neck carries on: an elliptical column of muscle-like signal
    (~12 cm across, its own contrast per site, about half of white matter) with a skin rim as
    thick as the scalp, blended into the head above and around the spinal canal. Below the
    template's lower edge (z = -72 mm) the lowest slice is repeated, so the neck reaches the edge
    of every field of view, as in a whole-head T1 acquisition. There is no face, ear or jaw.

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

from .cohort import make_demo_cohort
from .pools import POOLS, make_pools_cohort
from .protocols import BVFTD_REGIONS, SITE_PROTOCOLS, SiteProtocol, site_protocols

__all__ = [
    "BVFTD_REGIONS",
    "POOLS",
    "SITE_PROTOCOLS",
    "SiteProtocol",
    "make_demo_cohort",
    "make_pools_cohort",
    "site_protocols",
]
