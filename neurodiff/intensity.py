"""The two intensity ranges of neurodiff, and the one pair of conversions between them.

* **model range** [-1, 1]: what the diffusion model is trained on and samples in (the preprocessed
  ``train.npy`` / ``test.npy`` arrays, every tensor inside training and sampling);
* **image range** [0, 1]: what is written as NIfTI (preprocessed volumes, the synthetic cohort)
  and what every metric, feature extractor and figure takes.

Every change of range in the package goes through :func:`to_unit_range` or
:func:`to_model_range`, so there is one place that says which way is which.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["to_model_range", "to_unit_range"]

_ArrayOrTensor = TypeVar("_ArrayOrTensor")


def to_unit_range(images) -> np.ndarray:
    """Model range [-1, 1] -> image range [0, 1]: ``(x + 1) / 2``, as float32, clipped.

    Parameters
    ----------
    images : np.ndarray or torch.Tensor
        Any shape, in [-1, 1] (values outside are clipped after the mapping).

    Returns
    -------
    np.ndarray
        float32 of the same shape, in [0, 1] (a tensor is moved to the CPU first).
    """
    if hasattr(images, "detach"):  # a torch.Tensor, without importing torch here
        images = images.detach().cpu().numpy()
    a = np.asarray(images)
    return np.clip((a.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def to_model_range(images: _ArrayOrTensor) -> _ArrayOrTensor:
    """Image range [0, 1] -> model range [-1, 1]: ``2 x - 1``, keeping the type and dtype.

    Works on numpy arrays and torch tensors alike (no clipping: inputs are expected in [0, 1]).
    """
    return images * 2.0 - 1.0
