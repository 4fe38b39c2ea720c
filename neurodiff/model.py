"""The diffusion model: a MONAI ``DiffusionModelUNet`` and its DDPM noise schedule from a config.

MONAI keeps the pieces apart and so do we: :func:`build_model` is only the network,
:func:`build_scheduler` only the noise maths (Ho et al. 2020; or rectified flow, Liu et al. 2023,
with ``process="rflow"``), :func:`build_inferer` wires them for a training forward pass,
:func:`sample_timesteps` draws the training noise levels and :func:`diffusion_loss` is the training
objective (with optional min-SNR weighting). Samplers (DDIM, PNDM, Euler/Heun) for
:mod:`neurodiff.sampling` come from :func:`build_scheduler` too, so they share the exact noise
schedule the model was trained with; it is the one place a scheduler is built (its DDIM is the
schedule-consistent one of :mod:`neurodiff.schedulers`).

:func:`load_ema_model` rebuilds the network of a training checkpoint with its EMA weights, ready
for sampling. Cost figures for the model summary: :func:`count_parameters` and
:func:`estimate_train_flops` (FLOPs of one forward + backward pass, counted by
:class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device, so even the paper's 3D
model is counted in a second without memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import load_ema_state
from .conditioning import (
    ClassGuided,
    class_index,
    class_labels,
    conditional_unet_class,
    null_class,
)
from .config import ModelConfig, Params, check_sampler_fits
from .errors import CheckpointError, ConfigError
from .schedulers import schedule_consistent_ddim

__all__ = [
    "ClassGuided",
    "build_inferer",
    "build_model",
    "build_scheduler",
    "class_index",
    "class_labels",
    "count_parameters",
    "diffusion_loss",
    "diffusion_target",
    "estimate_train_flops",
    "is_flow",
    "load_ema_model",
    "loss_weights",
    "null_class",
    "sample_timesteps",
    "model_summary",
    "summary_table",
    "schedule_args",
    "signal_left",
]

#: Reference length of the linear schedules' beta range (Ho et al. 2020 used T = 1000).
_REFERENCE_T = 1000


def _as_config(cfg: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(cfg, ModelConfig):
        return cfg
    return ModelConfig.from_params(cfg)  # type: ignore[return-value]


def build_model(
    cfg: ModelConfig | Mapping[str, Any], *, flash_attention: bool = False
) -> nn.Module:
    """A MONAI ``DiffusionModelUNet`` for one-channel images or volumes.

    Parameters
    ----------
    cfg : ModelConfig or mapping
        ``spatial_dims``, ``channels``, ``attention_levels``, ``num_res_blocks``,
        ``num_head_channels``, ``norm_num_groups`` and ``groups`` are used (a
        :class:`~neurodiff.config.Params` works too).
    flash_attention : bool
        Compute attention with ``torch.nn.functional.scaled_dot_product_attention`` (fused
        kernels; faster on GPUs, slower than MONAI's plain attention on CPUs under bf16). Only the
        computation changes: the weights, and so checkpoints, are the same either way.

    Returns
    -------
    monai.networks.nets.DiffusionModelUNet
        Maps ``(B, 1, *spatial)`` noisy inputs and ``(B,)`` integer timesteps to a
        ``(B, 1, *spatial)`` prediction (noise, velocity or clean sample, see
        ``cfg.prediction_type``). With ``cfg.groups`` it is class-conditional: MONAI's class
        embedding (``num_class_embeds`` = the groups + one "no class"), added to the timestep
        embedding; ``class_labels`` (``(B,)`` integers, :func:`class_labels`) choose the class,
        and a call without them evaluates the unconditional model (the "no class" label), so
        every caller that does not care about classes works unchanged.
    """
    from monai.networks.nets import DiffusionModelUNet

    cfg = _as_config(cfg)
    kwargs = dict(
        spatial_dims=cfg.spatial_dims,
        in_channels=1,
        out_channels=1,
        channels=tuple(cfg.channels),
        attention_levels=tuple(cfg.attention_levels),
        num_res_blocks=cfg.num_res_blocks,
        num_head_channels=cfg.num_head_channels,
        norm_num_groups=cfg.norm_num_groups,
        use_flash_attention=flash_attention,
    )
    if not cfg.groups:
        return DiffusionModelUNet(**kwargs)
    return conditional_unet_class()(
        null_class=null_class(cfg), num_class_embeds=len(cfg.groups) + 1, **kwargs
    )


def schedule_args(cfg: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of MONAI's noise-schedule function for ``cfg.schedule``.

    The linear schedules keep Ho et al.'s beta range [1e-4, 0.02] at T = 1000 and scale it by
    1000 / T otherwise (Nichol & Dhariwal 2021), so that the last step is close to pure noise
    (alpha-bar_T ~ 0) whatever T is; MONAI's default range assumes T = 1000 and at T = 250
    would leave alpha-bar_T = 0.08, i.e. a visible image at the start of sampling.
    The cosine schedule uses MONAI's default offset s = 0.008 (as the authors did).
    """
    cfg = _as_config(cfg)
    if cfg.schedule in ("linear_beta", "scaled_linear_beta"):
        scale = _REFERENCE_T / cfg.timesteps
        return {"beta_start": 1e-4 * scale, "beta_end": min(0.02 * scale, 0.999)}
    if cfg.schedule == "cosine":
        return {}
    raise ConfigError(
        f"parameter 'schedule' must be linear_beta, scaled_linear_beta or cosine; "
        f"got {cfg.schedule!r}",
        parameter="schedule",
    )


def build_scheduler(cfg: ModelConfig | Mapping[str, Any], kind: str = "ddpm") -> nn.Module:
    """The noise schedule of ``cfg`` as a MONAI scheduler.

    Parameters
    ----------
    cfg : ModelConfig or mapping
        ``timesteps``, ``schedule`` and ``prediction_type`` are used.
    kind : {"ddpm", "ddim", "pndm"}
        ``ddpm`` (training and ancestral sampling, Ho et al. 2020), ``ddim`` (Song et al. 2021;
        MONAI's ``DDIMScheduler`` with the previous-timestep fix,
        :func:`neurodiff.schedulers.schedule_consistent_ddim`, right also when the sampler's
        steps do not divide T) or ``pndm`` (Liu et al. 2022, epsilon-prediction only, as
        :func:`neurodiff.config.check_sampler_fits` says); all share the same betas. Ignored for
        ``process="rflow"``: the one ``RFlowScheduler`` trains and samples (Euler steps).

    Returns
    -------
    monai.networks.schedulers.Scheduler
        With ``alphas_cumprod`` (alpha-bar_t, shape ``(T,)``), ``add_noise`` (the forward process
        q(x_t | x_0)) and ``step`` (one reverse step).
    """
    from monai.networks.schedulers import DDPMScheduler, PNDMScheduler

    cfg = _as_config(cfg)
    if cfg.process == "rflow":
        return _rflow_scheduler(cfg)
    args = schedule_args(cfg)
    common = {"num_train_timesteps": cfg.timesteps, "schedule": cfg.schedule, **args}
    if kind == "ddpm":
        return DDPMScheduler(prediction_type=cfg.prediction_type, clip_sample=True, **common)
    if kind == "ddim":
        return schedule_consistent_ddim()(
            prediction_type=cfg.prediction_type, clip_sample=True, **common
        )
    if kind == "pndm":
        check_sampler_fits(cfg.process, cfg.prediction_type, "pndm")
        return PNDMScheduler(skip_prk_steps=True, **common)
    raise ConfigError(f"build_scheduler(): argument kind must be ddpm, ddim or pndm; got {kind!r}")


def _rflow_scheduler(cfg: ModelConfig):
    """MONAI's ``RFlowScheduler`` over ``cfg.timesteps`` discrete steps: x_t = (1 - t/T) x0 +
    (t/T) noise, velocity target x0 - noise. Training timesteps are drawn by
    :func:`sample_timesteps` (seeded), not by the scheduler's own unseeded sampler."""
    from monai.networks.schedulers import RFlowScheduler

    return RFlowScheduler(
        num_train_timesteps=cfg.timesteps,
        use_discrete_timesteps=True,
        sample_method="logit-normal" if cfg.timestep_sampling == "logit_normal" else "uniform",
    )


def is_flow(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a rectified-flow scheduler (velocity x0 - noise, Euler steps)."""
    from monai.networks.schedulers import RFlowScheduler

    return isinstance(scheduler, RFlowScheduler)


def sample_timesteps(
    cfg: ModelConfig | Mapping[str, Any], n: int, generator: torch.Generator, device=None
) -> torch.Tensor:
    """``n`` integer training timesteps in [0, T), drawn from ``generator``.

    ``uniform`` (Ho et al. 2020) or ``logit_normal``: t = T sigmoid(z), z ~ N(logit_mean,
    logit_std^2) (Esser et al. 2024; N(0, 1) by default), which spends more of the training on
    the middle noise levels. Drawn here rather than by
    MONAI's ``RFlowScheduler.sample_timesteps`` because that one uses the global RNG, and the
    training loop seeds every step's draws from its own generator (exact resume).
    """
    cfg = _as_config(cfg)
    if cfg.timestep_sampling == "logit_normal":
        z = torch.randn((n,), generator=generator, device=device)
        if (cfg.logit_mean, cfg.logit_std) != (0.0, 1.0):  # else z as drawn: the same bits
            z = z * cfg.logit_std + cfg.logit_mean
        return (torch.sigmoid(z) * cfg.timesteps).long().clamp_(0, cfg.timesteps - 1)
    return torch.randint(0, cfg.timesteps, (n,), generator=generator, device=device)


def signal_left(cfg: ModelConfig | Mapping[str, Any], schedule: str, fraction: float) -> float:
    """alpha-bar_t, the share of the image's variance left, ``fraction`` of the way through the
    ``timesteps`` of ``cfg`` under ``schedule``: ``signal_left(cfg, "linear_beta", 1 / 3)``."""
    cfg = _as_config(cfg)
    ddpm = {**cfg.to_dict(), "schedule": schedule, "process": "ddpm", "loss_weighting": "none"}
    scheduler = build_scheduler(ddpm)
    step = int(cfg.timesteps * fraction + 1e-9)  # 1e-9: 249 * (1 / 3) is 82.999... in floats
    return float(scheduler.alphas_cumprod[step - 1])


def build_inferer(scheduler: nn.Module):
    """A MONAI ``DiffusionInferer``: ``inferer(x0, model, noise, t)`` noises ``x0`` to step ``t``
    (q(x_t | x_0)) and returns the network's prediction; ``inferer.sample(...)`` runs a sampler."""
    from monai.inferers import DiffusionInferer

    return DiffusionInferer(scheduler)


def diffusion_target(
    x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, scheduler: nn.Module
) -> torch.Tensor:
    """What the network should output, by the scheduler's ``prediction_type``.

    ``epsilon``: the noise (Ho et al. 2020, eq. 14); ``v_prediction``: the velocity
    v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x0 (Salimans & Ho 2022); ``sample``: x0.
    Rectified flow: the constant velocity x0 - noise of the straight path (Liu et al. 2023).
    """
    if is_flow(scheduler):
        return x0 - noise
    kind = scheduler.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    if kind == "sample":
        return x0
    raise ConfigError(
        f"parameter 'prediction_type' must be epsilon, v_prediction or sample; got {kind!r}",
        parameter="prediction_type",
    )


def loss_weights(
    timesteps: torch.Tensor, scheduler: nn.Module, weighting: str = "none", gamma: float = 5.0
) -> torch.Tensor | None:
    """Per-sample loss weights ``(B,)`` for ``weighting``, or ``None`` for ``none``.

    ``min_snr`` (Hang et al. 2023): min(SNR_t, gamma) / SNR_t for an epsilon target,
    min(SNR_t, gamma) / (SNR_t + 1) for a velocity target and min(SNR_t, gamma) for x0, with
    SNR_t = alpha-bar_t / (1 - alpha-bar_t); it keeps the many easy low-noise steps from
    dominating the gradient. Hand-written: MONAI has no loss weighting for diffusion models.
    """
    if weighting == "none":
        return None
    if weighting != "min_snr":
        raise ConfigError(
            f"parameter 'loss_weighting' must be none or min_snr; got {weighting!r}",
            parameter="loss_weighting",
        )
    if is_flow(scheduler):
        raise ConfigError(
            "parameter 'loss_weighting' min_snr needs the ddpm process; use none with rflow",
            parameter="loss_weighting",
        )
    abar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].double()
    snr = abar / (1.0 - abar).clamp_min(1e-12)
    clipped = snr.clamp(max=gamma)
    kind = scheduler.prediction_type
    if kind == "epsilon":
        w = clipped / snr.clamp_min(1e-12)
    elif kind == "v_prediction":
        w = clipped / (snr + 1.0)
    else:
        w = clipped
    return w.float()


def diffusion_loss(
    prediction: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: nn.Module,
    loss: str = "l1",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The simplified DDPM training loss, mean over the batch and pixels (a scalar, fp32).

    Parameters
    ----------
    prediction : Tensor
        Network output ``(B, 1, *spatial)`` (any float dtype; compared in fp32).
    x0, noise : Tensor
        Clean images ``(B, 1, *spatial)`` in [-1, 1] and the Gaussian noise that was added.
    timesteps : Tensor
        ``(B,)`` integer steps in [0, T).
    scheduler : monai Scheduler
        Its ``prediction_type`` picks the target (:func:`diffusion_target`).
    loss : {"l1", "l2"}
        Mean absolute error (the authors' choice) or mean squared error (Ho et al. 2020).
    weights : Tensor, optional
        ``(B,)`` per-sample weights (:func:`loss_weights`); the loss is then the mean over the
        batch of each sample's weighted mean error.
    """
    target = diffusion_target(x0, noise, timesteps, scheduler).float()
    prediction = prediction.float()
    if loss not in ("l1", "l2"):
        raise ConfigError(f"parameter 'loss' must be l1 or l2; got {loss!r}", parameter="loss")
    fn = nn.functional.l1_loss if loss == "l1" else nn.functional.mse_loss
    if weights is None:
        return fn(prediction, target)
    per_sample = fn(prediction, target, reduction="none").flatten(1).mean(1)
    return (per_sample * weights.to(per_sample)).mean()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def estimate_train_flops(cfg: ModelConfig | Mapping[str, Any], batch_size: int = 1) -> int:
    """FLOPs of one forward + backward pass of the UNet on ``batch_size`` images.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the ``meta`` device (no memory,
    no arithmetic): convolutions, matrix products and attention, each multiply-add counted as 2
    FLOPs. Normalisation, activations and the optimiser update are not counted (they are a few
    per cent of the total and memory-bound). A training step with gradient accumulation ``k``
    costs ``k`` times this for the per-step batch.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cfg = _as_config(cfg)
    if batch_size <= 0:
        raise ConfigError(
            f"estimate_train_flops(): argument batch_size must be >= 1; got {batch_size}"
        )
    with torch.device("meta"):
        model = build_model(cfg)
        x = torch.zeros((batch_size, 1) + (cfg.image_size,) * cfg.spatial_dims)
        t = torch.zeros((batch_size,), dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x, t).sum().backward()
    return int(counter.get_total_flops())


def model_summary(
    cfg: ModelConfig | Mapping[str, Any], batch_size: int = 1, grad_accum: int = 1
) -> dict[str, Any]:
    """Parameters and estimated training cost of ``cfg`` (for the notebook and the log).

    Returns a dict with ``parameters``, ``input_shape``, ``flops_per_image`` (forward + backward)
    and ``flops_per_step`` (``batch_size * grad_accum`` images).
    """
    cfg = _as_config(cfg)
    with torch.device("meta"):
        n_params = count_parameters(build_model(cfg))
    per_image = estimate_train_flops(cfg, 1)
    return {
        "parameters": n_params,
        "input_shape": (1,) + (cfg.image_size,) * cfg.spatial_dims,
        "levels": len(cfg.channels),
        "flops_per_image": per_image,
        "flops_per_step": per_image * batch_size * grad_accum,
    }


def summary_table(params: Params):
    """The model of ``params`` in one table: input, levels, parameters and training cost.

    Returns a one-column ``pandas.DataFrame`` (for notebook 03 and the log).
    """
    import pandas as pd

    summary = model_summary(
        params.stage(ModelConfig), batch_size=params.batch_size, grad_accum=params.grad_accum
    )
    return pd.Series(
        {
            "input (channels, *spatial)": summary["input_shape"],
            "UNet levels": summary["levels"],
            "parameters": f"{summary['parameters'] / 1e6:.2f} M",
            "GFLOP per image (forward + backward)": round(summary["flops_per_image"] / 1e9, 2),
            "GFLOP per optimiser step (one process)": round(summary["flops_per_step"] / 1e9, 1),
            "per-process batch x accumulation": f"{params.batch_size} x {params.grad_accum}",
        },
        name="model",
    ).to_frame()


def load_ema_model(
    params_or_train_dir: Params | str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelConfig, Path]:
    """The EMA weights of the latest checkpoint in a UNet, ready for sampling.

    ``params_or_train_dir`` is found and checked as :func:`neurodiff.checkpoints.load_ema_state`
    does it (``Params``: the checkpoint must match their model configuration). The model goes to
    ``device`` in ``eval()`` mode. Returns ``(model, model_config, checkpoint_path)``; raises
    :class:`~neurodiff.errors.CheckpointError` for a missing, corrupt or foreign checkpoint, or
    EMA weights that do not fit the network.
    """
    state, cfg, path = load_ema_state(params_or_train_dir)
    model = build_model(cfg, flash_attention=torch.device(device).type == "cuda")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: the EMA weights do not fit the model "
            f"({str(exc).splitlines()[0]})",
            path=path,
        ) from None
    return model.to(device).eval(), cfg, path
