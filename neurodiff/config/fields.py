"""The building blocks of neurodiff's parameters: documented fields, coercion, bounds, mixins.

A parameter is a dataclass field made with :func:`param`, which carries its help text and its
allowed values. :class:`StageConfig` coerces and checks every field on construction. Fields that
several stages share are declared once, in a mixin (:class:`RunFields`, :class:`CohortFields`,
:class:`ImageFields`, :class:`DeviceFields`, :class:`PrecisionFields`), so that their type,
default and help cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

from ..errors import ConfigError

__all__ = [
    "DEMO_COHORT",
    "DEMO_POOLS",
    "DERIVED_DIR",
    "IXI_DIR",
    "LOCATION_PARAMS",
    "CohortFields",
    "DeviceFields",
    "ImageFields",
    "PrecisionFields",
    "RunFields",
    "StageConfig",
    "coerce",
    "param",
]


#: Parameters that choose where outputs go, not what they contain.
LOCATION_PARAMS = ("profile", "derived_dir")

#: The default folders: the simulated demo cohort, chapter 6's simulated pools
#: (``neurodiff demo-data --pools``), the IXI download and the root of all derived outputs.
DEMO_COHORT = "data/raw/demo"
DEMO_POOLS = "data/raw/demo-pools"
#: Where ``neurodiff fetch-ixi`` downloads the IXI T1 scans by default.
IXI_DIR = "data/raw/ixi"
DERIVED_DIR = "data/derived"


def param(
    default: Any,
    help: str,
    *,
    choices: Iterable[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_inclusive: bool = True,
    shapes: bool = True,
) -> Any:
    """A dataclass field carrying its documentation and its allowed values.

    ``min``/``max`` bound numbers (and every item of a tuple of numbers). ``shapes=False`` marks a
    parameter that changes where or how a stage works but not what it writes (``derived_dir``,
    ``resume``, ``checkpoint_every`` ...): it does not enter the key that names a run's folder
    (:mod:`neurodiff.runs`).
    """
    meta = {
        "help": help,
        "shapes": shapes,
        "choices": tuple(choices) if choices is not None else None,
        "min": min,
        "max": max,
        "min_inclusive": min_inclusive,
    }
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        return f"list of {_type_name(args[0])}"
    return getattr(tp, "__name__", str(tp))


def coerce(name: str, value: Any, tp: Any, source: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise a ConfigError naming the parameter."""
    origin = typing.get_origin(tp)
    where = f" (from {source})" if source else ""
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ConfigError(
                f"parameter {name!r} must be a {_type_name(tp)}, e.g. [1, 2]; got {value!r} "
                f"({type(value).__name__}){where}",
                parameter=name,
            )
        return tuple(coerce(f"{name}[{i}]", v, item_tp, source) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return coerce(name, value, args[0], source)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"parameter {name!r} must be a number; got {value!r} "
                f"({type(value).__name__}){where}",
                parameter=name,
            )
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(
                f"parameter {name!r} must be an integer; got {value!r} "
                f"({type(value).__name__}){where}",
                parameter=name,
            )
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"parameter {name!r} must be true or false; got {value!r} "
                f"({type(value).__name__}){where}",
                parameter=name,
            )
        return value
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads a bare on/off (yes/no) as true/false
            value = "on" if value else "off"
        if not isinstance(value, str):
            raise ConfigError(
                f"parameter {name!r} must be a string; got {value!r} "
                f"({type(value).__name__}){where}",
                parameter=name,
            )
        return value
    return value


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"parameter {name!r} must be one of {list(choices)}; got {value!r}{hint}",
            parameter=name,
        )
    lo, hi = meta.get("min"), meta.get("max")
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if lo is not None and (v < lo or (v == lo and not meta.get("min_inclusive", True))):
            op = ">=" if meta.get("min_inclusive", True) else ">"
            raise ConfigError(
                f"parameter {name!r} must be {op} {lo}; got {value!r}", parameter=name
            )
        if hi is not None and v > hi:
            raise ConfigError(f"parameter {name!r} must be <= {hi}; got {value!r}", parameter=name)


@dataclass(frozen=True)
class StageConfig:
    """Base class: type coercion, bounds and choices checked on construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = coerce(f.name, getattr(self, f.name), hints[f.name], "")
            _check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override. Raise :class:`ConfigError`."""

    @classmethod
    def section(cls) -> str:
        """The config's short name in ``neurodiff params`` (``TrainConfig`` -> ``train``); which
        pipeline stage uses which configs is declared in :mod:`neurodiff.registry`."""
        return cls.__name__.removesuffix("Config").lower()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Build from a flat mapping, taking only this stage's names (others are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self, exclude: Iterable[str] = ()) -> str:
        """Short stable hash of the parameters (used to key caches and name outputs)."""
        d = {k: v for k, v in self.to_dict().items() if k not in set(exclude)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Fields shared by several stages, declared once
# --------------------------------------------------------------------------------------------

#: The one precision rule, as the parameter's help states it (see neurodiff.device).
PRECISION_HELP = (
    "auto = bf16 autocast on CUDA for training and sampling, and on a CPU with native bf16 "
    "(AVX512-BF16/AMX) for training only (measured there: benchmarks/train_throughput.py); "
    "fp32 elsewhere | fp32 | bf16"
)


@dataclass(frozen=True)
class RunFields(StageConfig):
    """Where a stage writes (``<derived_dir>/<profile>/...``) and the master seed."""

    profile: str = param(
        "demo", "profile name; outputs go to <derived_dir>/<profile>/", shapes=False
    )
    derived_dir: str = param(DERIVED_DIR, "root of all derived outputs", shapes=False)
    seed: int = param(0, "master random seed", min=0)


@dataclass(frozen=True)
class GeneratorSeedFields(RunFields):
    """The generator's own seed (training and sampling), apart from the master seed."""

    generator_seed: int = param(
        0,
        "added to seed for the generator alone (its initial weights, data order, training noise "
        "and samples), not for the split, the subjects or the metrics: replicates of one recipe",
        min=0,
    )

    @property
    def generator_rng_seed(self) -> int:
        """The seed of the generator's randomness: ``seed + generator_seed``."""
        return self.seed + self.generator_seed


@dataclass(frozen=True)
class CohortFields(StageConfig):
    """Where the input cohort lives (exploration and preprocessing)."""

    cohort: str = param(DEMO_COHORT, "folder of the input cohort: BIDS, IXI-style or flat NIfTI")
    cohort_table: str = param("", "optional CSV/TSV of demographics for a flat folder ('' = none)")
    skip_bad: bool = param(False, "skip unreadable scans (listed) instead of stopping")


@dataclass(frozen=True)
class ImageFields(StageConfig):
    """The shape of the model's input (preprocessing produces it, the model takes it)."""

    spatial_dims: int = param(2, "2 = axial slices, 3 = volumes", choices=(2, 3))
    image_size: int = param(48, "side of the model input (pixels/voxels)", min=8)


@dataclass(frozen=True)
class DeviceFields(StageConfig):
    """Which device a stage computes on."""

    device: str = param("auto", "auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps")


@dataclass(frozen=True)
class PrecisionFields(StageConfig):
    """Mixed precision of the network (training and sampling)."""

    precision: str = param("auto", PRECISION_HELP, choices=("auto", "fp32", "bf16"))
