"""The experiment's images and its draws: who trains and who tests, in every arm.

Three pools of real subjects, never mixed:

* the **training split** of the cohort (the generator's training subjects): the arms' *n* real
  subjects per class are drawn from it;
* the **test split**: held-out subjects of both groups, never seen by the generator nor by any
  classifier -- every arm is judged on them;
* the **oracle**: new subjects of the same distribution (``oracle_cohort``, preprocessed the same
  way), in no split and unseen by the generator -- only arm E uses them.

A draw (``n``, ``d``) picks ``n`` training subjects per class with a generator seeded by
``(seed, n, d)``; every arm of that draw starts from the same real images (paired arms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..artifacts import load_split, load_synthetic
from ..config import AugmentConfig, ModelConfig, Params
from ..errors import ConfigError, DataError
from ..intensity import to_model_range

__all__ = ["Draw", "ExperimentData", "classical_copies", "draw", "load_data", "oracle_params"]


@dataclass
class ExperimentData:
    """Images in the model range [-1, 1] with one label (0 = first group, 1 = second) and one
    subject per image."""

    groups: tuple[str, str]
    train: np.ndarray
    train_y: np.ndarray
    train_subject: np.ndarray
    train_slice: np.ndarray
    test: np.ndarray
    test_y: np.ndarray
    test_subject: np.ndarray
    synthetic: dict[int, np.ndarray]
    oracle: np.ndarray | None = None
    oracle_y: np.ndarray | None = None
    oracle_subject: np.ndarray | None = None

    def subjects(self, split: str, label: int) -> list[str]:
        """Sorted subjects of one class in ``train``, ``test`` or ``oracle``."""
        subj, y = getattr(self, f"{split}_subject"), getattr(self, f"{split}_y")
        if subj is None:
            return []
        return sorted(set(subj[y == label].tolist()))

    @property
    def slices_per_subject(self) -> float:
        return len(self.train) / max(len(set(self.train_subject.tolist())), 1)


def oracle_params(params: Params) -> Params | None:
    """The parameters that preprocess the oracle cohort exactly like the cohort (same pipeline,
    another ``cohort``); None without an oracle."""
    return params.for_cohort("oracle_cohort")


def _labels(index: pd.DataFrame, groups: tuple[str, str], where: str) -> np.ndarray:
    if "group" not in index.columns:
        raise DataError(
            f"{where} has no 'group' column: the experiment needs a cohort of two groups "
            f"{list(groups)} (participants.tsv with a 'group' column)"
        )
    found = set(index["group"].astype(str))
    if not found <= set(groups):
        raise DataError(f"{where} has groups {sorted(found)}; expected {list(groups)}")
    return (index["group"].astype(str) == groups[1]).to_numpy().astype(np.int64)


def load_data(params: Params) -> ExperimentData:
    """The cohort's training and test splits, the synthetic images of both groups and, when
    ``oracle_cohort`` is set, the oracle subjects (its whole preprocessed cohort, both splits).

    Raises a :class:`~neurodiff.errors.ConfigError` for a model that is not class-conditional on
    two groups and a :class:`~neurodiff.errors.DataError` when a pool is too small for the
    largest ``augment_n`` or ``augment_synthetic`` -- before any classifier is fitted.
    """
    mcfg: ModelConfig = params.stage(ModelConfig)
    acfg: AugmentConfig = params.stage(AugmentConfig)
    if len(mcfg.groups) != 2:
        raise ConfigError(
            "chapter 6 needs a generator conditioned on two groups (control, patient); "
            f"parameter 'groups' is {list(mcfg.groups)}. Run it with -p "
            "groups='[control, patient]' on a cohort with a 'group' column",
            parameter="groups",
        )
    groups = (mcfg.groups[0], mcfg.groups[1])
    parts = {}
    for split in ("train", "test"):
        images, index = load_split(params, split)
        parts[split] = (
            np.asarray(images, dtype=np.float32),
            _labels(index, groups, f"the {split} split's index"),
            index["subject"].astype(str).to_numpy(),
            index["slice"].to_numpy(),
        )
    synthetic = {
        k: to_model_range(np.asarray(load_synthetic(params, group=g), dtype=np.float32))
        for k, g in enumerate(groups)
    }
    data = ExperimentData(groups, *parts["train"], *parts["test"][:3], synthetic)
    oracle = oracle_params(params)
    if oracle is not None:
        images, ys, subjects = [], [], []
        for split in ("train", "test"):
            im, idx = load_split(oracle, split)
            images.append(np.asarray(im, dtype=np.float32))
            ys.append(_labels(idx, groups, f"the oracle cohort's {split} index"))
            subjects.append(idx["subject"].astype(str).to_numpy())
        data.oracle, data.oracle_y = np.concatenate(images), np.concatenate(ys)
        data.oracle_subject = np.concatenate(subjects)
    check_pools(data, acfg)
    return data


def check_pools(data: ExperimentData, acfg: AugmentConfig) -> None:
    """Every pool large enough for the parameters, and no subject in two pools."""
    for label, group in enumerate(data.groups):
        have = len(data.subjects("train", label))
        if max(acfg.augment_n) > have:
            raise DataError(
                f"augment_n up to {max(acfg.augment_n)} needs that many training subjects of "
                f"group {group!r}; the training split has {have}. Lower augment_n or add "
                "subjects"
            )
        if len(data.subjects("test", label)) < 1:
            raise DataError(f"the test split has no subject of group {group!r}")
        n_syn = len(data.synthetic[label])
        if max(acfg.augment_synthetic) > n_syn:
            raise DataError(
                f"augment_synthetic up to {max(acfg.augment_synthetic)} needs that many "
                f"synthetic images of group {group!r}; the synthetic cohort has {n_syn}"
            )
        if data.oracle is not None:
            n_oracle = int((data.oracle_y == label).sum())
            if max(acfg.augment_synthetic) > n_oracle:
                raise DataError(
                    f"arm E adds {max(acfg.augment_synthetic)} images of new subjects of group "
                    f"{group!r}; the oracle cohort has {n_oracle} (write a larger one with "
                    "`neurodiff demo-data --new-subjects`, or set oracle_cohort='')"
                )
    pools = {"train": set(data.train_subject), "test": set(data.test_subject)}
    if data.oracle_subject is not None:
        pools["oracle"] = set(data.oracle_subject)
    names = list(pools)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = pools[a] & pools[b]
            if shared:
                raise DataError(
                    f"subjects {sorted(shared)[:5]} are in both the {a} and the {b} pool; the "
                    "experiment needs disjoint pools"
                )


@dataclass
class Draw:
    """One draw: the real training images (indices into ``train``) and, per class, the
    synthetic and oracle images it may add."""

    n: int
    index: int
    real: np.ndarray
    subjects: list[str]
    rng: np.random.Generator


def draw(data: ExperimentData, n: int, d: int, seed: int) -> Draw:
    """``n`` training subjects per class (all their images), seeded by ``(seed, n, d)``."""
    rng = np.random.default_rng([seed, n, d])
    chosen: list[str] = []
    for label in (0, 1):
        pool = data.subjects("train", label)
        chosen += [pool[i] for i in np.sort(rng.choice(len(pool), n, replace=False))]
    real = np.flatnonzero(np.isin(data.train_subject, chosen))
    return Draw(n, d, real, chosen, rng)


def synthetic_images(
    data: ExperimentData, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` synthetic images per class, drawn without replacement: ``(images, labels)``."""
    xs, ys = [], []
    for label in (0, 1):
        pool = data.synthetic[label]
        xs.append(pool[rng.choice(len(pool), m, replace=False)])
        ys.append(np.full(m, label))
    return np.concatenate(xs), np.concatenate(ys)


def oracle_images(
    data: ExperimentData, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``m`` images per class from new subjects: whole subjects in a random order until ``m``
    images are reached. Returns ``(images, labels, subjects used)``."""
    if data.oracle is None:
        raise DataError("no oracle cohort (parameter 'oracle_cohort' is empty)")
    xs, ys, used = [], [], []
    for label in (0, 1):
        pool = data.subjects("oracle", label)
        rows: list[int] = []
        for i in rng.permutation(len(pool)):
            if len(rows) >= m:
                break
            rows += np.flatnonzero(data.oracle_subject == pool[i]).tolist()
            used.append(pool[i])
        xs.append(data.oracle[rows[:m]])
        ys.append(np.full(m, label))
    return np.concatenate(xs), np.concatenate(ys), used


def classical_copies(
    images: np.ndarray, labels: np.ndarray, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` randomly transformed copies per class of the given real images (sources drawn with
    replacement) -- the classical augmentation of arm B: a random affine (rotation up to 10 deg,
    scaling up to 10 %, shift up to 2 px, left-right flip with probability 0.5; MONAI's batched
    ``AffineTransform`` layer, border padding) and a random intensity scaling (up to 10 %) and
    shift (up to 0.05). The parameters are drawn here, from the seeded generator, so that one
    batched call transforms every copy (MONAI's per-image ``RandAffine`` costs about 15 ms an
    image, which the experiment's hundreds of draws cannot afford)."""
    import torch
    from monai.networks.layers import AffineTransform

    sources = np.concatenate([rng.choice(np.flatnonzero(labels == k), m) for k in (0, 1)])
    n, dims = len(sources), np.asarray(images).ndim - 2
    angle = np.deg2rad(rng.uniform(-10.0, 10.0, n))
    scale = rng.uniform(0.9, 1.1, (n, dims))
    flip = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    shift = rng.uniform(-2.0, 2.0, (n, dims))
    # rotation in the axial plane (axes 0 and 1: left-right, front-back), flip of axis 0
    theta = np.zeros((n, dims + 1, dims + 1))
    cos, sin = np.cos(angle), np.sin(angle)
    theta[:, 0, 0], theta[:, 0, 1] = cos * scale[:, 0] * flip, -sin * scale[:, 1]
    theta[:, 1, 0], theta[:, 1, 1] = sin * scale[:, 0] * flip, cos * scale[:, 1]
    if dims == 3:
        theta[:, 2, 2] = scale[:, 2]
    theta[:, :dims, dims], theta[:, dims, dims] = shift, 1.0
    warp = AffineTransform(normalized=False, zero_centered=True, padding_mode="border")
    with torch.no_grad():
        out = warp(
            torch.as_tensor(np.asarray(images[sources]), dtype=torch.float32),
            torch.as_tensor(theta, dtype=torch.float32),
        ).numpy()
    per_image = (n,) + (1,) * (out.ndim - 1)
    gain = rng.uniform(0.9, 1.1, per_image)
    offset = rng.uniform(-0.05, 0.05, per_image)
    out = np.clip(out * gain + offset, -1.0, 1.0).astype(np.float32)
    return out, np.repeat([0, 1], m)
