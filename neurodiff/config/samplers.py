"""Which sampler fits which model: the sampler rules, written once.

Every check of a sampler request calls :func:`check_sampler` (or :func:`check_sampler_fits`,
without the steps): the parameters of a run (:class:`~neurodiff.config.Params`, before any long
work starts), the sampling engine (:func:`neurodiff.sampling.check_sampler_args`), the scheduler
factory (:func:`neurodiff.model.build_scheduler`) and the benchmarks. The rules:

- each sampler fits one generative process (``ModelConfig.process``): ``ddpm``, ``ddim`` and
  ``pndm`` a Gaussian-diffusion model (``ddpm``), ``euler`` and ``heun`` a rectified-flow model
  (``rflow``), :data:`SAMPLERS_BY_PROCESS`;
- ``steps`` is a positive integer <= the model's ``timesteps`` T (the samplers can skip training
  timesteps, not add them), except for ``ddpm``, which always takes all T;
- ``pndm`` needs an epsilon-prediction model (``prediction_type="epsilon"``).

Nothing heavy is imported here (no torch, no MONAI).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "PROCESSES",
    "SAMPLERS",
    "SAMPLERS_BY_PROCESS",
    "SAMPLER_RULES",
    "SamplerRule",
    "check_sampler",
    "check_sampler_fits",
    "default_fast_sampler",
    "reference_sampler",
    "sampler_fits",
    "samplers_for",
    "uses_all_timesteps",
]


@dataclass(frozen=True)
class SamplerRule:
    """What a sampler asks of the model: its ``process``; ``all_timesteps``: always T network
    evaluations (``steps`` is ignored); ``epsilon_only``: an epsilon-prediction model."""

    process: str
    all_timesteps: bool = False
    epsilon_only: bool = False


#: The generative processes (``ModelConfig.process``).
PROCESSES: tuple[str, ...] = ("ddpm", "rflow")

#: Every sampler and its rule (:mod:`neurodiff.sampling` says how each one steps).
SAMPLER_RULES: dict[str, SamplerRule] = {
    "ddpm": SamplerRule("ddpm", all_timesteps=True),
    "ddim": SamplerRule("ddpm"),
    "pndm": SamplerRule("ddpm", epsilon_only=True),
    "euler": SamplerRule("rflow"),
    "heun": SamplerRule("rflow"),
}

#: The sampler names, in the order the messages list them.
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_RULES)

#: The samplers that fit each generative process (``ModelConfig.process``).
SAMPLERS_BY_PROCESS: dict[str, tuple[str, ...]] = {
    p: tuple(name for name, rule in SAMPLER_RULES.items() if rule.process == p) for p in PROCESSES
}

#: Per process: the few-step sampler a speed comparison times (DDIM for Gaussian diffusion,
#: Euler for rectified flow) and the many-step reference it is compared with (ancestral DDPM,
#: which always takes all T timesteps; Euler with one step per training timestep).
_FAST = {"ddpm": "ddim", "rflow": "euler"}
_REFERENCE = {"ddpm": "ddpm", "rflow": "euler"}


def _check_process(process: str) -> None:
    if process not in SAMPLERS_BY_PROCESS:
        raise ConfigError(
            f"parameter 'process' must be one of {list(PROCESSES)}; got {process!r}",
            parameter="process",
        )


def samplers_for(process: str) -> tuple[str, ...]:
    """The samplers that fit a model of ``process`` (``"ddpm"`` or ``"rflow"``)."""
    _check_process(process)
    return SAMPLERS_BY_PROCESS[process]


def uses_all_timesteps(sampler: str) -> bool:
    """Whether ``sampler`` always takes every training timestep (``ddpm``: ``steps`` ignored)."""
    return SAMPLER_RULES[sampler].all_timesteps


def check_sampler_fits(process: str, prediction_type: str, sampler: str) -> None:
    """Raise :class:`ConfigError` (``parameter="sampler"``) unless ``sampler`` is known and fits
    a model of ``process`` and ``prediction_type`` (the rules of the module docstring, without
    the steps)."""
    if sampler not in SAMPLER_RULES:
        raise ConfigError(
            f"parameter 'sampler' must be one of {list(SAMPLERS)}; got {sampler!r}",
            parameter="sampler",
        )
    fitting = samplers_for(process)
    if sampler not in fitting:
        raise ConfigError(
            f"sampler {sampler!r} does not fit process={process!r}; use one of {list(fitting)}",
            parameter="sampler",
        )
    if SAMPLER_RULES[sampler].epsilon_only and prediction_type != "epsilon":
        raise ConfigError(
            f"sampler {sampler!r} needs an epsilon-prediction model; this model has "
            f"prediction_type={prediction_type!r} (use sampler=ddim or ddpm)",
            parameter="sampler",
        )


def sampler_fits(process: str, prediction_type: str, sampler: str) -> bool:
    """Whether :func:`check_sampler_fits` accepts ``sampler`` for this model."""
    try:
        check_sampler_fits(process, prediction_type, sampler)
    except ConfigError:
        return False
    return True


def check_sampler(
    process: str, prediction_type: str, timesteps: int, sampler: str, steps: int | None
) -> int:
    """Check a sampler request against a model; return the sampler's number of steps.

    Parameters
    ----------
    process, prediction_type, timesteps
        The model's (``ModelConfig``): its generative process, its network's target and T.
    sampler : str
        One of :data:`SAMPLERS`.
    steps : int or None
        Sampler steps, ``1 <= steps <= timesteps``; ignored (may be ``None``) for ``ddpm``.

    Returns
    -------
    int
        ``timesteps`` for ``ddpm`` (all T), else ``steps``.

    Raises
    ------
    ConfigError
        With ``parameter`` ``"sampler"`` (unknown; does not fit ``process``; ``pndm`` with a
        non-epsilon model) or ``"steps"`` (not a positive integer; > ``timesteps``).
    """
    check_sampler_fits(process, prediction_type, sampler)
    if uses_all_timesteps(sampler):
        return int(timesteps)
    if steps is None or isinstance(steps, bool) or int(steps) != steps or steps <= 0:
        raise ConfigError(
            f"parameter 'steps' must be a positive integer for sampler {sampler!r}; got {steps!r}",
            parameter="steps",
        )
    if steps > timesteps:
        raise ConfigError(
            f"parameter 'steps' ({steps}) must be <= the model's timesteps ({timesteps}) for "
            f"sampler {sampler!r}: it can only skip timesteps, not add them",
            parameter="steps",
        )
    return int(steps)


def default_fast_sampler(process: str) -> str:
    """The few-step sampler that speed comparisons time for ``process``: ``ddim`` (DDPM models)
    or ``euler`` (rectified flow)."""
    _check_process(process)
    return _FAST[process]


def reference_sampler(process: str, timesteps: int) -> tuple[str, int]:
    """``(sampler, steps)`` of the many-step reference a fast sampler is compared with: ancestral
    ``ddpm`` over all T timesteps, or ``euler`` with one step per training timestep (T network
    evaluations either way)."""
    _check_process(process)
    return _REFERENCE[process], int(timesteps)
