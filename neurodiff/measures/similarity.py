"""SSIM and MS-SSIM (MONAI) of image pairs, and MS-SSIM diversity within one set."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MetricError
from .checks import check_images, check_pair

__all__ = [
    "diversity",
    "ms_ssim",
    "ms_ssim_settings",
    "ssim",
]


# Wang et al. 2003 MS-SSIM weights for 5 scales (also MONAI's default).
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


_MS_SSIM_MIN_KERNEL = 3


_MS_SSIM_MAX_KERNEL = 11


def ms_ssim_settings(spatial_shape: tuple[int, ...]) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights of MS-SSIM for images of ``spatial_shape``.

    Rule: the most scales (at most 5, Wang et al. 2003) whose coarsest image still holds a
    kernel of at least 3 pixels, then the largest kernel (at most 11) that fits. MONAI checks
    ``side // (n_scales - 1)^2 >= kernel`` and the image halves at each scale, so a side fits
    ``n`` scales with kernel ``k`` when ``side // max((n-1)^2, 2^(n-1)) >= k``. The weights are
    the first ``n`` of Wang et al.'s five, renormalised to sum to 1.

    Examples: 64^2 -> 5 scales, kernel 4 (as in MONAI's realism tutorial); 128^3 -> 5 scales,
    kernel 8; 32^2 -> 4 scales, kernel 3; 16^2 -> 3 scales, kernel 4.
    """
    side = int(min(spatial_shape))
    for n in range(len(_MS_SSIM_WEIGHTS), 0, -1):
        div = max((n - 1) ** 2, 2 ** (n - 1), 1)
        k = min(_MS_SSIM_MAX_KERNEL, side // div)
        if k >= _MS_SSIM_MIN_KERNEL:
            w = np.asarray(_MS_SSIM_WEIGHTS[:n])
            return k, tuple(float(v) for v in w / w.sum())
    raise MetricError(
        f"images of side {side} are too small for (MS-)SSIM; at least "
        f"{_MS_SSIM_MIN_KERNEL} pixels per side are needed"
    )


def _pairwise(
    metric_factory, a: np.ndarray, b: np.ndarray, device: torch.device | str, batch: int
) -> np.ndarray:
    metric = metric_factory()
    out = []
    with torch.inference_mode():
        for s in range(0, len(a), batch):
            x = torch.from_numpy(np.ascontiguousarray(a[s : s + batch])).to(device)
            y = torch.from_numpy(np.ascontiguousarray(b[s : s + batch])).to(device)
            out.append(metric(y_pred=x, y=y).reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.empty(0)


def ms_ssim(
    a: np.ndarray, b: np.ndarray, *, device: torch.device | str = "cpu", batch: int = 32
) -> np.ndarray:
    """MS-SSIM of each pair ``(a[i], b[i])`` (MONAI), with :func:`ms_ssim_settings`.

    Parameters
    ----------
    a, b : np.ndarray
        ``(P, 1, *spatial)`` in [0, 1].

    Returns
    -------
    np.ndarray
        ``(P,)``; 1 for identical images.
    """
    from monai.metrics import MultiScaleSSIMMetric

    a = check_images(a, "first", min_samples=1)
    b = check_images(b, "second", min_samples=1)
    check_pair(a, b, ("first", "second"))
    kernel, weights = ms_ssim_settings(a.shape[2:])
    dims = a.ndim - 2
    return _pairwise(
        lambda: MultiScaleSSIMMetric(dims, data_range=1.0, kernel_size=kernel, weights=weights),
        a,
        b,
        device,
        batch,
    )


def ssim(
    a: np.ndarray, b: np.ndarray, *, device: torch.device | str = "cpu", batch: int = 32
) -> np.ndarray:
    """SSIM of each pair ``(a[i], b[i])`` (MONAI), window ``min(11, max(3, side // 4))``."""
    from monai.metrics import SSIMMetric

    a = check_images(a, "first", min_samples=1)
    b = check_images(b, "second", min_samples=1)
    check_pair(a, b, ("first", "second"))
    win = min(11, max(3, min(a.shape[2:]) // 4))
    dims = a.ndim - 2
    return _pairwise(lambda: SSIMMetric(dims, data_range=1.0, win_size=win), a, b, device, batch)


def _random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n_pairs, n(n-1)/2)`` distinct unordered pairs ``(i, j)``, i < j."""
    i, j = np.triu_indices(n, k=1)
    picks = np.sort(rng.choice(len(i), size=min(n_pairs, len(i)), replace=False))
    return np.stack([i[picks], j[picks]], axis=1)


def diversity(
    images: np.ndarray, n_pairs: int = 100, *, seed: int = 0, device: torch.device | str = "cpu"
) -> np.ndarray:
    """MS-SSIM of ``n_pairs`` random distinct pairs within one set (their mean = diversity).

    Lower = more diverse. Note for 2D slices: two slices of one subject are more alike than two
    subjects, so a real set with several slices per subject looks slightly less diverse.

    Returns
    -------
    np.ndarray
        ``(P,)`` per-pair MS-SSIM, ``P = min(n_pairs, N(N-1)/2)``.
    """
    images = check_images(images, "diversity", why="MS-SSIM diversity needs a pair")
    pairs = _random_pairs(len(images), n_pairs, np.random.default_rng(seed))
    return ms_ssim(images[pairs[:, 0]], images[pairs[:, 1]], device=device)
