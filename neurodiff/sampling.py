"""The sampling engine: MONAI schedulers turned into samplers, one seeded loop, one dispatch.

Every sampler name is dispatched here (:func:`make_scheduler`, :func:`generate`), for the
synthetic cohort (stage 4), the training previews and the teaching figures alike; which sampler
fits which model is decided by :func:`neurodiff.config.check_sampler` (through
:func:`check_sampler_args`), and every scheduler comes from :func:`neurodiff.model.build_scheduler`.

Samplers (all MONAI schedulers, with the noise schedule the model was trained with):

``ddpm``
    Ancestral sampling (Ho et al. 2020), one network evaluation per training timestep: ``T``
    evaluations, a fresh Gaussian draw at every step. This is what the paper used (T = 250).
``ddim``
    Song et al. 2021: the same trained network, a deterministic (``eta = 0``) or partly stochastic
    update that may skip timesteps, so ``steps`` evaluations with ``steps <= T``.
``pndm``
    Liu et al. 2022's pseudo linear multi-step update (PLMS, MONAI ``PNDMScheduler`` with
    ``skip_prk_steps=True``): ``steps`` evaluations; ε-prediction models only.
``euler``
    For rectified-flow models (``process="rflow"``): Euler steps along the predicted velocity,
    MONAI ``RFlowScheduler.step``; ``steps`` evaluations, deterministic.
``heun``
    Rectified flow with Heun's second-order correction (Karras et al. 2022, Alg. 1): each Euler
    step is followed by a second evaluation at its end point and the two velocities are averaged
    (none after the last step), ``2 steps - 1`` evaluations.

Everything is seeded by one :class:`torch.Generator` (the initial noise and every DDPM/DDIM noise
draw), so the same seed, batch size and device give identical samples. On CUDA the network runs
under bf16 autocast (``precision=auto``); the sample itself is kept in fp32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import (
    SAMPLERS,
    ModelConfig,
    check_sampler,
    default_fast_sampler,
    uses_all_timesteps,
)
from .device import autocast, resolve_device, resolve_precision
from .errors import ConfigError
from .model import build_scheduler
from .schedulers import heun_step

__all__ = [
    "SAMPLERS",
    "SAMPLER_SPECS",
    "ReverseProcess",
    "SamplerSpec",
    "StepCallback",
    "check_sampler_args",
    "generate",
    "network_evaluations",
    "make_scheduler",
    "preview_samples",
    "reverse_process",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplerSpec:
    """What differs between samplers; everything else is the one loop of :func:`generate`.

    ``scheduler`` builds the MONAI scheduler from the model configuration (the training noise
    schedule); ``uses_eta``: takes DDIM's ``eta``; ``stochastic``: draws noise from the generator
    at each step; ``stateful``: keeps a history per chain, reset for every batch; ``flow``:
    integrates a rectified-flow velocity (Euler steps to the next timestep); ``heun``: with a
    second evaluation per step. What a sampler asks of the model (its process, all T timesteps,
    epsilon prediction) is not here but in :mod:`neurodiff.config.samplers`.
    """

    scheduler: Callable[[ModelConfig], Any]
    uses_eta: bool = False
    stochastic: bool = False
    stateful: bool = False
    flow: bool = False
    heun: bool = False


#: ``callback(step_index, t, x_t, x0_pred)`` of :func:`generate`: ``x_t`` is the batch entering
#: timestep ``t`` (before the update), ``x0_pred`` the scheduler's prediction of the clean image
#: from it (``None`` for PNDM).
StepCallback = Callable[[int, int, torch.Tensor, "torch.Tensor | None"], None]


#: The samplers (:data:`neurodiff.config.SAMPLERS`), dispatched here and nowhere else (see the
#: module docstring). DDIM is the schedule-consistent one of :mod:`neurodiff.schedulers`.
SAMPLER_SPECS: dict[str, SamplerSpec] = {
    "ddpm": SamplerSpec(lambda c: build_scheduler(c, "ddpm"), stochastic=True),
    "ddim": SamplerSpec(lambda c: build_scheduler(c, "ddim"), uses_eta=True, stochastic=True),
    "pndm": SamplerSpec(lambda c: build_scheduler(c, "pndm"), stateful=True),
    "euler": SamplerSpec(build_scheduler, flow=True),
    "heun": SamplerSpec(build_scheduler, flow=True, heun=True),
}


def check_sampler_args(
    model_config: ModelConfig, sampler: str, steps: int | None, eta: float = 0.0, churn: float = 0.0
) -> int:
    """Validate a sampler request against the model; return the number of sampler steps.

    The sampler rules are :func:`neurodiff.config.check_sampler`'s; ``eta`` is checked here.

    Raises
    ------
    ConfigError
        Unknown sampler; a sampler that does not fit the model's ``process``; ``steps`` <= 0 or
        > T; pndm with a non-epsilon ``prediction_type``; ``eta`` outside [0, 1].
    """
    n_steps = check_sampler(
        model_config.process, model_config.prediction_type, model_config.timesteps, sampler, steps
    )
    if not 0.0 <= float(eta) <= 1.0:
        raise ConfigError(f"parameter 'eta' must be in [0, 1]; got {eta!r}", parameter="eta")
    if float(churn) < 0.0 or (churn and not SAMPLER_SPECS[sampler].flow):
        raise ConfigError(
            f"parameter 'churn' ({churn!r}) must be >= 0 and applies to the rectified-flow "
            f"samplers (euler, heun) only; sampler {sampler!r} has its own noise (ddpm, ddim "
            "with eta): leave churn at 0",
            parameter="churn",
        )
    return n_steps


def network_evaluations(model_config: ModelConfig, sampler: str, steps: int | None) -> int:
    """Network evaluations per sample of ``sampler`` with ``steps`` (Heun: 2 x steps - 1)."""
    n = check_sampler_args(model_config, sampler, steps)
    return 2 * n - 1 if SAMPLER_SPECS[sampler].heun else n


def make_scheduler(model_config: ModelConfig, sampler: str = "ddim", steps: int | None = 50):
    """The MONAI scheduler for ``sampler`` with the training noise schedule, timesteps set.

    Every scheduler comes from :func:`neurodiff.model.build_scheduler` (the schedule training
    used); its DDIM is MONAI's ``DDIMScheduler`` with the previous-timestep fix of
    :func:`neurodiff.schedulers.schedule_consistent_ddim`. ``ddpm`` always uses all ``T``
    timesteps (MONAI's DDPM step goes from ``t`` to ``t - 1``); ``steps`` is then ignored.
    """
    n_steps = check_sampler_args(model_config, sampler, steps)
    sched = SAMPLER_SPECS[sampler].scheduler(model_config)
    sched.set_timesteps(n_steps)
    return sched


def _evaluator(model, device, dtype, tick: Callable[[], None]):
    """``evaluate(x, t)``: the network at timestep ``t`` under autocast, in fp32, with a tick."""

    def evaluate(x: torch.Tensor, t: int) -> torch.Tensor:
        t_batch = torch.full((len(x),), t, device=device, dtype=torch.long)
        with autocast(device, dtype):
            output = model(x, timesteps=t_batch)
        tick()
        return output.float()

    return evaluate


def _step_kwargs(spec: SamplerSpec, eta: float, generator: torch.Generator) -> dict:
    """The keyword arguments of this sampler's ``scheduler.step`` (computed once per call)."""
    kwargs: dict = {}
    if spec.uses_eta:
        kwargs["eta"] = eta
    if spec.stochastic:
        kwargs["generator"] = generator
    return kwargs


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    model_config: ModelConfig,
    n: int,
    *,
    sampler: str = "ddim",
    steps: int | None = 50,
    eta: float = 0.0,
    churn: float = 0.0,
    batch_size: int = 32,
    seed: int = 0,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Draw ``n`` samples from a diffusion model.

    Parameters
    ----------
    model : torch.nn.Module
        The denoising network (e.g. MONAI ``DiffusionModelUNet``, EMA weights), called as
        ``model(x, timesteps=t)`` with ``x`` of shape ``(B, 1, *spatial)`` and ``t`` ``(B,)``.
        It is moved to ``device`` and left in ``eval()`` mode.
    model_config : ModelConfig
        Gives the image shape and the training noise schedule.
    n : int
        Number of samples (> 0).
    sampler : {'ddpm', 'ddim', 'pndm', 'euler', 'heun'}
        ddpm/ddim/pndm for a DDPM model, euler/heun for a rectified-flow model.
    steps : int, optional
        Sampler steps for ddim/pndm/euler/heun, 1..T; ignored for ddpm (always T).
    eta : float
        DDIM noise scale in [0, 1] (0 = deterministic, 1 = DDPM-like posterior variance).
    churn : float
        euler/heun only: before each step, the noise-to-signal ratio is raised by the factor
        ``1 + churn`` with fresh noise (:func:`_churn`); 0 = the deterministic ODE.
    batch_size : int
        Samples per forward pass.
    seed : int
        Seed of a fresh generator on ``device`` (ignored when ``generator`` is given).
    generator : torch.Generator, optional
        Source of all randomness: the initial noise and each DDPM/DDIM noise draw.
    device : str or torch.device, optional
        ``None`` = the model's device; a string goes through
        :func:`neurodiff.device.resolve_device` (``auto``, ``cpu``, ``cuda`` ...).
    precision : {'auto', 'fp32', 'bf16'}
        Autocast of the network (``auto`` = bf16 on CUDA, fp32 elsewhere).
    progress : bool
        Show a tqdm bar counting network evaluations.
    callback : callable, optional
        ``callback(step_index, t, x_t, x0_pred)`` for every step of every batch (see
        :data:`StepCallback`); used for the reverse-process figure.

    Returns
    -------
    torch.Tensor
        ``(n, 1, *spatial)`` float32 on the CPU, clamped to the model's range [-1, 1].

    Notes
    -----
    The loop is written here rather than calling ``monai.inferers.DiffusionInferer.sample``
    because the inferer passes no generator to ``scheduler.step`` (DDPM noise would come from the
    global RNG, not the seed), has no DDIM ``eta``, no autocast, and no per-step hook for the
    intermediate images. The maths stays in the MONAI schedulers.
    """
    from tqdm.auto import tqdm

    for name, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            what = " (samples to draw)" if name == "n" else ""
            raise ConfigError(
                f"generate(): argument {name!r}{what} must be a positive integer; got {value!r}"
            )
    check_sampler_args(model_config, sampler, steps, eta, churn)
    scheduler = make_scheduler(model_config, sampler, steps)
    spec = SAMPLER_SPECS[sampler]
    if uses_all_timesteps(sampler) and steps not in (None, model_config.timesteps):
        log.info("%s uses all T = %d timesteps", sampler, model_config.timesteps)
    if device is None:
        device = next(model.parameters()).device
    elif not isinstance(device, torch.device):
        device = resolve_device(str(device))
    dtype = resolve_precision(precision, device)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    model = model.to(device).eval()
    step_kwargs = _step_kwargs(spec, eta, generator)
    shape = (1,) + (model_config.image_size,) * model_config.spatial_dims
    timesteps = [int(t) for t in scheduler.timesteps]
    n_evals = network_evaluations(model_config, sampler, steps)
    n_batches = math.ceil(n / batch_size)
    log.info(
        "sampling %d x %s with %s (%d network evaluations each) on %s, batch size %d, %s",
        n,
        shape,
        sampler,
        n_evals,
        device,
        batch_size,
        "bf16 autocast" if dtype is not None else "fp32",
    )
    out = torch.empty((n, *shape), dtype=torch.float32)
    bar = tqdm(
        total=n_batches * n_evals,
        desc=f"{sampler}-{n_evals}",
        unit="eval",
        disable=not progress,
        leave=False,
    )
    evaluate = _evaluator(model, device, dtype, lambda: bar.update(1))
    try:
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            if spec.stateful:
                scheduler.set_timesteps(len(timesteps))  # a history per chain: reset it
            x = torch.randn((m, *shape), generator=generator, device=device, dtype=torch.float32)
            for i, t in enumerate(timesteps):
                t_next = timesteps[i + 1] if i + 1 < len(timesteps) else 0
                if churn:
                    t, x = _churn(x, t, churn, model_config.timesteps, generator)
                x_next, x0 = _reverse_step(spec, scheduler, evaluate, x, t, t_next, step_kwargs)
                if callback is not None:
                    callback(i, t, x, x0)
                x = x_next
            out[start : start + m] = x.clamp(-1.0, 1.0).float().cpu()
    finally:
        bar.close()
    return out


def _churn(x: torch.Tensor, t: int, churn: float, T: int, generator: torch.Generator):
    """Karras et al. 2022's "churn" (Alg. 2, lines 5-7) on the rectified-flow path
    ``x_t = (1 - s) x0 + s noise``, ``s = t / T``: the noise-to-signal ratio ``sigma = s / (1 - s)``
    is raised to ``sigma (1 + churn)`` by adding fresh noise of variance ``sigma_hat^2 - sigma^2``
    to ``x_t / (1 - s)``; returns ``(t_hat, x_hat)``, the step is then taken from ``t_hat``.
    Hand-written: MONAI's ``RFlowScheduler`` has the deterministic Euler step only.

    ``t_hat`` is rounded to an integer timestep below ``T`` (the network's embedding was trained
    on integers) and ``sigma_hat`` recomputed from it; at ``t = 0`` or ``t >= T`` nothing is done.
    """
    if t <= 0 or t >= T:
        return t, x
    s = t / T
    sigma = s / (1.0 - s)
    target = sigma * (1.0 + churn)
    t_hat = min(T - 1, int(round(T * target / (1.0 + target))))
    if t_hat <= t:
        return t, x
    s_hat = t_hat / T
    sigma_hat = s_hat / (1.0 - s_hat)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    y = x / (1.0 - s) + math.sqrt(sigma_hat**2 - sigma**2) * noise
    return t_hat, (1.0 - s_hat) * y


def _reverse_step(spec: SamplerSpec, scheduler, evaluate, x, t: int, t_next: int, step_kwargs):
    """One step of the reverse process from ``t``: ``(x at the next timestep, x0 estimate)``.
    Flow samplers step to ``t_next`` (Heun with a second evaluation there, but not at 0)."""
    output = evaluate(x, t)
    if not spec.flow:
        return scheduler.step(output, t, x, **step_kwargs)
    x_next, x0 = scheduler.step(output, t, x, t_next)
    if spec.heun and t_next > 0:
        x_next = heun_step(scheduler, evaluate, x, output, x_next, t, t_next)
    return x_next, x0


@dataclass
class ReverseProcess:
    """Snapshots of one sample along the reverse process (for teaching figures).

    ``timesteps[k]`` is the timestep of snapshot ``k``; ``x_t`` ``(K, 1, *spatial)`` the noisy
    image entering it and ``x0_pred`` the model's estimate of the clean image from it (both in
    [-1, 1] up to noise); ``final`` ``(1, *spatial)`` is the finished sample.
    """

    sampler: str
    timesteps: list[int]
    x_t: torch.Tensor
    x0_pred: torch.Tensor | None
    final: torch.Tensor


def reverse_process(
    model: torch.nn.Module,
    model_config: ModelConfig,
    *,
    sampler: str = "ddim",
    steps: int | None = 50,
    eta: float = 0.0,
    n_snapshots: int = 6,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = False,
) -> ReverseProcess:
    """Generate one sample and keep ``n_snapshots`` evenly spaced steps of its reverse process."""
    n_evals = check_sampler_args(model_config, sampler, steps, eta)
    if n_snapshots < 1:
        raise ConfigError(
            f"reverse_process(): argument 'n_snapshots' must be >= 1; got {n_snapshots}"
        )
    keep = set(np.linspace(0, n_evals - 1, min(n_snapshots, n_evals)).round().astype(int).tolist())
    ts: list[int] = []
    xs: list[torch.Tensor] = []
    x0s: list[torch.Tensor | None] = []

    def grab(i: int, t: int, x: torch.Tensor, x0: torch.Tensor | None) -> None:
        if i in keep:
            ts.append(t)
            xs.append(x[0].float().cpu().clone())
            x0s.append(None if x0 is None else x0[0].float().cpu().clone())

    final = generate(
        model,
        model_config,
        1,
        sampler=sampler,
        steps=steps,
        eta=eta,
        batch_size=1,
        seed=seed,
        device=device,
        precision=precision,
        progress=progress,
        callback=grab,
    )
    x0_pred = None if any(v is None for v in x0s) else torch.stack(x0s)  # type: ignore[arg-type]
    return ReverseProcess(sampler, ts, torch.stack(xs), x0_pred, final[0])


def preview_samples(
    model: nn.Module,
    cfg: ModelConfig,
    n: int = 16,
    steps: int = 20,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A few deterministic DDIM samples (eta = 0; Euler for a rectified-flow model) from
    ``model``, for watching training.

    The same sampler as the synthetic cohort (:func:`generate`), so a preview
    shows what sampling would give at that step. ``model``'s train/eval mode is kept.

    Returns ``(n, 1, *spatial)`` float32 on the CPU, in [-1, 1].
    """
    was_training = model.training
    level = log.level
    log.setLevel(logging.WARNING)  # one line per preview would drown the training log
    try:
        return generate(
            model,
            cfg,
            n,
            sampler=default_fast_sampler(cfg.process),  # ddim, or euler for rectified flow
            steps=min(steps, cfg.timesteps),
            eta=0.0,
            batch_size=n if cfg.spatial_dims == 2 else 1,
            seed=seed,
            device=torch.device(device),
            precision="fp32" if dtype is None else "bf16",
            progress=False,
        )
    finally:
        log.setLevel(level)
        model.train(was_training)
