"""Parameters: one flat namespace shared by all notebooks, profiles and command-line subcommands.

Each pipeline stage owns a small frozen dataclass (:class:`CohortConfig`, :class:`PreprocessConfig`,
:class:`ModelConfig`, :class:`TrainConfig`, :class:`SampleConfig`, :class:`MetricsConfig`). Their
fields *are* the parameter names that appear in the notebooks' ``parameters`` cells and in the
profile YAML files (``neurodiff/profiles/*.yaml``). A name used by several stages (``seed``,
``image_size`` ...) must have the same type and default everywhere; a test checks it.

Values flow like this::

    profile YAML  ->  -p key=value overrides  ->  Params (validated)  ->  stage configs

Nothing heavy is imported here (no torch, no MONAI), so validating parameters is instant and
happens before any long work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import ConfigError

__all__ = [
    "CohortConfig",
    "MetricsConfig",
    "ModelConfig",
    "Params",
    "PreprocessConfig",
    "SampleConfig",
    "StageConfig",
    "TrainConfig",
    "available_profiles",
    "from_namespace",
    "load_profile",
    "parameter_specs",
    "parse_override",
    "project_root",
    "resolve",
]


def param(
    default: Any,
    help: str,
    *,
    choices: Iterable[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_inclusive: bool = True,
) -> Any:
    """A dataclass field carrying its documentation and its allowed values.

    ``min``/``max`` bound numbers (and every item of a tuple of numbers).
    """
    meta = {
        "help": help,
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


def _coerce(name: str, value: Any, tp: Any, source: str) -> Any:
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
        return tuple(_coerce(f"{name}[{i}]", v, item_tp, source) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, args[0], source)
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

    stage: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = _coerce(f.name, getattr(self, f.name), hints[f.name], "")
            _check_bounds(f.name, value, f.metadata)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override. Raise :class:`ConfigError`."""

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> StageConfig:
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
# Stage configurations. Defaults are the `demo` profile (the default report on a 2-core CPU).
# --------------------------------------------------------------------------------------------

_PROFILE_HELP = "profile name; outputs go to <derived_dir>/<profile>/"
_SEED_HELP = "master random seed"
_DEVICE_HELP = "auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps"


@dataclass(frozen=True)
class CohortConfig(StageConfig):
    """Where the input cohort lives (notebook 01 and preprocessing)."""

    stage: ClassVar[str] = "cohort"
    profile: str = param("demo", _PROFILE_HELP)
    cohort: str = param(
        "data/raw/demo", "folder of the input cohort: BIDS, IXI-style or flat NIfTI"
    )
    cohort_table: str = param("", "optional CSV/TSV of demographics for a flat folder ('' = none)")
    skip_bad: bool = param(False, "skip unreadable scans (listed) instead of stopping")
    derived_dir: str = param("data/derived", "root of all derived outputs")
    seed: int = param(0, _SEED_HELP, min=0)


@dataclass(frozen=True)
class PreprocessConfig(StageConfig):
    """Reorientation, resampling, optional registration, normalisation, 2D/3D extraction, split."""

    stage: ClassVar[str] = "preprocess"
    profile: str = param("demo", _PROFILE_HELP)
    cohort: str = param(
        "data/raw/demo", "folder of the input cohort: BIDS, IXI-style or flat NIfTI"
    )
    cohort_table: str = param("", "optional CSV/TSV of demographics for a flat folder ('' = none)")
    skip_bad: bool = param(False, "skip unreadable scans (listed) instead of stopping")
    derived_dir: str = param("data/derived", "root of all derived outputs")
    seed: int = param(0, _SEED_HELP, min=0)
    spatial_dims: int = param(2, "2 = axial slices, 3 = volumes", choices=(2, 3))
    image_size: int = param(48, "side of the model input (pixels/voxels)", min=8)
    target_spacing: float = param(
        2.0, "isotropic voxel size (mm) before crop/pad", min=0, min_inclusive=False
    )
    fov_mm: float = param(
        224.0,
        "side (mm) of the cubic field of view cropped/padded around the head before resizing "
        "to image_size",
        min=0,
        min_inclusive=False,
    )
    register: str = param("rigid", "registration to MNI152", choices=("none", "rigid", "affine"))
    mask_brain: bool = param(False, "apply the template brain mask after registration")
    normalise: str = param("percentile", "intensity scaling", choices=("percentile", "minmax"))
    clip_percentiles: tuple[float, ...] = param(
        (0.5, 99.5), "low/high percentiles for 'percentile'", min=0, max=100
    )
    slice_range: tuple[float, ...] = param(
        (0.45, 0.65), "2D: axial slice range as fractions of the volume height", min=0, max=1
    )
    slices_per_subject: int = param(
        8, "2D: slices taken evenly from slice_range (at most all it covers)", min=1
    )
    test_fraction: float = param(
        0.25,
        "fraction of subjects held out (stratified by site)",
        min=0,
        max=0.9,
        min_inclusive=False,
    )
    qc_threshold: float = param(
        0.5, "registration QC: minimum NCC with the template", min=-1, max=1
    )
    qc_exclude: bool = param(True, "leave out (and list) subjects under qc_threshold")

    def validate(self) -> None:
        if (
            len(self.clip_percentiles) != 2
            or not self.clip_percentiles[0] < self.clip_percentiles[1]
        ):
            raise ConfigError(
                "parameter 'clip_percentiles' must be [low, high] with low < high; "
                f"got {list(self.clip_percentiles)}",
                parameter="clip_percentiles",
            )
        if len(self.slice_range) != 2 or not self.slice_range[0] < self.slice_range[1]:
            raise ConfigError(
                "parameter 'slice_range' must be [start, stop] fractions with "
                f"start < stop; got {list(self.slice_range)}",
                parameter="slice_range",
            )
        if self.image_size > self.fov_voxels:
            raise ConfigError(
                f"parameter 'image_size' ({self.image_size}) is not reachable: the field of view "
                f"of {self.fov_mm:g} mm holds only {self.fov_voxels} voxels at target_spacing "
                f"{self.target_spacing:g} mm, and resizing up would invent detail; use "
                f"target_spacing <= {self.fov_mm / self.image_size:.3g} or image_size <= "
                f"{self.fov_voxels}",
                parameter="image_size",
            )
        if self.mask_brain and self.register == "none":
            raise ConfigError(
                "parameter 'mask_brain' needs a registration: the brain mask lives in template "
                "space; set register=rigid or register=affine, or mask_brain=false",
                parameter="mask_brain",
            )

    @property
    def fov_voxels(self) -> int:
        """Voxels per side of the field of view at ``target_spacing`` (before resizing)."""
        return int(round(self.fov_mm / self.target_spacing + 1e-6))

    def _slice_bounds(self) -> tuple[int, int]:
        last = self.image_size - 1
        return int(round(self.slice_range[0] * last)), int(round(self.slice_range[1] * last))

    def slice_indices(self, n: int | None = None) -> list[int]:
        """Axial slice indices (into an ``image_size`` volume) taken evenly from ``slice_range``.

        ``n`` defaults to ``slices_per_subject``; it is capped at the slices the range covers
        (e.g. 7 for the default range of a 32-voxel volume).
        """
        lo, hi = self._slice_bounds()
        n = min(self.slices_per_subject if n is None else n, hi - lo + 1)
        if n == 1:
            return [int(round((lo + hi) / 2))]
        return sorted({int(round(x)) for x in [lo + i * (hi - lo) / (n - 1) for i in range(n)]})


@dataclass(frozen=True)
class ModelConfig(StageConfig):
    """MONAI DiffusionModelUNet + DDPM noise schedule + training objective."""

    stage: ClassVar[str] = "model"
    spatial_dims: int = param(2, "2 = axial slices, 3 = volumes", choices=(2, 3))
    image_size: int = param(48, "side of the model input (pixels/voxels)", min=8)
    channels: tuple[int, ...] = param((32, 64, 128), "UNet channels per level", min=1)
    attention_levels: tuple[bool, ...] = param((False, False, True), "self-attention per level")
    num_res_blocks: int = param(1, "residual blocks per level", min=1)
    num_head_channels: int = param(32, "channels per attention head", min=1)
    norm_num_groups: int = param(32, "GroupNorm groups (must divide every channel count)", min=1)
    timesteps: int = param(250, "diffusion steps T", min=1)
    schedule: str = param(
        "cosine", "noise schedule", choices=("linear_beta", "scaled_linear_beta", "cosine")
    )
    prediction_type: str = param(
        "epsilon", "what the network predicts", choices=("epsilon", "v_prediction", "sample")
    )
    loss: str = param("l1", "training loss", choices=("l1", "l2"))

    def validate(self) -> None:
        n = len(self.channels)
        if len(self.attention_levels) != n:
            raise ConfigError(
                f"parameter 'attention_levels' must have one entry per level of "
                f"'channels' ({n}); got {len(self.attention_levels)}",
                parameter="attention_levels",
            )
        factor = 2 ** (n - 1)
        if self.image_size % factor:
            raise ConfigError(
                f"parameter 'image_size' must be divisible by the UNet's "
                f"downsampling factor 2**(len(channels)-1) = {factor}; "
                f"got {self.image_size}",
                parameter="image_size",
            )
        for c in self.channels:
            if c % self.norm_num_groups:
                raise ConfigError(
                    f"parameter 'norm_num_groups' ({self.norm_num_groups}) must divide "
                    f"every channel count; {c} in channels={list(self.channels)} "
                    "is not divisible",
                    parameter="norm_num_groups",
                )
        for c, att in zip(self.channels, self.attention_levels, strict=True):
            if att and c % self.num_head_channels:
                raise ConfigError(
                    f"parameter 'num_head_channels' ({self.num_head_channels}) must "
                    f"divide the channels of every attention level; {c} is not "
                    "divisible",
                    parameter="num_head_channels",
                )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class TrainConfig(StageConfig):
    """Optimisation, EMA, precision, checkpoints."""

    stage: ClassVar[str] = "train"
    profile: str = param("demo", _PROFILE_HELP)
    derived_dir: str = param("data/derived", "root of all derived outputs")
    seed: int = param(0, _SEED_HELP, min=0)
    device: str = param("auto", _DEVICE_HELP)
    optimizer: str = param("adamw", "optimiser", choices=("adam", "adamw"))
    lr: float = param(1e-3, "peak learning rate", min=0, min_inclusive=False)
    weight_decay: float = param(0.0, "AdamW weight decay", min=0)
    lr_schedule: str = param("cosine", "after warm-up", choices=("cosine", "constant"))
    warmup_steps: int = param(100, "linear LR warm-up steps", min=0)
    batch_size: int = param(
        8, "per-process batch size (effective batch = batch_size x processes x grad_accum)", min=1
    )
    grad_accum: int = param(1, "gradient accumulation steps", min=1)
    train_steps: int = param(1800, "optimiser steps", min=1)
    train_subjects: int = param(
        0,
        "train on N training subjects only, drawn evenly across sites with the seed (0 = all): "
        "the data-scarcity experiment",
        min=0,
    )
    grad_clip: float = param(1.0, "max gradient norm (0 = off)", min=0)
    ema_decay: float = param(0.995, "EMA decay of the weights used for sampling", min=0, max=1)
    ema_start: int = param(0, "first step that updates the EMA", min=0)
    ema_every: int = param(1, "EMA update interval (steps)", min=1)
    precision: str = param(
        "auto",
        "auto = bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
        choices=("auto", "fp32", "bf16"),
    )
    compile: bool = param(False, "torch.compile the UNet")
    channels_last: bool = param(False, "channels_last memory format")
    checkpoint_every: int = param(500, "checkpoint interval (steps)", min=1)
    keep_checkpoints: int = param(2, "checkpoints kept (oldest removed)", min=1)
    preview_every: int = param(300, "preview-sample interval (steps, 0 = off)", min=0)
    resume: bool = param(True, "continue from the latest checkpoint if one exists")
    num_workers: int = param(0, "DataLoader workers", min=0)


@dataclass(frozen=True)
class SampleConfig(StageConfig):
    """Generating the synthetic cohort."""

    stage: ClassVar[str] = "sample"
    profile: str = param("demo", _PROFILE_HELP)
    derived_dir: str = param("data/derived", "root of all derived outputs")
    seed: int = param(0, _SEED_HELP, min=0)
    device: str = param("auto", _DEVICE_HELP)
    precision: str = param(
        "auto",
        "auto = bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
        choices=("auto", "fp32", "bf16"),
    )
    sampler: str = param("ddim", "sampler", choices=("ddpm", "ddim", "pndm"))
    steps: int = param(50, "sampler steps (ddpm always uses all timesteps)", min=1)
    eta: float = param(0.0, "DDIM eta (0 = deterministic)", min=0, max=1)
    n_samples: int = param(64, "synthetic images/volumes to generate", min=1)
    sample_batch_size: int = param(32, "samples per forward batch", min=1)
    sampler_table_samples: int = param(
        8, "samples per row of the sampler speed/quality table", min=2
    )


@dataclass(frozen=True)
class MetricsConfig(StageConfig):
    """Realism, diversity and memorisation metrics."""

    stage: ClassVar[str] = "metrics"
    profile: str = param("demo", _PROFILE_HELP)
    derived_dir: str = param("data/derived", "root of all derived outputs")
    seed: int = param(0, _SEED_HELP, min=0)
    device: str = param("auto", _DEVICE_HELP)
    extractor: str = param(
        "random",
        "feature extractor: random (2D; 2.5D for volumes) | random3d | inception | "
        "medicalnet:<path to weights>",
    )
    n_bootstrap: int = param(200, "bootstrap resamples for 95% CIs", min=10)
    n_permutations: int = param(200, "permutations for the MMD test", min=10)
    msssim_pairs: int = param(100, "random pairs for MS-SSIM diversity", min=2)
    nn_k: int = param(5, "k of the k-NN manifolds (precision/recall, density/coverage)", min=1)


STAGES: tuple[type[StageConfig], ...] = (
    CohortConfig,
    PreprocessConfig,
    ModelConfig,
    TrainConfig,
    SampleConfig,
    MetricsConfig,
)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of the shared namespace."""

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    stages: tuple[str, ...]


def parameter_specs() -> dict[str, ParamSpec]:
    """All parameter names with type, default, help and the stages that use them."""
    specs: dict[str, ParamSpec] = {}
    for cls in STAGES:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if f.name in specs:
                s = specs[f.name]
                specs[f.name] = dataclasses.replace(s, stages=s.stages + (cls.stage,))
            else:
                specs[f.name] = ParamSpec(
                    f.name,
                    hints[f.name],
                    f.default,
                    f.metadata["help"],
                    f.metadata["choices"],
                    (cls.stage,),
                )
    return specs


# --------------------------------------------------------------------------------------------
# Profiles, overrides, the validated namespace
# --------------------------------------------------------------------------------------------


def project_root() -> Path:
    """The folder relative paths in parameters are resolved against.

    ``$NEURODIFF_ROOT`` if set, else the nearest parent of the working directory holding both
    ``pyproject.toml`` and ``neurodiff/``, else the working directory.
    """
    env = os.environ.get("NEURODIFF_ROOT")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "pyproject.toml").is_file() and (d / "neurodiff").is_dir():
            return d
    return cwd


def available_profiles() -> list[str]:
    """Names of the profiles shipped with the package."""
    pkg = resources.files("neurodiff") / "profiles"
    return sorted(p.name[:-5] for p in pkg.iterdir() if p.name.endswith(".yaml"))


def load_profile(profile: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a profile by name (``demo``) or path (``my.yaml``); return ``(name, values)``.

    Values are validated later, together with overrides, by :func:`resolve`.
    """
    text: str
    p = Path(profile)
    if str(profile).endswith((".yaml", ".yml")) or p.is_file():
        if not p.is_file():
            raise ConfigError(
                f"profile file {str(p)!r} does not exist", parameter="profile", path=p
            )
        name, text = p.stem, p.read_text()
    else:
        res = resources.files("neurodiff") / "profiles" / f"{profile}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown profile {profile!r}; expected one of "
                f"{available_profiles()} or a path to a .yaml file",
                parameter="profile",
            )
        name, text = str(profile), res.read_text()
        p = Path(str(res))
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {str(p)!r} is not valid YAML: {exc}", path=p) from None
    if not isinstance(values, dict):
        raise ConfigError(
            f"profile {str(p)!r} must be a mapping of parameter: value; "
            f"got {type(values).__name__}",
            path=p,
        )
    values.setdefault("profile", name)
    return name, values


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value read as YAML: ``64``, ``true``, ``[32, 64]``, ``ddim``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. -p image_size=64")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


class Params(Mapping[str, Any]):
    """The validated, complete parameter namespace of one run (read-only mapping).

    Missing names take their defaults; every stage config is built (and so validated) on
    construction. ``params.image_size`` and ``params["image_size"]`` both work.
    """

    def __init__(self, values: Mapping[str, Any], source: str = "") -> None:
        specs = parameter_specs()
        unknown = [k for k in values if k not in specs]
        if unknown:
            k = unknown[0]
            close = difflib.get_close_matches(k, list(specs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = f" in {source}" if source else ""
            raise ConfigError(
                f"unknown parameter {k!r}{where}{hint} (`neurodiff params` lists them all)",
                parameter=k,
            )
        merged = {n: s.default for n, s in specs.items()}
        for k, v in values.items():
            merged[k] = _coerce(k, v, specs[k].type, source)
        self._stages = {cls: cls.from_params(merged) for cls in STAGES}
        self._values = merged

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params(profile={self._values['profile']!r}, {len(self)} values)"

    def stage(self, cls: type[StageConfig]) -> Any:
        """The validated config of one stage, e.g. ``params.stage(TrainConfig)``."""
        return self._stages[cls]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._values))

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def path(self, value: str | Path) -> Path:
        """Resolve a path parameter against :func:`project_root` (absolute paths unchanged)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else project_root() / p

    def stage_dir(self, name: str) -> Path:
        """``<derived_dir>/<profile>/<name>``, e.g. ``data/derived/demo/preprocessed``."""
        return self.path(self._values["derived_dir"]) / self._values["profile"] / name


def resolve(
    profile: str | Path = "demo", overrides: Mapping[str, Any] | Iterable[str] = ()
) -> Params:
    """Profile + overrides -> validated :class:`Params`.

    ``overrides`` is a mapping or an iterable of ``"key=value"`` strings (as given to ``-p``).
    """
    name, values = load_profile(profile)
    Params(values, source=f"profile {name!r}")  # report profile mistakes as such
    if isinstance(overrides, Mapping):
        extra = dict(overrides)
    else:
        extra = dict(parse_override(o) for o in overrides)
    return Params({**values, **extra}, source=f"profile {name!r} with overrides")


def from_namespace(namespace: Mapping[str, Any]) -> Params:
    """Build :class:`Params` from a notebook's globals: every known parameter name found there.

    Used right after a notebook's ``parameters`` cell: ``params = from_namespace(globals())``.
    """
    specs = parameter_specs()
    return Params(
        {k: v for k, v in namespace.items() if k in specs and not k.startswith("_")},
        source="notebook parameters",
    )
