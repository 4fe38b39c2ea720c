"""Scheduler steps that MONAI's schedulers lack or get wrong, used by :mod:`neurodiff.sampling`.

- ``ScheduleConsistentDDIM`` (:func:`schedule_consistent_ddim`): MONAI's ``DDIMScheduler`` with
  the previous timestep read from the inference schedule (and a choice of what clipping does);
  :func:`neurodiff.model.build_scheduler` builds it for ``kind="ddim"``, so every DDIM of the
  package (the sampling engine's, the benchmarks') is this one;
- :func:`heun_step`: Heun's second-order step for rectified flow (MONAI's ``RFlowScheduler`` has
  the Euler step only).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["heun_step", "schedule_consistent_ddim"]


@functools.cache
def schedule_consistent_ddim() -> type:
    """The class :class:`ScheduleConsistentDDIM` (built on first use: MONAI is imported lazily,
    so that importing :mod:`neurodiff.sampling` stays cheap)."""
    from monai.networks.schedulers import DDIMScheduler

    class ScheduleConsistentDDIM(DDIMScheduler):
        """MONAI's DDIM, with the previous timestep read from the inference schedule.

        MONAI 1.6 ``DDIMScheduler.set_timesteps`` spaces the timesteps with
        ``linspace(T - 1, 0, steps)``, but ``step`` assumes the uniform stride ``T // steps``.
        When ``steps`` does not divide ``T`` (100 of 250, 20 of 50, ...) every update then lands on
        a noise level other than the one the network is evaluated at next; with an exact
        denoiser of Gaussian data, DDIM-100 at T = 250 gives samples 25 % too wide. The same bug
        is reported for diffusers (huggingface/diffusers#12633, #11347). Only the lookup of the
        previous timestep differs from ``DDIMScheduler.step``; the update is the same
        (Song et al. 2021, eqs. 12 and 16).
        """

        #: What clipping does: "x0" clips the clean-image estimate only (MONAI's default),
        #: "rederive" also recomputes eps from it, "none" clips nothing
        #: (``benchmarks/ddim_background.py`` compares them).
        clip_mode = "x0"

        def previous_timestep(self, timestep: int) -> int:
            ts = self.timesteps.tolist()
            i = ts.index(int(timestep))
            return ts[i + 1] if i + 1 < len(ts) else -1

        def step(self, model_output, timestep, sample, eta=0.0, generator=None):
            prev_timestep = self.previous_timestep(timestep)
            alpha_prod_t = self.alphas_cumprod[timestep]
            alpha_prod_t_prev = (
                self.alphas_cumprod[prev_timestep]
                if prev_timestep >= 0
                else self.final_alpha_cumprod
            )
            beta_prod_t = 1 - alpha_prod_t
            # predicted x_0 and ε from the network output (eq. 12 "predicted x_0")
            if self.prediction_type == "epsilon":
                pred_original_sample = (
                    sample - beta_prod_t**0.5 * model_output
                ) / alpha_prod_t**0.5
                pred_epsilon = model_output
            elif self.prediction_type == "sample":
                pred_original_sample = model_output
                pred_epsilon = (sample - alpha_prod_t**0.5 * model_output) / beta_prod_t**0.5
            else:  # v_prediction
                pred_original_sample = alpha_prod_t**0.5 * sample - beta_prod_t**0.5 * model_output
                pred_epsilon = alpha_prod_t**0.5 * model_output + beta_prod_t**0.5 * sample
            if self.clip_sample and self.clip_mode != "none":
                pred_original_sample = torch.clamp(pred_original_sample, *self.clip_sample_values)
                if self.clip_mode == "rederive":
                    # eps re-derived from the clipped x_0, so that x_s stays on the line through
                    # x_t (diffusers' use_clipped_model_output=True)
                    pred_epsilon = (
                        sample - alpha_prod_t**0.5 * pred_original_sample
                    ) / beta_prod_t**0.5
            # σ_t(η) = η sqrt((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) sqrt(1 − ᾱ_t / ᾱ_{t−1})   (eq. 16)
            std_dev_t = eta * self._get_variance(timestep, prev_timestep) ** 0.5
            # x_{t−1} = sqrt(ᾱ_{t−1}) x̂_0 + sqrt(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t z   (eq. 12)
            direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * pred_epsilon
            pred_prev_sample = alpha_prod_t_prev**0.5 * pred_original_sample + direction
            if eta > 0:
                noise = torch.randn(
                    model_output.shape,
                    dtype=model_output.dtype,
                    generator=generator,
                    device=model_output.device,
                )
                pred_prev_sample = pred_prev_sample + std_dev_t * noise
            return pred_prev_sample, pred_original_sample

    return ScheduleConsistentDDIM


def heun_step(scheduler, evaluate, x, v, x_euler, t: int, t_next: int) -> torch.Tensor:
    """Heun's step of the flow ODE from ``t`` to ``t_next``: the mean of the velocity at the
    start (``v``) and at the Euler end point ``x_euler``. Hand-written: MONAI's ``RFlowScheduler``
    has the Euler step only."""
    v_end = evaluate(x_euler, t_next)
    dt = (t - t_next) / scheduler.num_train_timesteps
    return x + 0.5 * (v + v_end) * dt
