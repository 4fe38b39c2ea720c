"""The training data: validation against the model, a resumable seeded sampler, subject subsets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from ..config import ModelConfig
from ..errors import DataError

__all__ = [
    "ResumableSampler",
    "as_dataset",
    "batches",
    "collate",
    "item_tensor",
    "select_subjects",
]

log = logging.getLogger(__name__)


def item_tensor(item: Any) -> torch.Tensor:
    """A dataset item as a tensor: a tensor/array, a MONAI-style ``{"image": ...}``, or a tuple."""
    if isinstance(item, Mapping):
        item = item["image"]
    elif isinstance(item, tuple | list):
        item = item[0]
    return torch.as_tensor(item)


def collate(items: list[Any]) -> torch.Tensor:
    """A list of dataset items -> one float32 batch ``(B, 1, *spatial)``."""
    return torch.stack([item_tensor(x).float() for x in items])


def as_dataset(images: Any, cfg: ModelConfig) -> Dataset:
    """Validate training images against the model configuration; return a Dataset."""
    expected = (1,) + (cfg.image_size,) * cfg.spatial_dims
    if isinstance(images, np.ndarray | torch.Tensor):
        arr = torch.as_tensor(images)
        if tuple(arr.shape[1:]) != expected:
            raise DataError(
                f"training images must have shape (N, {', '.join(map(str, expected))}) "
                f"for spatial_dims={cfg.spatial_dims}, image_size={cfg.image_size}; "
                f"got {tuple(arr.shape)}"
            )
        if not arr.is_floating_point():
            raise DataError(f"training images must be floating point in [-1, 1]; got {arr.dtype}")
        arr = arr.float()
        if arr.numel() and not torch.isfinite(arr).all():
            raise DataError("training images contain NaN or infinite values")
        if arr.numel() and (arr.min() < -1.001 or arr.max() > 1.001):
            raise DataError(
                f"training images must be scaled to [-1, 1]; found values in "
                f"[{arr.min().item():.3g}, {arr.max().item():.3g}]"
            )
        return TensorDataset(arr)  # items are 1-tuples; item_tensor unwraps them
    if isinstance(images, Dataset):
        if len(images) > 0:  # type: ignore[arg-type]
            shape = tuple(item_tensor(images[0]).shape)
            if shape != expected:
                raise DataError(
                    f"training dataset items must have shape {expected} for "
                    f"spatial_dims={cfg.spatial_dims}, image_size={cfg.image_size}; "
                    f"got {shape}"
                )
        return images
    raise DataError(
        f"training images must be an array (N, 1, *spatial) or a torch Dataset; "
        f"got {type(images).__name__}"
    )


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch part-way through.

    torch's samplers always start an epoch at its beginning; an exact resume needs to skip the
    batches of the current epoch that were already used. The order itself is the parent's
    (a permutation seeded by seed + epoch), so it is the same before and after a resume.
    """

    skip: int = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


def batches(loader: DataLoader, sampler: ResumableSampler, batch_size: int, first_micro: int):
    """Endless micro-batches, starting at micro-batch ``first_micro`` of the whole run."""
    per_epoch = sampler.num_samples // batch_size
    epoch, offset = divmod(first_micro, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        sampler.skip = offset * batch_size
        yield from loader
        epoch, offset = epoch + 1, 0


def select_subjects(
    images: np.ndarray, index: pd.DataFrame, n_subjects: int, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """Keep the images of ``n_subjects`` training subjects (all when 0 or more than there are).

    Subjects are drawn with the seed, round-robin over sites so that a small subset still spans
    every site. Images are ``(N, 1, *spatial)``; ``index`` has one row per image with ``subject``
    and ``site`` columns.
    """
    subjects = index.drop_duplicates("subject")[["subject", "site"]]
    if n_subjects <= 0 or n_subjects >= len(subjects):
        return images, index
    rng = np.random.default_rng(seed)
    by_site = [
        list(rng.permutation(group["subject"].to_numpy()))
        for _, group in subjects.groupby("site", sort=True)
    ]
    chosen: list[str] = []
    while len(chosen) < n_subjects:
        for queue in by_site:
            if queue and len(chosen) < n_subjects:
                chosen.append(queue.pop(0))
    keep = index["subject"].isin(chosen).to_numpy()
    log.info("training on %d of %d subjects (%d images)", n_subjects, len(subjects), keep.sum())
    return images[keep], index[keep].reset_index(drop=True)
