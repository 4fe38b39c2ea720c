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


def item_label(item: Any) -> Any:
    """A dataset item's class label (``{"label": ...}`` or the second of a tuple), or None."""
    if isinstance(item, Mapping):
        return item.get("label")
    if isinstance(item, tuple | list) and len(item) > 1:
        return item[1]
    return None


def collate(items: list[Any]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A list of dataset items -> one float32 batch ``(B, 1, *spatial)``, with ``(B,)`` int64
    class labels beside it when the items carry labels."""
    images = torch.stack([item_tensor(x).float() for x in items])
    labels = [item_label(x) for x in items]
    if labels[0] is None:
        return images
    return images, torch.as_tensor([int(v) for v in labels], dtype=torch.long)


def as_dataset(images: Any, cfg: ModelConfig, labels: Any = None) -> Dataset:
    """Validate training images (and class labels, for a class-conditional model) against the
    model configuration; return a Dataset."""
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
        if cfg.groups:  # items are (image, label)
            _check_labels(arr, labels, cfg)
            return TensorDataset(arr, torch.as_tensor(np.asarray(labels), dtype=torch.long))
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
        if cfg.groups:
            _check_labels(images, labels, cfg)
        return images
    raise DataError(
        f"training images must be an array (N, 1, *spatial) or a torch Dataset; "
        f"got {type(images).__name__}"
    )


def _check_labels(images: Any, labels: Any, cfg: ModelConfig) -> None:
    n_classes = len(cfg.groups)
    if isinstance(images, Dataset) and not isinstance(images, TensorDataset):
        if labels is not None:
            raise DataError(
                "class labels of a torch Dataset go inside its items ({'image': ..., 'label': "
                "...} or (image, label)), not in the 'labels' argument"
            )
        if len(images) and item_label(images[0]) is None:  # type: ignore[arg-type]
            raise DataError(
                f"a class-conditional model (groups={list(cfg.groups)}) needs a class label per "
                "training image: dataset items {'image': ..., 'label': ...} or (image, label)"
            )
        return
    if labels is None:
        raise DataError(
            f"a class-conditional model (groups={list(cfg.groups)}) needs class labels: "
            f"train(params, images, labels=...) with one label (0..{n_classes - 1}) per image, "
            "or set groups=[] for an unconditional model"
        )
    lab = np.asarray(labels)
    if lab.shape != (len(images),) or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(
            f"class labels must be {len(images)} integers, one per image; got "
            f"{lab.dtype} {lab.shape}"
        )
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise DataError(
            f"class labels must lie in 0..{n_classes - 1} (groups {list(cfg.groups)}); "
            f"found {lab.min()}..{lab.max()}"
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
    every site -- and, when the index has a ``group`` column, alternating between the groups
    first (each group's own site round-robin), so that a small subset holds every group in equal
    shares (never zero patients). Images are ``(N, 1, *spatial)``; ``index`` has one row per
    image with ``subject`` and ``site`` (and optionally ``group``) columns.
    """
    columns = ["subject", "site"] + (["group"] if "group" in index.columns else [])
    subjects = index.drop_duplicates("subject")[columns]
    if n_subjects <= 0 or n_subjects >= len(subjects):
        return images, index
    rng = np.random.default_rng(seed)
    strata = [subjects] if "group" not in columns else [g for _, g in subjects.groupby("group")]
    orders = []
    for stratum in strata:
        by_site = [
            list(rng.permutation(group["subject"].to_numpy()))
            for _, group in stratum.groupby("site", sort=True)
        ]
        order: list[str] = []
        while any(by_site):
            order += [queue.pop(0) for queue in by_site if queue]
        orders.append(order)
    chosen: list[str] = []
    while len(chosen) < n_subjects:
        for order in orders:
            if order and len(chosen) < n_subjects:
                chosen.append(order.pop(0))
    keep = index["subject"].isin(chosen).to_numpy()
    log.info("training on %d of %d subjects (%d images)", n_subjects, len(subjects), keep.sum())
    return images[keep], index[keep].reset_index(drop=True)
