"""Parameters: one flat namespace shared by all notebooks, profiles and command-line subcommands.

Each pipeline stage owns a small frozen dataclass (:class:`CohortConfig`,
:class:`PreprocessConfig`, :class:`ModelConfig`, :class:`TrainConfig`, :class:`SampleConfig`,
:class:`MetricsConfig`, :class:`AugmentConfig`, in :mod:`.stages`). Their fields *are* the
parameter names that appear in the notebooks' ``parameters`` cells and in the profile YAML files
(``neurodiff/profiles/*.yaml``).
A name used by several stages is declared once, in a mixin of :mod:`.fields`.

Values flow like this::

    profile YAML  ->  -p key=value overrides  ->  Params (validated)  ->  stage configs

Nothing heavy is imported here (no torch, no MONAI), so validating parameters is instant and
happens before any long work starts. Code reads parameters by attribute (``params.image_size``);
``Params`` is also a read-only mapping, for ``**params`` and iteration. Which sampler fits which
model is decided in one place, :mod:`.samplers` (:func:`check_sampler`).
"""

from ..errors import ConfigError
from .fields import (
    DEMO_COHORT,
    DEMO_POOLS,
    DERIVED_DIR,
    IXI_DIR,
    StageConfig,
    param,
)
from .params import (
    LOCATION_PARAMS,
    RESOLVED_FLAG,
    Params,
    ParamSpec,
    available_profiles,
    from_namespace,
    load_profile,
    parameter_specs,
    parse_override,
    project_root,
    resolve,
)
from .samplers import (
    SAMPLERS,
    SAMPLERS_BY_PROCESS,
    check_sampler,
    check_sampler_fits,
    default_fast_sampler,
    reference_sampler,
    sampler_fits,
    samplers_for,
    uses_all_timesteps,
)
from .stages import (
    STAGES,
    AugmentConfig,
    CohortConfig,
    MetricsConfig,
    ModelConfig,
    PreprocessConfig,
    SampleConfig,
    TrainConfig,
)

__all__ = [
    "DEMO_COHORT",
    "DEMO_POOLS",
    "DERIVED_DIR",
    "IXI_DIR",
    "LOCATION_PARAMS",
    "STAGES",
    "AugmentConfig",
    "CohortConfig",
    "ConfigError",
    "MetricsConfig",
    "ModelConfig",
    "RESOLVED_FLAG",
    "SAMPLERS",
    "SAMPLERS_BY_PROCESS",
    "ParamSpec",
    "Params",
    "PreprocessConfig",
    "SampleConfig",
    "StageConfig",
    "TrainConfig",
    "available_profiles",
    "check_sampler",
    "check_sampler_fits",
    "default_fast_sampler",
    "from_namespace",
    "load_profile",
    "param",
    "parameter_specs",
    "parse_override",
    "project_root",
    "reference_sampler",
    "resolve",
    "sampler_fits",
    "samplers_for",
    "uses_all_timesteps",
]
