"""Stage 4: a synthetic cohort from the trained model's EMA weights, written as NIfTI.

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

Everything is seeded by one :class:`torch.Generator` (the initial noise and every DDPM/DDIM noise
draw), so the same seed, batch size and device give identical samples. On CUDA the network runs
under bf16 autocast (``precision=auto``); the sample itself is kept in fp32.

``neurodiff sample --profile P [-p sampler=ddim -p steps=50 -p n_samples=64]`` calls :func:`run`,
which writes ``<derived_dir>/<profile>/synthetic/`` (see CONTRIBUTING.md), readable by
:func:`load_synthetic` and by :func:`neurodiff.data.load_cohort` like any real cohort.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import ModelConfig, Params, SampleConfig
from .device import autocast, resolve_device, resolve_precision
from .errors import ConfigError, DataError

__all__ = [
    "SAMPLERS",
    "ReverseProcess",
    "SampleResult",
    "check_sampler_args",
    "default_table_rows",
    "generate",
    "load_synthetic",
    "make_scheduler",
    "provenance",
    "reverse_process",
    "run",
    "sampler_table",
    "to_unit_range",
    "write_synthetic",
]

log = logging.getLogger(__name__)

SAMPLERS = ("ddpm", "ddim", "pndm")

#: DDIM step counts of the sampler table (only those <= T are used) and PNDM's.
TABLE_DDIM_STEPS = (250, 100, 50, 20, 10)
TABLE_PNDM_STEPS = (50, 20)

#: ``callback(step_index, t, x_t, x0_pred)`` of :func:`generate`: ``x_t`` is the batch entering
#: timestep ``t`` (before the update), ``x0_pred`` the scheduler's prediction of the clean image
#: from it (``None`` for PNDM).
StepCallback = Callable[[int, int, torch.Tensor, "torch.Tensor | None"], None]


# --------------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------------


def _ddim_class():
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
            if self.clip_sample:
                pred_original_sample = torch.clamp(pred_original_sample, *self.clip_sample_values)
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


def check_sampler_args(
    model_config: ModelConfig, sampler: str, steps: int | None, eta: float = 0.0
) -> int:
    """Validate a sampler request against the model; return the number of network evaluations.

    Raises
    ------
    ConfigError
        Unknown sampler; ``steps`` <= 0 or > T for ddim/pndm; ``eta`` outside [0, 1];
        pndm with a non-epsilon ``prediction_type``.
    """
    T = model_config.timesteps
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"parameter 'sampler' must be one of {list(SAMPLERS)}; got {sampler!r}",
            parameter="sampler",
        )
    if not 0.0 <= float(eta) <= 1.0:
        raise ConfigError(f"parameter 'eta' must be in [0, 1]; got {eta!r}", parameter="eta")
    if sampler == "ddpm":
        return T
    if steps is None or isinstance(steps, bool) or int(steps) != steps or steps <= 0:
        raise ConfigError(
            f"parameter 'steps' must be a positive integer for sampler {sampler!r}; got {steps!r}",
            parameter="steps",
        )
    if steps > T:
        raise ConfigError(
            f"parameter 'steps' ({steps}) must be <= the model's timesteps T = {T} "
            f"for sampler {sampler!r}: it can only skip timesteps, not add them",
            parameter="steps",
        )
    if sampler == "pndm" and model_config.prediction_type != "epsilon":
        raise ConfigError(
            f"sampler 'pndm' needs an epsilon-prediction model; this model has "
            f"prediction_type={model_config.prediction_type!r} (use sampler=ddim "
            "or ddpm)",
            parameter="sampler",
        )
    return int(steps)


def make_scheduler(model_config: ModelConfig, sampler: str = "ddim", steps: int | None = 50):
    """The MONAI scheduler for ``sampler`` with the training noise schedule, timesteps set.

    DDPM and PNDM come from :func:`neurodiff.model.build_scheduler` (the schedule training used);
    DDIM is MONAI's ``DDIMScheduler`` built with the same arguments, with the previous-timestep
    fix described in :func:`_ddim_class`. ``ddpm`` always uses all ``T`` timesteps (MONAI's DDPM
    step goes from ``t`` to ``t - 1``); ``steps`` is then ignored.
    """
    from .model import build_scheduler, schedule_args

    n_evals = check_sampler_args(model_config, sampler, steps)
    if sampler == "ddim":
        sched = _ddim_class()(
            num_train_timesteps=model_config.timesteps,
            schedule=model_config.schedule,
            prediction_type=model_config.prediction_type,
            clip_sample=True,
            **schedule_args(model_config),
        )
    else:
        sched = build_scheduler(model_config, sampler)
    sched.set_timesteps(n_evals)
    return sched


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _step(
    scheduler,
    sampler: str,
    output: torch.Tensor,
    t: int,
    x: torch.Tensor,
    eta: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if sampler == "ddpm":
        return scheduler.step(output, t, x, generator=generator)
    if sampler == "ddim":
        return scheduler.step(output, t, x, eta=eta, generator=generator)
    return scheduler.step(output, t, x)


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    model_config: ModelConfig,
    n: int,
    *,
    sampler: str = "ddim",
    steps: int | None = 50,
    eta: float = 0.0,
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
    sampler : {'ddpm', 'ddim', 'pndm'}
    steps : int, optional
        Network evaluations for ddim/pndm, 1..T; ignored for ddpm (always T).
    eta : float
        DDIM noise scale in [0, 1] (0 = deterministic, 1 = DDPM-like posterior variance).
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

    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(
            f"parameter 'n_samples' must be a positive integer; got {n!r}", parameter="n_samples"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(
            f"parameter 'sample_batch_size' must be a positive integer; got {batch_size!r}",
            parameter="sample_batch_size",
        )
    scheduler = make_scheduler(model_config, sampler, steps)
    if sampler == "ddpm" and steps not in (None, model_config.timesteps):
        log.info("ddpm uses all T = %d timesteps (steps=%s ignored)", model_config.timesteps, steps)
    if device is None:
        device = next(model.parameters()).device
    elif not isinstance(device, torch.device):
        device = resolve_device(str(device))
    dtype = resolve_precision(precision, device)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    model = model.to(device).eval()
    shape = (1,) + (model_config.image_size,) * model_config.spatial_dims
    timesteps = [int(t) for t in scheduler.timesteps]
    n_batches = math.ceil(n / batch_size)
    log.info(
        "sampling %d x %s with %s (%d network evaluations each) on %s, batch size %d, %s",
        n,
        shape,
        sampler,
        len(timesteps),
        device,
        batch_size,
        "bf16 autocast" if dtype is not None else "fp32",
    )
    out = torch.empty((n, *shape), dtype=torch.float32)
    bar = tqdm(
        total=n_batches * len(timesteps),
        desc=f"{sampler}-{len(timesteps)}",
        unit="eval",
        disable=not progress,
        leave=False,
    )
    try:
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            if sampler == "pndm":
                scheduler.set_timesteps(len(timesteps))  # PNDM keeps a history per chain: reset
            x = torch.randn((m, *shape), generator=generator, device=device, dtype=torch.float32)
            for i, t in enumerate(timesteps):
                t_batch = torch.full((m,), t, device=device, dtype=torch.long)
                with autocast(device, dtype):
                    output = model(x, timesteps=t_batch)
                x_next, x0 = _step(scheduler, sampler, output.float(), t, x, eta, generator)
                if callback is not None:
                    callback(i, t, x, x0)
                x = x_next
                bar.update(1)
            out[start : start + m] = x.clamp(-1.0, 1.0).float().cpu()
    finally:
        bar.close()
    return out


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
        raise ConfigError(f"n_snapshots must be >= 1; got {n_snapshots}", parameter="n_snapshots")
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


def to_unit_range(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Model range [-1, 1] -> image range [0, 1] (float32, clipped)."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return np.clip((a.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The synthetic dataset on disk
# --------------------------------------------------------------------------------------------


def _geometry(params: Params) -> tuple[np.ndarray, float, str]:
    """Voxel-to-world affine (4 x 4, RAS mm) and voxel size of the synthetic images.

    3D: the grid of the preprocessed volumes (the template grid after registration). Without
    registration every preprocessed volume keeps its own head-centred affine, so there is no
    common grid; the synthetic volumes then get an RAS grid at the volume spacing centred on the
    MNI152 brain (:func:`neurodiff.preprocess.target_affine`). 2D: the same grid, moved to the
    middle of the axial slices the model was trained on, one slice thick.
    """
    from .preprocess import load_manifest, target_affine

    target = load_manifest(params)["target"]
    spacing = float(target["volume_spacing_mm"])
    if target.get("volume_affine") is not None:
        affine = np.asarray(target["volume_affine"], dtype=np.float64)
        source = f"{target['space']}: grid of the preprocessed volumes"
    else:
        affine = target_affine(spacing, params.image_size)
        source = (
            f"{target['space']}: no common grid; RAS grid at the volume spacing centred "
            "on the MNI152 brain"
        )
    if params.spatial_dims == 2:
        k = float(np.mean(target["slices"])) if target.get("slices") else params.image_size / 2
        shift = np.eye(4)
        shift[2, 3] = k
        affine = affine @ shift
        source += f"; axial slice at voxel z = {k:g}"
    return affine, spacing, source


def write_synthetic(
    out_dir: str | Path,
    images: np.ndarray,
    *,
    affine: np.ndarray,
    generated_by: dict[str, Any],
    grid_png: bool = True,
    name: str = "neurodiff synthetic cohort",
) -> Path:
    """Write images as a BIDS-like synthetic cohort, atomically (the folder appears complete or
    not at all).

    Parameters
    ----------
    out_dir : path
        The folder to (re)create.
    images : np.ndarray
        ``(N, 1, H, W)`` or ``(N, 1, D, H, W)`` float32 in [0, 1].
    affine : np.ndarray
        4 x 4 voxel-to-world (RAS mm) affine of the volume grid (3D) or of the slice (2D); it
        carries the voxel size (2D: in-plane spacing and slice thickness).
    generated_by : dict
        Provenance merged into ``dataset_description.json``'s ``GeneratedBy`` entry.
    """
    import nibabel as nib
    import pandas as pd

    from .io import atomic_dir

    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (4, 5) or images.shape[1] != 1:
        raise DataError(
            f"synthetic images must be (N, 1, H, W) or (N, 1, D, H, W); got shape {images.shape}"
        )
    spatial_dims = images.ndim - 2
    width = max(4, len(str(len(images))))
    ids = [f"sub-synth{i + 1:0{width}d}" for i in range(len(images))]
    affine = np.asarray(affine, dtype=np.float64)
    with atomic_dir(out_dir) as tmp:
        for pid, img in zip(ids, images):
            data = img[0] if spatial_dims == 3 else img[0][:, :, None]  # 2D slice -> (H, W, 1)
            nii = nib.Nifti1Image(data, affine)
            nii.header.set_xyzt_units("mm")
            nii.header["descrip"] = b"neurodiff synthetic"
            anat = tmp / pid / "anat"
            anat.mkdir(parents=True)
            nib.save(nii, anat / f"{pid}_T1w.nii.gz")
        table = pd.DataFrame(
            {"participant_id": ids, "site": "synthetic", "sample_index": np.arange(len(ids))}
        )
        table.to_csv(tmp / "participants.tsv", sep="\t", index=False)
        description = {
            "Name": name,
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {
                    "Name": "neurodiff",
                    "Version": __version__,
                    "Description": "samples of a denoising diffusion model",
                    "SpatialDims": spatial_dims,
                    **generated_by,
                }
            ],
        }
        (tmp / "dataset_description.json").write_text(
            json.dumps(description, indent=2, default=str) + "\n"
        )
        if grid_png:
            from .sample_plots import save_grid

            save_grid(images, tmp / "grid.png")
    return Path(out_dir)


def _synthetic_dir(params_or_dir: Params | str | Path) -> Path:
    if isinstance(params_or_dir, Params):
        return params_or_dir.stage_dir("synthetic")
    return Path(params_or_dir)


def provenance(out_dir: str | Path) -> dict[str, Any]:
    """The ``GeneratedBy`` record of a synthetic cohort (checkpoint hash, sampler, steps, eta,
    seed, parameters hash ...), without the long model configuration."""
    path = Path(out_dir) / "dataset_description.json"
    generated_by = json.loads(path.read_text())["GeneratedBy"][0]
    return {k: v for k, v in generated_by.items() if k != "ModelConfig"}


def load_synthetic(params_or_dir: Params | str | Path) -> np.ndarray:
    """Read a synthetic cohort written by :func:`run`.

    Returns
    -------
    np.ndarray
        ``(N, 1, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D) float32 in [0, 1], in participant order.
    """
    import nibabel as nib

    root = _synthetic_dir(params_or_dir)
    desc_path = root / "dataset_description.json"
    if not desc_path.is_file():
        raise DataError(
            f"no synthetic cohort in {root} (dataset_description.json missing); run "
            "`neurodiff sample --profile <profile>` first",
            path=root,
        )
    try:
        spatial_dims = int(json.loads(desc_path.read_text())["GeneratedBy"][0]["SpatialDims"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise DataError(
            f"{desc_path} is not a neurodiff synthetic dataset description "
            "(GeneratedBy[0].SpatialDims missing)",
            path=desc_path,
        ) from None
    files = sorted(root.glob("sub-*/anat/sub-*_T1w.nii.gz"))
    if not files:
        raise DataError(f"no sub-*/anat/sub-*_T1w.nii.gz files in {root}", path=root)
    arrays = []
    for f in files:
        data = np.asarray(nib.load(f).dataobj, dtype=np.float32)
        if spatial_dims == 2:
            if data.ndim != 3 or data.shape[2] != 1:
                raise DataError(
                    f"{f}: expected a 2D slice stored as (H, W, 1); got shape {data.shape}", path=f
                )
            data = data[:, :, 0]
        arrays.append(data[None])
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DataError(f"synthetic images in {root} differ in shape: {sorted(shapes)}", path=root)
    return np.stack(arrays)


# --------------------------------------------------------------------------------------------
# Stage entry point
# --------------------------------------------------------------------------------------------


@dataclass
class SampleResult:
    """What :func:`run` produced."""

    out_dir: Path
    n_samples: int
    shape: tuple[int, ...]
    sampler: str
    steps: int
    eta: float
    seed: int
    device: str
    seconds: float
    checkpoint: Path
    checkpoint_step: int | None
    files: list[Path] = field(default_factory=list, repr=False)

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(self.n_samples, 1)

    def __str__(self) -> str:
        eta = f", eta={self.eta:g}" if self.sampler == "ddim" else ""
        step = f" (step {self.checkpoint_step})" if self.checkpoint_step is not None else ""
        return "\n".join(
            [
                f"synthetic cohort: {self.n_samples} images of {'x'.join(map(str, self.shape))} "
                f"in {self.out_dir}",
                f"  sampler {self.sampler}, {self.steps} network evaluations each{eta}, "
                f"seed {self.seed}",
                f"  from EMA weights of {self.checkpoint}{step}",
                f"  {self.seconds:.1f} s on {self.device} "
                f"({self.seconds_per_sample:.2f} s per sample)",
            ]
        )


def _load_model(params: Params, device: torch.device):
    """EMA model of the latest checkpoint; CheckpointError if it is missing, corrupt or was
    trained with other model parameters than ``params`` (the differing fields are named)."""
    from .train import load_ema_model

    return load_ema_model(params, device)


def run(params: Params) -> SampleResult:
    """Generate ``n_samples`` images from the latest checkpoint's EMA weights and write them
    under ``params.stage_dir('synthetic')`` (NIfTI, participants.tsv, dataset_description.json
    with provenance, grid.png)."""
    from .io import file_sha256

    cfg: SampleConfig = params.stage(SampleConfig)
    mcfg: ModelConfig = params.stage(ModelConfig)
    n_evals = check_sampler_args(mcfg, cfg.sampler, cfg.steps, cfg.eta)
    device = resolve_device(cfg.device)
    affine, spacing, geometry_source = _geometry(params)
    model, ckpt_cfg, ckpt_path = _load_model(params, device)
    ckpt_path = Path(ckpt_path)
    t0 = time.perf_counter()
    images = generate(
        model,
        ckpt_cfg,
        cfg.n_samples,
        sampler=cfg.sampler,
        steps=cfg.steps,
        eta=cfg.eta,
        batch_size=cfg.sample_batch_size,
        seed=cfg.seed,
        device=device,
        precision=cfg.precision,
    )
    seconds = time.perf_counter() - t0
    step = _checkpoint_step(ckpt_path)
    generated_by = {
        "Checkpoint": ckpt_path.name,
        "CheckpointStep": step,
        "CheckpointSHA256": file_sha256(ckpt_path),
        "Sampler": cfg.sampler,
        "Steps": n_evals,
        "Eta": cfg.eta if cfg.sampler == "ddim" else None,
        "Seed": cfg.seed,
        "BatchSize": cfg.sample_batch_size,
        "Device": str(device),
        "Precision": "bf16" if resolve_precision(cfg.precision, device) is not None else "fp32",
        "ParametersHash": params.hash(),
        "SampleConfigHash": cfg.hash(),
        "ModelConfig": ckpt_cfg.to_dict(),
        "Profile": params.profile,
        "Geometry": geometry_source,
        "VoxelSizeMM": spacing,
        "IntensityRange": [0.0, 1.0],
        "Seconds": round(seconds, 3),
    }
    out = write_synthetic(
        params.stage_dir("synthetic"),
        to_unit_range(images),
        affine=affine,
        generated_by=generated_by,
        name=f"neurodiff synthetic cohort (profile {params.profile})",
    )
    files = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    return SampleResult(
        out,
        len(files),
        tuple(images.shape[2:]),
        cfg.sampler,
        n_evals,
        cfg.eta,
        cfg.seed,
        str(device),
        seconds,
        ckpt_path,
        step,
        files,
    )


def _checkpoint_step(path: Path) -> int | None:
    stem = path.stem  # step-0001500
    try:
        return int(stem.rsplit("-", 1)[-1])
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Sampler speed/quality table
# --------------------------------------------------------------------------------------------


def default_table_rows(timesteps: int, pndm: bool = True) -> list[tuple[str, int]]:
    """``(sampler, steps)`` rows: DDPM with all T steps, DDIM 250/100/50/20/10 and PNDM 50/20
    (those <= T)."""
    rows = [("ddpm", timesteps)]
    rows += [("ddim", s) for s in TABLE_DDIM_STEPS if s <= timesteps]
    if pndm:
        rows += [("pndm", s) for s in TABLE_PNDM_STEPS if s <= timesteps]
    return rows


def sampler_table(
    model: torch.nn.Module,
    model_config: ModelConfig,
    real: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    n: int = 8,
    rows: Sequence[tuple[str, int]] | None = None,
    eta: float = 0.0,
    batch_size: int = 32,
    seed: int = 0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: bool = False,
):
    """Seconds per sample and a quick quality figure for several samplers, same model and seed.

    Parameters
    ----------
    real : np.ndarray
        Real images ``(M, 1, *spatial)`` in [0, 1] (e.g. the test split mapped to [0, 1]).
    reference : np.ndarray, optional
        Other real images in [0, 1] (e.g. the train split): ``n`` of them give a ``real`` row,
        the same statistics between two real sets, against which the synthetic rows are read.
    n : int
        Samples per row (>= 2), compared with ``n`` real images drawn once (seeded).
    rows : sequence of (sampler, steps), optional
        Default :func:`default_table_rows`.

    Returns
    -------
    pandas.DataFrame
        One row per sampler: ``sampler``, ``steps`` (network evaluations per sample), ``label``,
        ``seconds``, ``seconds_per_sample``, ``mmd_rbf`` (unbiased MMD² with a Gaussian kernel
        on the pixels, :func:`neurodiff.metrics.mmd_rbf`, one bandwidth for every row: the
        median heuristic on the real images) and ``mmd_linear`` (MONAI's linear-kernel MMD², the
        statistic the paper most likely reported, :func:`neurodiff.metrics.mmd_linear`). Both are
        unbiased estimates and can be slightly negative when the sets are alike.
    """
    import pandas as pd

    from .metrics import median_bandwidth, mmd_linear, mmd_rbf

    if n < 2:
        raise ConfigError(
            f"parameter 'sampler_table_samples' must be >= 2 (MMD needs two samples "
            f"per set); got {n}",
            parameter="sampler_table_samples",
        )
    real = np.asarray(real, dtype=np.float32)
    want = (1,) + (model_config.image_size,) * model_config.spatial_dims
    if real.ndim != 2 + model_config.spatial_dims or tuple(real.shape[1:]) != want:
        raise DataError(
            f"real images must have shape (M, {', '.join(map(str, want))}) to match "
            f"the model; got {real.shape}"
        )
    if len(real) < 2:
        raise DataError(f"need at least 2 real images for the MMD; got {len(real)}")
    rows = list(rows) if rows is not None else default_table_rows(model_config.timesteps)
    for sampler, steps in rows:
        check_sampler_args(model_config, sampler, steps, eta)
    rng = np.random.default_rng(seed)
    k = min(n, len(real))
    real_k = real[rng.choice(len(real), k, replace=False)]
    ref_k = None
    if reference is not None and len(reference) >= k:
        ref = np.asarray(reference, dtype=np.float32)
        ref_k = ref[rng.choice(len(ref), k, replace=False)]
    pool = real_k if ref_k is None else np.concatenate([real_k, ref_k])
    flat = pool.reshape(len(pool), -1).astype(np.float64)
    sq = (flat**2).sum(1)[:, None] + (flat**2).sum(1)[None] - 2 * flat @ flat.T
    bandwidth = median_bandwidth(np.maximum(sq, 0.0))

    def quality(images: np.ndarray) -> dict[str, float]:
        return {
            "mmd_rbf": mmd_rbf(
                real_k.reshape(k, -1), images.reshape(len(images), -1), bandwidth=bandwidth
            ).value,
            "mmd_linear": mmd_linear(real_k, images),
        }

    records = []
    if ref_k is not None:
        records.append(
            {
                "sampler": "real",
                "steps": 0,
                "label": "real (reference)",
                "seconds": 0.0,
                "seconds_per_sample": 0.0,
                **quality(ref_k),
            }
        )
    for sampler, steps in rows:
        t0 = time.perf_counter()
        x = generate(
            model,
            model_config,
            k,
            sampler=sampler,
            steps=steps,
            eta=eta,
            batch_size=batch_size,
            seed=seed,
            device=device,
            precision=precision,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        n_evals = check_sampler_args(model_config, sampler, steps, eta)
        records.append(
            {
                "sampler": sampler,
                "steps": n_evals,
                "label": f"{sampler}-{n_evals}",
                "seconds": seconds,
                "seconds_per_sample": seconds / k,
                **quality(to_unit_range(x)),
            }
        )
    table = pd.DataFrame.from_records(records)
    table.attrs["bandwidth"] = bandwidth
    table.attrs["n"] = k
    return table
