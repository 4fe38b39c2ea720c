"""Chapter 6's configuration: the augmentation experiment's parameters (:class:`AugmentConfig`).

Kept apart from :mod:`.stages` for size; it is one of :data:`.stages.STAGES` like the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .fields import DEMO_POOLS, RunFields, param

__all__ = ["AugmentConfig"]


#: Most GroupNorm groups of chapter 6's generators (MONAI's default), whatever the report model's.
GENERATOR_MAX_GROUPS = 32


@dataclass(frozen=True)
class AugmentConfig(RunFields):
    """Does augmentation help? Chapter 6's experiment: leak-free generators per draw, a large
    test set, tuned comparators (the full size is ``benchmarks/augment_fair.py``)."""

    pools_cohort: str = param(
        DEMO_POOLS,
        "the experiment's subjects: a cohort with 'group' and 'pool' columns (pretrain | train | "
        "validation | test | ood), preprocessed like the cohort (`neurodiff demo-data --pools`)",
    )
    augment_n: tuple[int, ...] = param(
        (2, 4), "real training subjects per class of the learning curve", min=1
    )
    augment_draws: tuple[int, ...] = param(
        (2, 2),
        "draws per n (one value per augment_n, or one for all): each draw its own real "
        "subjects and its own generator; spend them where the primary endpoint needs them. Not "
        "part of the run's key: a draw does not depend on how many there are, so more draws "
        "continue a run (its tables are recomputed when the count differs)",
        min=1,
        shapes=False,
    )
    primary_n: int = param(
        4,
        "n of the primary endpoint (AUROC of C with the largest augment_synthetic minus A, "
        "logistic regression, test pool); must be one of augment_n",
        min=1,
    )
    augment_synthetic: tuple[int, ...] = param(
        (16, 32),
        "synthetic images added per class in the C arms; the largest also sets arms B, C_pool "
        "and D",
        min=1,
    )
    augment_real_k: tuple[int, ...] = param(
        (1, 2), "arms E_k: k more real subjects per class (the dense real learning curve)", min=1
    )
    generator_channels: tuple[int, ...] = param(
        (16, 32, 64),
        "UNet channels of the experiment's generators (the chapter-3 recipe otherwise: one "
        "generator per draw must fit the CPU budget)",
        min=1,
    )
    pretrain_steps: int = param(
        300, "steps of the generator's pretraining on the healthy pool", min=1
    )
    finetune_steps: int = param(60, "steps of each draw's fine-tuning on its own subjects", min=1)
    pool_finetune_steps: int = param(
        120, "steps of C_pool's fine-tuning on the whole training pool", min=1
    )
    finetune_lr: float = param(
        3e-4, "peak learning rate of the fine-tunings", min=0, min_inclusive=False
    )
    classifier_c_grid: tuple[float, ...] = param(
        (0.001, 0.01, 0.1, 1.0),
        "logistic regression: inverse L2 strengths, chosen per arm and n on the validation pool",
        min=0,
        min_inclusive=False,
    )
    cnn_steps: int = param(
        150, "small CNN: training steps (its length is tuned: scored after each third)", min=3
    )
    augment_bootstrap: int = param(
        1000,
        "hierarchical bootstrap resamples (draws with their generators, test subjects) for the "
        "95% intervals",
        min=10,
    )

    augment_results: str = param(
        "benchmarks/results/augment_fair.json",
        "the full experiment's committed results (made by benchmarks/augment_fair.py), which "
        "chapter 6 and the Discussion read; relative to the project root",
        shapes=False,
    )

    def validate(self) -> None:
        if len(self.augment_draws) not in (1, len(self.augment_n)):
            raise ConfigError(
                f"parameter 'augment_draws' needs one value per augment_n "
                f"({len(self.augment_n)}) or one for all; got {list(self.augment_draws)}",
                parameter="augment_draws",
            )
        if self.primary_n not in self.augment_n:
            raise ConfigError(
                f"parameter 'primary_n' ({self.primary_n}) must be one of augment_n "
                f"{list(self.augment_n)}",
                parameter="primary_n",
            )
        if min(self.augment_draws) < 2:
            raise ConfigError(
                "parameter 'augment_draws': every n needs at least 2 draws for an interval; got "
                f"{list(self.augment_draws)}",
                parameter="augment_draws",
            )

    def generator_config(self, model: Any) -> Any:
        """The model of chapter 6's generators: ``model``'s recipe at ``generator_channels``
        (no attention; GroupNorm groups the largest divisor of every width up to 32, MONAI's
        default, whatever the report model's groups)."""
        import dataclasses
        import math

        channels = tuple(self.generator_channels)
        groups = math.gcd(GENERATOR_MAX_GROUPS, *channels)
        try:
            return dataclasses.replace(
                model,
                channels=channels,
                attention_levels=(False,) * len(channels),
                norm_num_groups=groups,
            )
        except ConfigError as exc:
            raise ConfigError(
                f"parameter 'generator_channels' {list(channels)}: {exc}",
                parameter="generator_channels",
            ) from None

    def draws_of(self, n: int) -> int:
        """The number of draws at ``n``."""
        if len(self.augment_draws) == 1:
            return self.augment_draws[0]
        return self.augment_draws[list(self.augment_n).index(n)]
