"""Writing the synthetic cohort: generate from the EMA weights, write NIfTI with provenance."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import artifacts
from ..artifacts import load_manifest, synthetic_dir
from ..checkpoints import checkpoint_step
from ..config import ModelConfig, Params, SampleConfig
from ..device import resolve_device, resolve_precision
from ..intensity import to_unit_range
from ..io import file_sha256, shown_path
from ..model import ClassGuided, class_index, load_ema_model, null_class
from ..registry import SAMPLE
from ..runs import record_run
from ..sampling import check_sampler_args, generate, network_evaluations
from ..templates import target_affine
from ..viz import save_grid

__all__ = ["SampleResult", "real_and_synthetic", "run", "write_synthetic"]


def _geometry(params: Params) -> tuple[np.ndarray, float, str]:
    """Voxel-to-world affine (4 x 4, RAS mm) and voxel size of the synthetic images of
    ``params``, from the grid of their preprocessing (:func:`geometry`)."""
    return geometry(load_manifest(params)["target"], params.spatial_dims, params.image_size)


def geometry(
    target: Mapping[str, Any], spatial_dims: int, image_size: int
) -> tuple[np.ndarray, float, str]:
    """Voxel-to-world affine (4 x 4, RAS mm), voxel size and a description of the grid of
    synthetic images, from ``target`` (the preprocessed manifest's ``target``: ``space``,
    ``volume_spacing_mm``, optionally ``volume_affine`` and ``slices``).

    3D: the grid of the preprocessed volumes (the template grid after registration). Without
    registration every preprocessed volume keeps its own head-centred affine, so there is no
    common grid; the synthetic volumes then get an RAS grid at the volume spacing centred on the
    MNI152 brain (:func:`neurodiff.templates.target_affine`). 2D: the same grid, moved to the
    middle of the axial slices the model was trained on, one slice thick.
    """
    spacing = float(target["volume_spacing_mm"])
    if target.get("volume_affine") is not None:
        affine = np.asarray(target["volume_affine"], dtype=np.float64)
        source = f"{target['space']}: grid of the preprocessed volumes"
    else:
        affine = target_affine(spacing, image_size)
        source = (
            f"{target['space']}: no common grid; RAS grid at the volume spacing centred "
            "on the MNI152 brain"
        )
    if spatial_dims == 2:
        k = float(np.mean(target["slices"])) if target.get("slices") else image_size / 2
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
    groups: Any = None,
) -> Path:
    """Write images as a BIDS-like synthetic cohort (:func:`neurodiff.artifacts.write_synthetic`)
    with ``grid.png``, a preview grid of the images, when ``grid_png``."""
    return artifacts.write_synthetic(
        out_dir,
        images,
        affine=affine,
        generated_by=generated_by,
        name=name,
        groups=groups,
        extra=(lambda tmp: save_grid(np.asarray(images, dtype=np.float32), tmp / "grid.png"))
        if grid_png
        else None,
    )


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
    groups: dict[str, int] = field(default_factory=dict)
    guidance_scale: float = 1.0
    churn: float = 0.0

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(self.n_samples, 1)

    def __str__(self) -> str:
        eta = f", eta={self.eta:g}" if self.sampler == "ddim" else ""
        eta += f", churn {self.churn:g}" if self.churn else ""
        step = f" (step {self.checkpoint_step})" if self.checkpoint_step is not None else ""
        groups = (
            " (" + ", ".join(f"{n} {g}" for g, n in self.groups.items()) + ", guidance scale "
            f"{self.guidance_scale:g})"
            if self.groups
            else ""
        )
        return "\n".join(
            [
                f"synthetic cohort: {self.n_samples} images of {'x'.join(map(str, self.shape))}"
                f"{groups} in {shown_path(self.out_dir)}",
                f"  sampler {self.sampler}, {self.steps} network evaluations each{eta}, "
                f"seed {self.seed}",
                f"  from EMA weights of {shown_path(self.checkpoint)}{step}",
                f"  {self.seconds:.1f} s on {self.device} "
                f"({self.seconds_per_sample:.2f} s per sample)",
            ]
        )


def synthesize(
    model, model_config: ModelConfig, cfg: SampleConfig, device=None, group: str | None = None
):
    """``cfg.n_samples`` images from ``model`` with the sampler, steps, eta, churn, batch size,
    seed and precision of ``cfg`` (:func:`neurodiff.sampling.generate`): ``(N, 1, *spatial)`` in
    [-1, 1].

    ``group``: a class-conditional model samples that group, with ``cfg.guidance_scale``; its
    seed is ``cfg.seed + cfg.generator_seed`` plus the group's position in ``groups`` (each
    group its own noise).
    Without it, a class-conditional model samples unconditionally.
    """
    seed = cfg.generator_rng_seed
    if group is not None:
        label = class_index(model_config, group)
        model = ClassGuided(model, label, null_class(model_config), cfg.guidance_scale)
        seed = cfg.generator_rng_seed + label
    return generate(
        model,
        model_config,
        cfg.n_samples,
        sampler=cfg.sampler,
        steps=cfg.steps,
        eta=cfg.eta,
        churn=cfg.churn,
        batch_size=cfg.sample_batch_size,
        seed=seed,
        device=device,
        precision=cfg.precision,
    )


def draw_cohort(model, model_config: ModelConfig, cfg: SampleConfig, device=None):
    """``(images, group names)``: ``cfg.n_samples`` images of every group of a class-conditional
    model, in the order of its ``groups`` (names None for an unconditional model)."""
    groups = list(model_config.groups)
    if not groups:
        return synthesize(model, model_config, cfg, device), None
    images = torch.cat([synthesize(model, model_config, cfg, device, g) for g in groups])
    return images, [g for g in groups for _ in range(cfg.n_samples)]


def sampler_provenance(
    cfg: SampleConfig, model_config: ModelConfig, device, n_evals: int
) -> dict[str, Any]:
    """How the synthetic cohort was sampled, as its ``dataset_description.json`` records it
    (whether from a run's checkpoint or from a weights file)."""
    groups = list(model_config.groups)
    return {
        "Sampler": cfg.sampler,
        "Steps": n_evals,
        "Eta": cfg.eta if cfg.sampler == "ddim" else None,
        "Churn": cfg.churn or None,
        "Seed": cfg.generator_rng_seed,
        "Groups": {g: cfg.n_samples for g in groups} or None,
        "GuidanceScale": cfg.guidance_scale if groups else None,
        "BatchSize": cfg.sample_batch_size,
        "Device": str(device),
        "Precision": "bf16" if resolve_precision(cfg.precision, device) is not None else "fp32",
        "ModelConfig": model_config.to_dict(),
    }


def real_and_synthetic(params: Params) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{group: (real test images, synthetic images)}`` in [0, 1], the groups in the model's
    order (controls first); one entry ``""`` for an unconditional model."""
    from ..artifacts import load_split, load_synthetic

    out = {}
    for group in list(params.groups) or [None]:
        real = to_unit_range(load_split(params, "test", group=group)[0])
        out[group or ""] = (real, load_synthetic(params, group=group))
    return out


def run(params: Params) -> SampleResult:
    """Generate ``n_samples`` images from the latest checkpoint's EMA weights and write them
    under ``artifacts.synthetic_dir(params)`` (NIfTI, participants.tsv, dataset_description.json
    with provenance, grid.png)."""
    cfg: SampleConfig = params.stage(SampleConfig)
    mcfg: ModelConfig = params.stage(ModelConfig)
    check_sampler_args(mcfg, cfg.sampler, cfg.steps, cfg.eta, cfg.churn)
    n_evals = network_evaluations(mcfg, cfg.sampler, cfg.steps)
    device = resolve_device(cfg.device)
    affine, spacing, geometry_source = _geometry(params)
    model, ckpt_cfg, ckpt_path = load_ema_model(params, device)
    ckpt_path = Path(ckpt_path)
    t0 = time.perf_counter()
    groups = list(ckpt_cfg.groups)
    images, names = draw_cohort(model, ckpt_cfg, cfg, device)
    seconds = time.perf_counter() - t0
    step = checkpoint_step(ckpt_path)
    generated_by = {
        "Checkpoint": ckpt_path.name,
        "CheckpointStep": step,
        "CheckpointSHA256": file_sha256(ckpt_path),
        **sampler_provenance(cfg, ckpt_cfg, device, n_evals),
        "ParametersHash": params.hash(),
        "SampleConfigHash": cfg.hash(),
        "Profile": params.profile,
        "Geometry": geometry_source,
        "VoxelSizeMM": spacing,
        "IntensityRange": [0.0, 1.0],
        "Seconds": round(seconds, 3),
    }
    out = write_synthetic(
        synthetic_dir(params),
        to_unit_range(images),
        affine=affine,
        generated_by=generated_by,
        name=f"neurodiff synthetic cohort (profile {params.profile})",
        groups=names,
    )
    record_run(params, SAMPLE)
    files = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    return SampleResult(
        out,
        len(files),
        tuple(images.shape[2:]),
        cfg.sampler,
        n_evals,
        cfg.eta,
        cfg.generator_rng_seed,
        str(device),
        seconds,
        ckpt_path,
        step,
        files,
        {g: cfg.n_samples for g in groups},
        cfg.guidance_scale,
        cfg.churn,
    )
