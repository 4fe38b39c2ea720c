"""Training-time augmentation that keeps anatomy (parameter ``train_augment``).

``mild``: each training image, independently, is deformed by a smooth random displacement field
of about a voxel, rotated by up to 3 degrees about each axis and scaled by up to 3 %, then given a
contrast gamma in [0.9, 1.1] that keeps its minimum and maximum (the background stays at -1).
Small enough that the images stay brains of the same anatomy; large enough that a small generator
sees more than the few hundred slices of its training split -- a lever that may trade some
fidelity for coverage.

Written with ``torch.nn.functional.affine_grid`` / ``grid_sample`` rather than MONAI's
``Rand2DElastic`` / ``Rand3DElastic`` and ``RandAdjustContrast`` (the same operations): those
transform one image at a time with NumPy's random state, about 12 ms per 48^2 image on a CPU --
half a training step of the demo -- while this transforms the whole batch at once, on the
training device, from the step's own seeded generator (:func:`augmenter`), so an interrupted run
resumes with the same deformations. ``none`` draws nothing: its runs are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["MILD", "augmenter"]

#: ``mild``: largest rotation per axis (degrees), relative scaling, displacement of the control
#: points (voxels), control points per side, contrast gamma range.
MILD = {"rotate_deg": 3.0, "scale": 0.03, "displace": 1.0, "points": 5, "gamma": (0.9, 1.1)}


def _uniform(shape, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def _affine(n: int, dims: int, gen: torch.Generator, device) -> torch.Tensor:
    """``(n, dims, dims + 1)``: a small random rotation (the exponential of a random skew matrix:
    angles up to ``rotate_deg`` about each axis) times a random isotropic scale, no shift."""
    a = math.radians(MILD["rotate_deg"])
    pairs = [(0, 1)] if dims == 2 else [(0, 1), (0, 2), (1, 2)]
    skew = torch.zeros((n, dims, dims), device=device)
    for i, j in pairs:
        angle = _uniform((n,), -a, a, gen, device)
        skew[:, i, j], skew[:, j, i] = angle, -angle
    scale = _uniform((n, 1, 1), 1 - MILD["scale"], 1 + MILD["scale"], gen, device)
    rot = torch.linalg.matrix_exp(skew) * scale
    return torch.cat([rot, torch.zeros((n, dims, 1), device=device)], dim=2)


def _displacement(n: int, dims: int, size: int, gen: torch.Generator, device) -> torch.Tensor:
    """``(n, *spatial, dims)`` in grid_sample's normalised units: random offsets of up to
    ``displace`` voxels at a coarse grid of control points, interpolated smoothly."""
    k = MILD["points"]
    offsets = _uniform((n, dims) + (k,) * dims, -1.0, 1.0, gen, device) * MILD["displace"]
    mode = "bicubic" if dims == 2 else "trilinear"
    field = F.interpolate(offsets, size=(size,) * dims, mode=mode, align_corners=True)
    return field.movedim(1, -1) * (2.0 / (size - 1))


def augmenter(
    mode: str, spatial_dims: int, image_size: int
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """``augment(x0, generator)`` for ``train_augment=mode`` (``None`` for ``none``).

    ``x0`` is a batch ``(B, 1, *spatial)`` in [-1, 1]; every random number comes from
    ``generator`` (on ``x0``'s device), drawn after the step's noise, timesteps and labels.
    """
    if mode == "none":
        return None
    if mode != "mild":
        raise ValueError(f"train_augment must be none or mild; got {mode!r}")
    dims, size = spatial_dims, image_size

    def augment(x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, device = x0.shape[0], x0.device
        x = x0.float()
        grid = F.affine_grid(_affine(n, dims, generator, device), list(x.shape), True)
        grid = grid + _displacement(n, dims, size, generator, device)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        gamma = _uniform((n,) + (1,) * (dims + 1), *MILD["gamma"], generator, device)
        lo = x.amin(dim=tuple(range(1, dims + 2)), keepdim=True)
        span = (x.amax(dim=tuple(range(1, dims + 2)), keepdim=True) - lo).clamp_min(1e-6)
        x = ((x - lo) / span).clamp_(0.0, 1.0) ** gamma * span + lo
        return x.to(x0.dtype).clamp_(-1.0, 1.0)

    return augment
