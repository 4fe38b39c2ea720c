"""Where a trained model goes wrong: its denoising error at each noise level.

A diffusion (or flow) model is a denoiser at every noise level; sampling chains them from pure
noise to a clean image. :func:`denoising_error` noises real held-out images to a grid of levels
and measures how far the model's implied clean image is from the truth, for any objective
(epsilon, v, x0 prediction or rectified-flow velocity), against the signal-to-noise ratio
SNR = signal variance / noise variance of that level. A model that is good at high noise but
poor at low noise makes images with the right layout and salt-and-pepper texture -- the failure
the default report's first synthetic brains showed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import ModelConfig
from ..errors import DataError
from ..model import build_scheduler, is_flow

__all__ = ["denoising_error", "denoising_reading", "implied_x0", "noise_levels"]


def noise_levels(cfg: ModelConfig, n_levels: int = 16) -> np.ndarray:
    """``n_levels`` integer timesteps spread over [1, T - 1] (log-spaced in SNR roughly)."""
    return np.unique(np.linspace(1, cfg.timesteps - 1, n_levels).round().astype(int))


def _snr(scheduler, t: int) -> float:
    if is_flow(scheduler):
        s = t / scheduler.num_train_timesteps
        return float(((1.0 - s) / s) ** 2)
    abar = float(scheduler.alphas_cumprod[t])
    return abar / max(1.0 - abar, 1e-12)


def implied_x0(output: torch.Tensor, x_t: torch.Tensor, t: int, scheduler) -> torch.Tensor:
    """The clean image a network output implies at step ``t`` (any objective)."""
    if is_flow(scheduler):
        return x_t + output * (t / scheduler.num_train_timesteps)
    abar = scheduler.alphas_cumprod[t].to(x_t)
    kind = scheduler.prediction_type
    if kind == "epsilon":
        return (x_t - (1 - abar).sqrt() * output) / abar.sqrt()
    if kind == "v_prediction":
        return abar.sqrt() * x_t - (1 - abar).sqrt() * output
    return output


@torch.inference_mode()
def denoising_error(
    model: torch.nn.Module,
    cfg: ModelConfig,
    images: Any,
    *,
    n_levels: int = 16,
    max_images: int = 64,
    seed: int = 0,
    device: Any = "cpu",
) -> pd.DataFrame:
    """Mean squared error of the implied clean image at each noise level.

    Parameters
    ----------
    images : array
        Real images in the model's range [-1, 1], ``(N, 1, *spatial)`` (e.g. the test split);
        the first ``max_images`` are used, each noised with seeded Gaussian noise.

    Returns
    -------
    pandas.DataFrame
        One row per level: ``t``, ``snr``, ``log10_snr``, ``mse_x0`` (clamped to [-1, 1] as the
        samplers do) and ``mse_identity`` (the error of simply returning the noisy input: the
        level's difficulty before any model).
    """
    x0 = torch.as_tensor(np.asarray(images, dtype=np.float32)[:max_images], device=device)
    if x0.ndim != 2 + cfg.spatial_dims or x0.shape[1] != 1:
        raise DataError(
            f"denoising_error(): images must be (N, 1{', S' * cfg.spatial_dims}); got "
            f"{tuple(x0.shape)}"
        )
    scheduler = build_scheduler(cfg)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen, device=device)
    model = model.to(device).eval()
    rows = []
    for t in noise_levels(cfg, n_levels):
        ts = torch.full((len(x0),), int(t), device=device, dtype=torch.long)
        x_t = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=ts)
        out = model(x_t, timesteps=ts).float()
        x0_hat = implied_x0(out, x_t, int(t), scheduler).clamp(-1, 1)
        snr = _snr(scheduler, int(t))
        rows.append(
            {
                "t": int(t),
                "snr": snr,
                "log10_snr": float(np.log10(max(snr, 1e-12))),
                "mse_x0": float(((x0_hat - x0) ** 2).mean()),
                "mse_identity": float(((x_t.clamp(-1, 1) - x0) ** 2).mean()),
            }
        )
    return pd.DataFrame(rows)


def denoising_reading(curves: dict[str, pd.DataFrame]) -> str:
    """Chapter 3's reading of several :func:`denoising_error` curves (Markdown): the error at
    the noisiest and the cleanest level of each."""
    return (
        "At the noisiest level the error of the clean-image estimate is "
        + ", ".join(f"{float(v['mse_x0'].iloc[0]):.3g} ({k})" for k, v in curves.items())
        + "; at the cleanest, "
        + ", ".join(f"{float(v['mse_x0'].iloc[-1]):.2g} ({k})" for k, v in curves.items())
        + ". An epsilon-predicting model estimates the clean image by dividing by the square"
        " root of alpha-bar_t, nearly zero at the noisy end of the cosine schedule (chapter 4"
        " shows what that does to DDIM's backgrounds); a velocity model does not divide."
    )
