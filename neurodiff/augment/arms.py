"""The arms of the experiment as small typed values.

An arm is a kind (``A`` real only, ``B`` real + classical augmentation, ``C`` real + synthetic
images, ``D`` synthetic only, ``E`` real + images of new subjects) and, for ``C`` alone, the
synthetic images added per class. Its :attr:`Arm.name` (``"A"``, ``"C64"``) is what the tables,
``augment.json`` and the figures show; :meth:`Arm.parse` reads a name back, the one place that
reads a count out of a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..config import AugmentConfig

__all__ = ["Arm", "ArmKind", "arms_of"]

ArmKind = Literal["A", "B", "C", "D", "E"]
_KINDS: tuple[str, ...] = get_args(ArmKind)


@dataclass(frozen=True)
class Arm:
    """One arm: its ``kind`` and, for kind ``C``, the ``synthetic`` images added per class."""

    kind: ArmKind
    synthetic: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown arm kind {self.kind!r}; expected one of {list(_KINDS)}")
        if (self.kind == "C") != (self.synthetic is not None):
            raise ValueError(f"arm {self.kind}: 'synthetic' is set for kind C, and only for it")
        if self.synthetic is not None and self.synthetic < 1:
            raise ValueError(f"arm C needs a positive synthetic count, not {self.synthetic}")

    @property
    def name(self) -> str:
        """``"C<synthetic>"`` for a C arm, else the kind: the name in the tables."""
        return f"C{self.synthetic}" if self.kind == "C" else self.kind

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Arm:
        """The arm a table names: ``"A"``, ``"B"``, ``"D"``, ``"E"`` or ``"C<count>"``."""
        if name in _KINDS and name != "C":
            return cls(name)  # type: ignore[arg-type]
        count = name[1:]
        if name[:1] == "C" and count.isdigit():
            return cls("C", int(count))
        raise ValueError(f"not an arm name: {name!r}; expected A, B, C<count>, D or E")

    @property
    def uses_real(self) -> bool:
        """Whether the arm trains on the ``n`` real subjects (all but D)."""
        return self.kind != "D"

    def added(self, m_max: int) -> int:
        """Images added per class beside the real ones (``m_max``: the largest C count)."""
        if self.kind == "A":
            return 0
        return self.synthetic if self.synthetic is not None else m_max

    def describe(self, m_max: int) -> str:
        """The arm in words, as the tables and figures show it."""
        if self.kind == "C":
            return f"real + {self.synthetic} synthetic per class"
        return {
            "A": "real only",
            "B": f"real + {m_max} classical augmentations per class",
            "D": f"synthetic only ({m_max} per class)",
            "E": f"real + {m_max} images of new subjects per class (oracle)",
        }[self.kind]


def arms_of(acfg: AugmentConfig, oracle: bool = True) -> list[Arm]:
    """The arms in table order: A, B, one C per ``augment_synthetic``, D, and E with an oracle."""
    return (
        [Arm("A"), Arm("B")]
        + [Arm("C", m) for m in acfg.augment_synthetic]
        + [Arm("D")]
        + ([Arm("E")] if oracle else [])
    )
