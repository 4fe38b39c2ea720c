"""The stage configurations: one small frozen dataclass per pipeline stage.

Their fields *are* the parameter names of the notebooks' ``parameters`` cells and of the profile
YAML files. Fields shared by several stages come from the mixins of :mod:`.fields`. Defaults are
the ``demo`` profile (the default report on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .augment import AugmentConfig  # chapter 6's parameters, in a module of their own
from .fields import (
    CohortFields,
    DeviceFields,
    GeneratorSeedFields,
    ImageFields,
    PrecisionFields,
    RunFields,
    StageConfig,
    param,
)
from .samplers import SAMPLERS, SAMPLERS_BY_PROCESS  # the sampler rules live in .samplers

__all__ = [
    "SAMPLERS_BY_PROCESS",
    "STAGES",
    "AugmentConfig",
    "CohortConfig",
    "MetricsConfig",
    "ModelConfig",
    "PreprocessConfig",
    "SampleConfig",
    "TrainConfig",
]


@dataclass(frozen=True)
class CohortConfig(CohortFields, RunFields):
    """Where the input cohort lives (notebook 01 and preprocessing)."""


@dataclass(frozen=True)
class PreprocessConfig(ImageFields, CohortFields, RunFields):
    """Reorientation, resampling, optional registration, normalisation, 2D/3D extraction, split."""

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
    skull_strip: str = param(
        "auto", "skull stripping (deepbet); auto: scans with a skull", choices=("auto", "on", "off")
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
        0.5, "registration QC: minimum NCC with the template inside its brain", min=-1, max=1
    )
    qc_min_overlap: float = param(
        0.8, "QC: minimum Dice of brain mask with template's", min=0, max=1
    )
    qc_outlier_z: float = param(
        6.0, "registration QC: flag an NCC this many robust SD below the cohort's median", min=0
    )
    qc_exclude: bool = param(True, "leave out (and list) the subjects QC flags")

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
class ModelConfig(ImageFields):
    """MONAI DiffusionModelUNet + its generative process (DDPM noise schedule or rectified flow)
    + training objective."""

    channels: tuple[int, ...] = param((24, 48, 96), "UNet channels per level", min=1)
    attention_levels: tuple[bool, ...] = param((False, False, False), "self-attention per level")
    num_res_blocks: int = param(1, "residual blocks per level", min=1)
    num_head_channels: int = param(32, "channels per attention head", min=1)
    norm_num_groups: int = param(8, "GroupNorm groups (must divide every channel count)", min=1)
    process: str = param(
        "rflow",
        "generative process: ddpm (Gaussian diffusion with 'schedule' and 'prediction_type') | "
        "rflow (rectified flow: straight noise-to-image paths, velocity target; MONAI "
        "RFlowScheduler; 'schedule' and 'prediction_type' do not apply)",
        choices=("ddpm", "rflow"),
    )
    timesteps: int = param(250, "diffusion steps T", min=1)
    schedule: str = param(
        "cosine", "noise schedule", choices=("linear_beta", "scaled_linear_beta", "cosine")
    )
    prediction_type: str = param(
        "epsilon", "what the network predicts", choices=("epsilon", "v_prediction", "sample")
    )
    loss: str = param("l2", "training loss", choices=("l1", "l2"))
    timestep_sampling: str = param(
        "logit_normal",
        "training timesteps: uniform | logit_normal (more weight on the middle noise levels, "
        "Esser et al. 2024)",
        choices=("uniform", "logit_normal"),
    )
    logit_mean: float = param(
        0.0,
        "logit_normal: mean m of z in t = T sigmoid(z), z ~ N(m, s^2) (m > 0: more training on "
        "the noisy end, where the layout is decided; m < 0: on the clean end, the fine detail)",
    )
    logit_std: float = param(
        1.0,
        "logit_normal: standard deviation s of z (larger: towards both ends, closer to uniform)",
        min=0,
        min_inclusive=False,
    )
    loss_weighting: str = param(
        "none",
        "per-timestep loss weight: none | min_snr (min(SNR, snr_gamma) relative to the target, "
        "Hang et al. 2023; ddpm only)",
        choices=("none", "min_snr"),
    )
    snr_gamma: float = param(5.0, "gamma of loss_weighting=min_snr", min=0, min_inclusive=False)
    groups: tuple[str, ...] = param(
        ("control", "patient"),
        "class-conditional generator: the cohort's 'group' values it is conditioned on, in order "
        "(MONAI num_class_embeds; [] = unconditional, as the authors' model; unset: read from "
        "the cohort, [] when its table has fewer than two groups, e.g. a healthy-only cohort)",
    )
    label_dropout: float = param(
        0.1,
        "share of training images whose class is replaced by 'no class', so that the same "
        "network also learns the unconditional model (classifier-free guidance, Ho & Salimans "
        "2022); used with groups only",
        min=0,
        max=1,
    )

    def validate(self) -> None:
        if len(set(self.groups)) != len(self.groups) or any(not g for g in self.groups):
            raise ConfigError(
                f"parameter 'groups' must list distinct, non-empty group names; got "
                f"{list(self.groups)}",
                parameter="groups",
            )
        for name, default in (("schedule", "cosine"), ("prediction_type", "epsilon")):
            if self.process == "rflow" and getattr(self, name) != default:
                raise ConfigError(
                    f"parameter {name!r} ({getattr(self, name)!r}) has no effect with "
                    "process='rflow' (a straight noise-to-image path, velocity target); leave it "
                    f"at {default!r} or use process='ddpm'",
                    parameter=name,
                )
        if self.timestep_sampling != "logit_normal" and (self.logit_mean, self.logit_std) != (
            0.0,
            1.0,
        ):
            raise ConfigError(
                f"parameters 'logit_mean' ({self.logit_mean:g}) and 'logit_std' "
                f"({self.logit_std:g}) shape timestep_sampling=logit_normal; with "
                f"timestep_sampling={self.timestep_sampling!r} leave them at 0 and 1",
                parameter="logit_mean" if self.logit_mean != 0.0 else "logit_std",
            )
        if self.process == "rflow" and self.loss_weighting != "none":
            raise ConfigError(
                f"parameter 'loss_weighting' ({self.loss_weighting!r}) is defined for the ddpm "
                "process (it weights by the noise schedule's SNR); use loss_weighting=none with "
                "process=rflow",
                parameter="loss_weighting",
            )
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
class TrainConfig(PrecisionFields, DeviceFields, GeneratorSeedFields):
    """Optimisation, EMA, precision, checkpoints."""

    optimizer: str = param("adamw", "optimiser", choices=("adam", "adamw"))
    lr: float = param(1e-3, "peak learning rate", min=0, min_inclusive=False)
    weight_decay: float = param(0.0, "AdamW weight decay", min=0)
    lr_schedule: str = param("cosine", "after warm-up", choices=("cosine", "constant"))
    warmup_steps: int = param(100, "linear LR warm-up steps", min=0)
    batch_size: int = param(
        8, "per-process batch size (effective batch = batch_size x processes x grad_accum)", min=1
    )
    grad_accum: int = param(1, "gradient accumulation steps", min=1)
    train_steps: int = param(1929, "optimiser steps", min=1)
    train_subjects: int = param(
        0,
        "train on N training subjects only, drawn with the seed evenly across the groups (equal "
        "shares) and, within each, across sites (0 = all): the data-scarcity experiment",
        min=0,
    )
    grad_clip: float = param(1.0, "max gradient norm (0 = off)", min=0)
    ema_decay: float = param(0.995, "EMA decay of the weights used for sampling", min=0, max=1)
    ema_start: int = param(0, "first step that updates the EMA", min=0)
    ema_every: int = param(1, "EMA update interval (steps)", min=1)
    ema_warmup: bool = param(
        False,
        "EMA warm-up: decay min(ema_decay, (1 + n) / (10 + n)) at the n-th update, so that a "
        "short run's EMA is not dominated by its first, untrained weights",
    )
    train_augment: str = param(
        "none",
        "training-time augmentation that keeps anatomy: none | mild (each training image, "
        "independently: an elastic deformation of about a voxel, rotation up to 3 degrees, "
        "scaling up to 3 %, contrast gamma 0.9-1.1; MONAI transforms seeded per step)",
        choices=("none", "mild"),
    )
    compile: bool = param(False, "torch.compile the UNet")
    channels_last: bool = param(False, "channels_last memory format (channels_last_3d for volumes)")
    flash_attention: str = param(
        "auto",
        "attention through torch's scaled_dot_product_attention (fused kernels): auto = on CUDA "
        "only (slower than MONAI's plain attention on CPUs) | on | off; same weights either way",
        choices=("auto", "on", "off"),
        shapes=False,
    )
    fused_optimizer: bool = param(
        True,
        "one fused kernel for the Adam/AdamW update on CUDA and CPU (the same update as the "
        "per-tensor loop, up to rounding)",
    )
    checkpoint_every: int = param(500, "checkpoint interval (steps)", min=1, shapes=False)
    keep_checkpoints: int = param(2, "checkpoints kept (oldest removed)", min=1, shapes=False)
    preview_every: int = param(500, "preview-sample interval (steps, 0 = off)", min=0)
    resume: bool = param(
        True,
        "continue from the latest checkpoint of the same parameters if one exists "
        "(false: start that run over)",
        shapes=False,
    )
    num_workers: int = param(0, "DataLoader workers", min=0, shapes=False)


@dataclass(frozen=True)
class SampleConfig(PrecisionFields, DeviceFields, GeneratorSeedFields):
    """Generating the synthetic cohort."""

    sampler: str = param(
        "heun",
        "sampler: "
        + "; ".join(f"{' | '.join(v)} for process={k}" for k, v in SAMPLERS_BY_PROCESS.items()),
        choices=SAMPLERS,
    )
    steps: int = param(
        10, "sampler steps (ddpm always uses all timesteps; heun: 2 x steps - 1 evaluations)", min=1
    )
    eta: float = param(0.0, "DDIM eta (0 = deterministic)", min=0, max=1)
    churn: float = param(
        0.0,
        "euler/heun: stochastic sampling (Karras et al. 2022's churn on the flow path): before "
        "each step the noise-to-signal ratio is raised by this factor with fresh noise, then "
        "the step is taken from there (0 = the deterministic ODE; meant for heun: Euler's "
        "first-order error grows with it)",
        min=0,
    )
    guidance_scale: float = param(
        1.0,
        "classifier-free guidance of a class-conditional model: prediction = unconditional + "
        "scale x (conditional - unconditional); 1 = the conditional model alone (one network "
        "evaluation per step), > 1 strengthens the class (two evaluations), 0 = unconditional",
        min=0,
    )
    n_samples: int = param(
        64, "synthetic images/volumes to generate (per group of a class-conditional model)", min=1
    )
    sample_batch_size: int = param(32, "samples per forward batch", min=1)
    sampler_table_samples: int = param(
        32,
        "samples per row of the sampler speed/quality table (chapter 4; recomputed on every run, "
        "not part of the synthetic cohort)",
        min=2,
        shapes=False,
    )


@dataclass(frozen=True)
class MetricsConfig(DeviceFields, RunFields):
    """Realism, diversity and memorisation metrics."""

    extractor: str = param(
        "random",
        "feature extractor: random (2D; 2.5D for volumes) | random3d | inception | "
        "medicalnet:<path to weights>",
    )
    n_bootstrap: int = param(200, "bootstrap resamples for 95% CIs", min=10)
    n_permutations: int = param(
        200, "permutations of subjects for the MMD test (slices of a subject move together)", min=10
    )
    n_redraws: int = param(
        100,
        "subject-level redraws of the train/test split for the real-vs-real range of every "
        "metric (0: the one split, with a bootstrap interval)",
        min=0,
    )
    msssim_pairs: int = param(100, "random pairs for MS-SSIM diversity", min=2)
    nn_k: int = param(5, "k of the k-NN manifolds (precision/recall, density/coverage)", min=1)


STAGES: tuple[type[StageConfig], ...] = (
    CohortConfig,
    PreprocessConfig,
    ModelConfig,
    TrainConfig,
    SampleConfig,
    MetricsConfig,
    AugmentConfig,
)
