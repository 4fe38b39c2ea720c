"""The arms of the experiment as small typed values.

Every arm trains the same classifier on images of both classes and is judged on the same test
subjects; each starts from the draw's ``n`` real subjects per class, except D and the ceiling:

* ``A`` real only;
* ``A_H`` A plus the healthy cohort the generator was pretrained on (its controls): whatever the
  generator saw, the classifier may use too -- a gain of C over A_H is the generator's own;
* ``B`` real + realistic classical augmentation (intensity, bias field, noise, small elastic
  deformation), its strength tuned on the validation pool;
* ``C<m>`` real + ``m`` synthetic images per class from **the draw's own generator** (pretrained
  on the healthy cohort, fine-tuned on exactly the draw's subjects);
* ``C_pool`` real + the largest ``m`` synthetic images per class from a generator fine-tuned on
  the **whole training pool** (the design of earlier versions, which leaks the pool's patients
  into every draw): ``C_pool - C<m>`` measures the leak;
* ``D`` synthetic only (the largest ``m`` per class, the draw's generator);
* ``E<k>`` real + ``k`` more real subjects per class from the training pool (not in the draw):
  the dense real learning curve that "worth N subjects" is read from;
* ``ceiling`` every subject of the training pool (does not depend on the draw).

:attr:`Arm.name` (``"A"``, ``"C64"``, ``"E4"``) is what the tables and the results file show;
:meth:`Arm.parse` reads a name back -- the one place a count is read out of a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..config import AugmentConfig

__all__ = ["Arm", "ArmKind", "arms_of"]

ArmKind = Literal["A", "A_H", "B", "C", "C_pool", "D", "E", "ceiling"]
_KINDS: tuple[str, ...] = get_args(ArmKind)
_COUNTED = ("C", "E")


@dataclass(frozen=True)
class Arm:
    """One arm: its ``kind`` and, for kinds ``C`` and ``E``, its ``count`` (synthetic images or
    new subjects per class)."""

    kind: ArmKind
    count: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown arm kind {self.kind!r}; expected one of {list(_KINDS)}")
        if (self.kind in _COUNTED) != (self.count is not None):
            raise ValueError(f"arm {self.kind}: 'count' is set for kinds C and E, and only them")
        if self.count is not None and self.count < 1:
            raise ValueError(f"arm {self.kind} needs a positive count, not {self.count}")

    @property
    def name(self) -> str:
        """``"C<count>"``/``"E<count>"``, else the kind: the name in the tables."""
        return f"{self.kind}{self.count}" if self.kind in _COUNTED else self.kind

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Arm:
        """The arm a table names: ``"A"``, ``"A_H"``, ``"B"``, ``"C<count>"``, ``"C_pool"``,
        ``"D"``, ``"E<count>"`` or ``"ceiling"``."""
        if name in _KINDS and name not in _COUNTED:
            return cls(name)  # type: ignore[arg-type]
        count = name[1:]
        if name[:1] in _COUNTED and count.isdigit():
            return cls(name[:1], int(count))  # type: ignore[arg-type]
        raise ValueError(f"not an arm name: {name!r}; expected one of {list(_KINDS)} with counts")

    @property
    def uses_real(self) -> bool:
        """Whether the arm trains on the draw's ``n`` real subjects (all but D and ceiling)."""
        return self.kind not in ("D", "ceiling")

    @property
    def per_draw(self) -> bool:
        """Whether the arm changes with the draw (all but the ceiling)."""
        return self.kind != "ceiling"

    @property
    def synthetic(self) -> bool:
        """Whether the arm trains on synthetic images."""
        return self.kind in ("C", "C_pool", "D")

    def describe(self, m_max: int) -> str:
        """The arm in words, as the tables and figures show it."""
        if self.kind == "C":
            return f"real + {self.count} synthetic per class (the draw's generator)"
        if self.kind == "E":
            return f"real + {self.count} more real subjects per class"
        return {
            "A": "real only",
            "A_H": "real + the generator's healthy pretraining cohort",
            "B": f"real + {m_max} realistic classical augmentations per class",
            "C_pool": f"real + {m_max} synthetic per class (generator saw the whole pool)",
            "D": f"synthetic only ({m_max} per class, the draw's generator)",
            "ceiling": "the whole training pool, real only",
        }[self.kind]


def arms_of(acfg: AugmentConfig) -> list[Arm]:
    """The arms in table order: A, A_H, B, one C per ``augment_synthetic``, C_pool, D, one E per
    ``augment_real_k``, ceiling."""
    return (
        [Arm("A"), Arm("A_H"), Arm("B")]
        + [Arm("C", m) for m in acfg.augment_synthetic]
        + [Arm("C_pool"), Arm("D")]
        + [Arm("E", k) for k in acfg.augment_real_k]
        + [Arm("ceiling")]
    )
