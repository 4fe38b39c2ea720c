"""The input cohort: finding, checking and loading the T1 scans of a multi-site cohort.

Lower floor: every stage that reads raw scans (exploration, preprocessing) goes through
:func:`load_cohort` and :func:`check_scan`; :func:`fetch_ixi` downloads the public IXI cohort;
:func:`read_groups` and :func:`conditioning_groups` say which groups a generator is conditioned
on (none on a healthy-only cohort).
"""

from .fetch import IXI_T1_MD5, fetch_ixi
from .groups import CohortGroups, conditioning_groups, read_groups
from .load import detect_layout, load_cohort
from .scans import IXI_PATTERN, MIN_SIDE, check_scan

__all__ = [
    "IXI_PATTERN",
    "CohortGroups",
    "IXI_T1_MD5",
    "MIN_SIDE",
    "check_scan",
    "conditioning_groups",
    "detect_layout",
    "fetch_ixi",
    "load_cohort",
    "read_groups",
]
