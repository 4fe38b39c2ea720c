"""Figures of chapter 3 (training). Each function takes data and returns a Figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ..config import ModelConfig
from ..model import build_scheduler
from ._base import figure, show

__all__ = [
    "plot_denoising_error",
    "plot_forward_process",
    "plot_loss_curve",
    "plot_noise_schedules",
    "plot_previews",
]

_SCHEDULE_LABELS = {
    "linear_beta": "linear",
    "scaled_linear_beta": "scaled linear",
    "cosine": "cosine",
}


def _model_config(model_config: ModelConfig | None, **changes: Any) -> ModelConfig:
    base = (model_config or ModelConfig()).to_dict()
    base.update(changes)
    return ModelConfig.from_params(base)  # type: ignore[return-value]


def plot_noise_schedules(
    timesteps: int = 250, schedules: Sequence[str] = ("linear_beta", "cosine")
) -> Figure:
    """alpha-bar_t (the fraction of the clean image's variance left at step t) and the signal-to-
    noise ratio alpha-bar_t / (1 - alpha-bar_t) of each schedule, for ``timesteps`` steps."""
    fig = figure(figsize=(9, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    t = np.arange(timesteps)
    for name in schedules:
        cfg = _model_config(
            None, timesteps=timesteps, schedule=name, process="ddpm", loss_weighting="none"
        )
        sched = build_scheduler(cfg)
        abar = sched.alphas_cumprod.double().numpy()
        label = _SCHEDULE_LABELS.get(name, name)
        ax1.plot(t, abar, label=label)
        ax2.plot(t, np.log10(abar / np.clip(1 - abar, 1e-12, None)), label=label)
    ax1.set(
        xlabel="timestep t",
        ylabel=r"$\bar\alpha_t$",
        title=r"signal kept: $\bar\alpha_t$",
        ylim=(-0.02, 1.02),
    )
    ax2.set(
        xlabel="timestep t",
        ylabel=r"$\log_{10}$ SNR",
        title=r"SNR $= \bar\alpha_t / (1-\bar\alpha_t)$",
    )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    return fig


def plot_forward_process(
    image: np.ndarray | torch.Tensor,
    model_config: ModelConfig | None = None,
    fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
    seed: int = 0,
) -> Figure:
    """One clean image x_0 noised by the forward process q(x_t | x_0) at several t.

    ``image`` is ``(1, H, W)`` (or ``(1, X, Y, Z)``, shown by its central axial slice) in
    [-1, 1]; ``fractions`` of T - 1 give the steps shown. The same noise is used at every t, so
    the panels differ only by how much of it is mixed in. A rectified-flow model mixes along a
    straight line, x_t = (1 - t/T) x_0 + (t/T) eps; the titles then give the image's share.
    """
    cfg = model_config or ModelConfig()
    sched = build_scheduler(cfg)
    flow = cfg.process == "rflow"
    x0 = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen)
    steps = [int(round(f * (cfg.timesteps - 1))) for f in fractions]
    fig = figure(figsize=(2.0 * len(steps), 2.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(steps)))
    for ax, t in zip(axes, steps):
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps  (Ho et al. 2020, eq. 4); flow: a line
        xt = sched.add_noise(x0, noise, torch.tensor([t]))[0]
        show(ax, xt, -1.0, 1.0)
        if flow:
            label = f"image share {1 - t / cfg.timesteps:.2f}"
        else:
            label = r"$\bar\alpha_t$" + f" = {float(sched.alphas_cumprod[t]):.2f}"
        ax.set_title(f"t = {t}\n" + label, fontsize=9)
        ax.set_axis_off()
    return fig


def plot_loss_curve(loss: Any, window: int | None = None) -> Figure:
    """Training loss per step (raw, faint) and smoothed (running mean), with the learning rate.

    ``loss`` is the DataFrame of :func:`neurodiff.artifacts.read_loss_log` (columns step, loss, lr).
    ``window`` defaults to ~2 % of the steps (at least 5).
    """
    steps = np.asarray(loss["step"], dtype=float)
    values = np.asarray(loss["loss"], dtype=float)
    window = window or max(5, len(values) // 50)
    fig = figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, values, color="C0", alpha=0.3, lw=0.8, label="loss per step")
    if len(values) >= window:
        kernel = np.ones(window) / window
        smooth = np.convolve(values, kernel, mode="valid")
        ax.plot(steps[window - 1 :], smooth, color="C0", lw=2, label=f"running mean ({window})")
    ax.set(xlabel="optimiser step", ylabel="training loss")
    if len(values) and np.all(values > 0) and values.max() > 5 * values.min():
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if "lr" in loss:
        ax2 = ax.twinx()
        ax2.plot(
            steps,
            np.asarray(loss["lr"], dtype=float),
            color="C1",
            ls="--",
            lw=1,
            label="learning rate",
        )
        ax2.set_ylabel("learning rate", color="C1")
        ax2.tick_params(axis="y", colors="C1")
        lines = ax.get_lines() + ax2.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], frameon=False, loc="upper right")
    else:
        ax.legend(frameon=False)
    return fig


def plot_previews(previews: Sequence[tuple[int, np.ndarray]], max_panels: int = 4) -> Figure:
    """The preview grids saved during training, oldest to newest.

    ``previews`` are ``(step, image)`` pairs as :func:`neurodiff.artifacts.preview_images` reads
    them. Up to ``max_panels`` grids are drawn, evenly spaced over training, the last one always
    included.
    """
    previews = list(previews)
    fig = figure(figsize=(3.2 * max(1, min(max_panels, len(previews))), 3.5), layout="constrained")
    if not previews:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no previews (preview_every = 0?)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    if len(previews) > max_panels:
        idx = np.unique(np.linspace(0, len(previews) - 1, max_panels).round().astype(int))
        previews = [previews[i] for i in idx]
    axes = np.atleast_1d(fig.subplots(1, len(previews)))
    for ax, (step, image) in zip(axes, previews, strict=True):
        ax.imshow(image, cmap="gray")
        ax.set_title(f"step {step}", fontsize=10)
        ax.set_axis_off()
    return fig


def plot_denoising_error(curves: dict[str, Any]) -> Figure:
    """Error of the implied clean image against the noise level, one line per model.

    ``curves`` maps a label to a DataFrame of :func:`neurodiff.train.denoising_error`. The x axis
    is log10 SNR: pure noise on the left, nearly clean images on the right; the grey line is the
    error of returning the noisy input unchanged (no model), which every model should beat. A
    model whose line meets the grey one on the right leaves the last, fine-detail steps of
    sampling undone: noisy, speckled images.
    """
    fig = figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    first = None
    for label, df in curves.items():
        ax.plot(df["log10_snr"], df["mse_x0"], marker="o", ms=3, label=label)
        first = df if first is None else first
    if first is not None:
        ax.plot(
            first["log10_snr"], first["mse_identity"], color="0.6", ls="--", label="noisy input"
        )
    ax.set_yscale("log")
    ax.set(
        xlabel="noise level: log10 signal-to-noise ratio (noisier to the left)",
        ylabel="mean squared error of the clean image",
    )
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=9)
    return fig
