"""Profiles, overrides and the validated parameter namespace of one run (:class:`Params`).

Values flow like this::

    profile YAML  ->  -p key=value overrides  ->  Params (validated)  ->  stage configs

Each stage config checks its own fields; :func:`_check_across_stages` checks what involves two
stages (a sampler's steps against the model's timesteps, ...), so that every parameter mistake is
reported before any long work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..errors import ConfigError
from .fields import LOCATION_PARAMS, StageConfig, coerce
from .samplers import check_sampler
from .stages import STAGES, AugmentConfig, ModelConfig, SampleConfig

__all__ = [
    "LOCATION_PARAMS",
    "RESOLVED_FLAG",
    "ParamSpec",
    "Params",
    "available_profiles",
    "from_namespace",
    "load_profile",
    "parameter_specs",
    "parse_override",
    "project_root",
    "resolve",
]


#: A stage config class, for :meth:`Params.stage`'s return type.
C = TypeVar("C", bound=StageConfig)


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
                specs[f.name] = dataclasses.replace(s, stages=s.stages + (cls.section(),))
            else:
                specs[f.name] = ParamSpec(
                    f.name,
                    hints[f.name],
                    f.default,
                    f.metadata["help"],
                    f.metadata["choices"],
                    (cls.section(),),
                )
    return specs


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


def _project_path(value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else project_root() / p


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

    ``groups``, when not given, is read from the cohort (:attr:`from_cohort`): the default list
    on a cohort whose table has those groups, ``()`` (unconditional) on one with fewer than two
    groups, such as a healthy-only cohort (:func:`neurodiff.cohort.conditioning_groups`). So the
    keys of the runs made from these parameters say what the model was conditioned on.
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
            merged[k] = coerce(k, v, specs[k].type, source)
        self._from_cohort = tuple(n for n in _FROM_COHORT if n not in values)
        if "groups" in self._from_cohort:
            merged["groups"] = _groups_of(merged, explicit=False)
        self._stages = {cls: cls.from_params(merged) for cls in STAGES}
        self._values = merged
        _check_across_stages(self)

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

    @property
    def from_cohort(self) -> tuple[str, ...]:
        """The parameters that were not given and whose values were read from the cohort
        (``("groups",)`` or ``()``); :meth:`for_cohort` reads them again from the other cohort,
        and ``neurodiff run`` leaves them to each notebook to read."""
        return self._from_cohort

    def check_groups(self) -> None:
        """Check a given ``groups`` against the cohort's table: a :class:`ConfigError` naming
        ``groups`` when the table has other groups or none (a healthy-only cohort); nothing to
        do when they were read from the cohort or it cannot be read yet."""
        if "groups" not in self._from_cohort:
            _groups_of(self._values, explicit=True)

    def stage(self, cls: type[C]) -> C:
        """The validated config of one stage, e.g. ``params.stage(TrainConfig)`` (typed as the
        class asked for)."""
        return self._stages[cls]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._values))

    def hash(self) -> str:
        """Short hash of every parameter except where outputs go (``profile``, ``derived_dir``):
        two identical runs written to two folders have the same hash."""
        d = {k: v for k, v in self.to_dict().items() if k not in LOCATION_PARAMS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def path(self, value: str | Path) -> Path:
        """Resolve a path parameter against :func:`project_root` (absolute paths unchanged)."""
        return _project_path(value)

    def for_cohort(self, name: str) -> Params | None:
        """The parameters that preprocess the cohort named by parameter ``name`` (e.g.
        ``pools_cohort``) exactly like the cohort: the same values, that folder as ``cohort``;
        None when the parameter is empty (no such cohort)."""
        if not self._values[name]:
            return None
        given = {k: v for k, v in self.to_dict().items() if k not in self._from_cohort}
        return Params({**given, "cohort": self._values[name]}, source=f"parameter {name!r}")

    def profile_dir(self) -> Path:
        """``<derived_dir>/<profile>``: the runs of this profile (:mod:`neurodiff.runs`)."""
        return self.path(self._values["derived_dir"]) / self._values["profile"]


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
    params = Params({**values, **extra}, source=f"profile {name!r} with overrides")
    params.check_groups()  # a list set by the profile or an override must fit the cohort
    return params


#: Parameters read from the cohort when they are not given (see :class:`Params`).
_FROM_COHORT = ("groups",)


def _groups_of(values: Mapping[str, Any], explicit: bool) -> tuple[str, ...]:
    """``groups`` of ``values`` checked against (or, not ``explicit``, read from) the table of
    its cohort, by :func:`neurodiff.cohort.conditioning_groups`."""
    # imported here: neurodiff.cohort reads the default folders of .fields (a package cycle)
    from ..cohort.groups import conditioning_groups, read_groups

    table = _project_path(values["cohort_table"]) if values["cohort_table"] else None
    found = read_groups(_project_path(values["cohort"]), table)
    return conditioning_groups(found, values["groups"], explicit)


#: Set by ``neurodiff run`` in the parameters it injects: they are the complete, resolved
#: namespace, to be taken as they are.
RESOLVED_FLAG = "_neurodiff_resolved"


def from_namespace(namespace: Mapping[str, Any]) -> Params:
    """Build :class:`Params` from a notebook's globals, right after its ``parameters`` cell:
    ``params = from_namespace(globals())``.

    - Injected by ``neurodiff run`` (the namespace carries :data:`RESOLVED_FLAG`): every known
      name is taken as it is (the values read from the cohort, :attr:`Params.from_cohort`, are
      not injected: they are read here again).
    - Anywhere else (JupyterLab, VS Code, ``papermill -p lr 0.0001``, Colab): the ``profile``
      named in the namespace is loaded and every parameter whose value differs from its default
      (the ``demo`` value the parameters cell shows) overrides it. So ``papermill ... -p profile
      course`` gives the course profile, and ``-p lr 0.0001`` changes only ``lr``. (To set a
      parameter back to its default on a profile that changes it, use ``neurodiff run``.)
    """
    specs = parameter_specs()
    known = {k: v for k, v in namespace.items() if k in specs and not k.startswith("_")}
    if namespace.get(RESOLVED_FLAG):
        return Params(known, source="notebook parameters")
    profile = known.pop("profile", "demo")
    overrides = {}
    for k, v in known.items():
        value = coerce(k, v, specs[k].type, "the notebook's parameters")
        if value != specs[k].default:
            overrides[k] = value
    return resolve(profile, overrides)


def _check_across_stages(params: Params) -> None:
    """Checks that involve the fields of two stages (each stage checks its own on construction).

    The sampler must fit the model (:func:`.samplers.check_sampler`: its process, ``steps``
    reachable with the model's ``timesteps``, PNDM only for an epsilon-prediction model), and
    chapter 6's generators (the model at ``generator_channels``) must be buildable.
    """
    model: ModelConfig = params.stage(ModelConfig)
    sample: SampleConfig = params.stage(SampleConfig)
    check_sampler(
        model.process, model.prediction_type, model.timesteps, sample.sampler, sample.steps
    )
    if sample.churn and model.process != "rflow":
        raise ConfigError(
            f"parameter 'churn' ({sample.churn:g}) applies to the rectified-flow samplers (euler, "
            f"heun); process={model.process!r} samples with {sample.sampler!r}, which has its own "
            "noise (ddpm, ddim with eta): leave churn at 0",
            parameter="churn",
        )
    params.stage(AugmentConfig).generator_config(model)  # chapter 6's generators must build
