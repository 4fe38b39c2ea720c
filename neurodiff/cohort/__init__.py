"""The input cohort: finding, checking and loading the T1 scans of a multi-site cohort.

Lower floor: every stage that reads raw scans (exploration, preprocessing) goes through
:func:`load_cohort` and :func:`check_scan`; :func:`fetch_ixi` downloads the public IXI cohort.
"""

from .fetch import IXI_T1_MD5, fetch_ixi
from .load import detect_layout, load_cohort
from .scans import IXI_PATTERN, MIN_SIDE, check_scan

__all__ = [
    "IXI_PATTERN",
    "IXI_T1_MD5",
    "MIN_SIDE",
    "check_scan",
    "detect_layout",
    "fetch_ixi",
    "load_cohort",
]
