"""Class conditioning of the UNet: class labels from a cohort's groups, the "no class" label,
and classifier-free guidance for sampling (Ho & Salimans 2022).

MONAI's ``DiffusionModelUNet(num_class_embeds=...)`` holds the class embedding;
:func:`neurodiff.model.build_model` makes it when ``ModelConfig.groups`` is set. What MONAI does
not have is here: labels from a table, a default "no class" label, and guidance by class label
(MONAI's ``DiffusionInferer.sample`` guides a cross-attention context).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .errors import ConfigError, DataError

__all__ = ["ClassGuided", "class_index", "class_labels", "conditional_unet_class", "null_class"]


def _as_config(cfg: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(cfg, ModelConfig):
        return cfg
    return ModelConfig.from_params(cfg)  # type: ignore[return-value]


_CONDITIONAL_UNET: list[type] = []


def conditional_unet_class() -> type:
    """MONAI's UNet whose ``class_labels`` default to the "no class" label (MONAI requires them
    once ``num_class_embeds`` is set). Same weights and state-dict keys as MONAI's class; made
    on first use so that importing this module does not import MONAI."""
    if not _CONDITIONAL_UNET:
        from monai.networks.nets import DiffusionModelUNet

        class ConditionalUNet(DiffusionModelUNet):
            def __init__(self, *args: Any, null_class: int, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.null_class = int(null_class)

            def forward(self, x, timesteps, context=None, class_labels=None, **kwargs):
                if class_labels is None:
                    class_labels = torch.full(
                        (x.shape[0],), self.null_class, dtype=torch.long, device=x.device
                    )
                return super().forward(x, timesteps, context, class_labels, **kwargs)

        _CONDITIONAL_UNET.append(ConditionalUNet)
    return _CONDITIONAL_UNET[0]


def null_class(cfg: ModelConfig | Mapping[str, Any]) -> int:
    """The "no class" label of a class-conditional model (the last class embedding)."""
    return len(_as_config(cfg).groups)


def class_index(cfg: ModelConfig | Mapping[str, Any], group: str) -> int:
    """The class label of ``group`` (its position in ``groups``); a clear error otherwise."""
    groups = list(_as_config(cfg).groups)
    if not groups:
        raise ConfigError(
            f"group {group!r} asked of an unconditional model (parameter 'groups' is empty); "
            "train with groups=[control, patient] to sample a group",
            parameter="groups",
        )
    if group not in groups:
        raise ConfigError(
            f"group {group!r} is not one of the model's groups {groups}", parameter="groups"
        )
    return groups.index(group)


def class_labels(index: Any, cfg: ModelConfig | Mapping[str, Any], source: str = "") -> np.ndarray:
    """``(N,)`` int64 class labels of the images of an index table (its ``group`` column).

    Raises :class:`~neurodiff.errors.DataError`, naming ``source``, when the table has no
    ``group`` column or a group that is not in ``groups``.
    """
    cfg = _as_config(cfg)
    where = f" ({source})" if source else ""
    if "group" not in index.columns:
        raise DataError(
            f"a class-conditional model (groups={list(cfg.groups)}) needs a 'group' column in "
            f"the cohort; the index of the training images{where} has none. Add a 'group' "
            "column to participants.tsv (or the cohort table), or set groups=[] for an "
            "unconditional model",
            path=source or None,
        )
    found = sorted(set(index["group"].astype(str)))
    unknown = [g for g in found if g not in cfg.groups]
    if unknown:
        raise DataError(
            f"the training images{where} have group(s) {unknown} that are not in parameter "
            f"'groups' {list(cfg.groups)} (found {found}); list every group to model, in "
            "order, e.g. -p groups='[control, patient]'",
            path=source or None,
        )
    lookup = {g: i for i, g in enumerate(cfg.groups)}
    return np.array([lookup[g] for g in index["group"].astype(str)], dtype=np.int64)


class ClassGuided(nn.Module):
    """A class-conditional UNet fixed to one class, with classifier-free guidance (Ho &
    Salimans 2022), called like an unconditional one: ``model(x, timesteps=t)``. So every
    sampler of :mod:`neurodiff.sampling` works on it unchanged.

    ``prediction = uncond + scale * (cond - uncond)``: ``scale`` 1 is the conditional model alone
    (one evaluation), 0 the unconditional one; otherwise both come from one forward pass on the
    doubled batch. Written here because MONAI's ``DiffusionInferer.sample`` guides a
    cross-attention context, not class labels, and our samplers run their own loop.
    """

    def __init__(self, model: nn.Module, label: int, null_label: int, scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.label, self.null_label, self.scale = model, label, null_label, scale

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = x.shape[0]

        def labels(value: int) -> torch.Tensor:
            return torch.full((n,), value, dtype=torch.long, device=x.device)

        if self.scale == 1.0:
            return self.model(x, timesteps=timesteps, class_labels=labels(self.label))
        if self.scale == 0.0:
            return self.model(x, timesteps=timesteps, class_labels=labels(self.null_label))
        both = self.model(
            torch.cat([x, x]),
            timesteps=torch.cat([timesteps, timesteps]),
            class_labels=torch.cat([labels(self.label), labels(self.null_label)]),
        )
        cond, uncond = both.chunk(2)
        return uncond + self.scale * (cond - uncond)
