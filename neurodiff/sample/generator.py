"""A generator from a weights file, sampled as the stage samples a trained run.

:func:`load_generator` reads a weights file (:mod:`neurodiff.weights`: the format, every tensor's
name and shape checked) and returns a :class:`Generator`; ``generator.sample(n, group=...)``
draws with the sampler settings the run recorded in the file, through the stage's own sampling
rule (:func:`~neurodiff.sample.stage.synthesize`), so a file and the run it came from give the
same images for the same settings. :func:`run_from_weights` is ``neurodiff sample --weights
FILE``: a synthetic cohort as NIfTI from a downloaded file, without training or preprocessing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError, ModelConfig, Params, SampleConfig
from ..device import resolve_device
from ..intensity import to_unit_range
from ..io import file_sha256
from ..sampling import network_evaluations
from ..weights import WeightsFile, load_weights_model
from .stage import (
    SampleResult,
    draw_cohort,
    geometry,
    sampler_provenance,
    synthesize,
    write_synthetic,
)

__all__ = ["SAMPLER_SETTINGS", "Generator", "load_generator", "run_from_weights"]

#: The settings a weights file's own sampler keeps under ``neurodiff sample --weights`` unless
#: given with ``-p`` (the number of images, seed, batch size and device come from the profile).
SAMPLER_SETTINGS = ("sampler", "steps", "eta", "churn", "guidance_scale")


@dataclass
class Generator:
    """The network of a weights file, its configuration and the run's sampler settings."""

    model: nn.Module
    model_config: ModelConfig
    sample_config: SampleConfig
    weights: WeightsFile
    device: torch.device

    @property
    def groups(self) -> list[str]:
        """The groups a class-conditional generator samples (empty: unconditional)."""
        return list(self.model_config.groups)

    def sample(self, n: int, group: str | None = None, **settings) -> torch.Tensor:
        """``n`` images ``(n, 1, *spatial)`` in [-1, 1], of ``group`` for a class-conditional
        generator (None: its unconditional model), with the sampler settings of the run; any of
        them (``sampler``, ``steps``, ``eta``, ``seed``, ``guidance_scale``,
        ``sample_batch_size``, ``precision`` ...) can be given to replace it."""
        known = {f.name for f in dataclasses.fields(SampleConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"Generator.sample(): unknown setting(s) {unknown}; expected some of "
                f"{sorted(known - {'n_samples'})}",
                parameter=unknown[0],
            )
        cfg = dataclasses.replace(self.sample_config, n_samples=int(n), **settings)
        return synthesize(self.model, self.model_config, cfg, self.device, group)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The generator of a weights file on ``device`` (``auto`` picks CUDA, MPS or the CPU).

    Raises :class:`~neurodiff.errors.CheckpointError` for a missing, truncated or foreign file,
    or one whose tensors do not fit the network its header describes.
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    model, weights = load_weights_model(path, device)
    sample_config = SampleConfig.from_params(weights.sampling)
    return Generator(model, weights.model_config, sample_config, weights, device)


def _settings(params: Params, generator: Generator, given: Iterable[str]) -> SampleConfig:
    """The profile's sample settings with the file's sampler settings where none is given."""
    given = set(given)
    recorded = generator.sample_config
    kept = {k: getattr(recorded, k) for k in SAMPLER_SETTINGS if k not in given}
    return dataclasses.replace(params.stage(SampleConfig), **kept)


def run_from_weights(
    params: Params,
    path: str | Path,
    out_dir: str | Path | None = None,
    given: Iterable[str] = (),
) -> SampleResult:
    """``neurodiff sample --weights FILE``: ``n_samples`` images (per group) from a weights file,
    written as a synthetic cohort (NIfTI, participants.tsv, provenance, grid.png) to
    ``out_dir`` (default ``<file name>-samples`` in the working directory).

    The sampler settings (:data:`SAMPLER_SETTINGS`) are those the file recorded, but for the
    names in ``given`` (set with ``-p``), which take ``params``' values; the number of images,
    seed, batch size, device and precision are ``params``'. Nothing is trained, preprocessed or
    written to a run folder.
    """
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else Path(f"{path.stem}-samples")
    generator = load_generator(path, params.stage(SampleConfig).device)
    cfg = _settings(params, generator, given)
    mcfg = generator.model_config
    n_evals = network_evaluations(mcfg, cfg.sampler, cfg.steps)
    target = generator.weights.target or {
        "space": "no grid recorded in the weights file",
        "volume_spacing_mm": params.target_spacing,
    }
    affine, spacing, geometry_source = geometry(target, mcfg.spatial_dims, mcfg.image_size)
    t0 = time.perf_counter()
    groups = generator.groups
    images, names = draw_cohort(generator.model, mcfg, cfg, generator.device)
    seconds = time.perf_counter() - t0
    source = generator.weights.source
    generated_by = {
        "Weights": path.name,
        "WeightsSHA256": file_sha256(path),
        "Checkpoint": source.get("checkpoint"),
        "CheckpointStep": source.get("step"),
        **sampler_provenance(cfg, mcfg, generator.device, n_evals),
        "Profile": params.profile,
        "Geometry": geometry_source,
        "VoxelSizeMM": spacing,
        "IntensityRange": [0.0, 1.0],
        "Seconds": round(seconds, 3),
    }
    out = write_synthetic(
        out_dir,
        to_unit_range(images),
        affine=affine,
        generated_by=generated_by,
        name=f"neurodiff synthetic cohort (from {path.name})",
        groups=names,
    )
    files = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    return SampleResult(
        out_dir=out,
        n_samples=len(files),
        shape=tuple(images.shape[2:]),
        sampler=cfg.sampler,
        steps=n_evals,
        eta=cfg.eta,
        seed=cfg.generator_rng_seed,
        device=str(generator.device),
        seconds=seconds,
        checkpoint=path,
        checkpoint_step=source.get("step"),
        files=files,
        groups={g: cfg.n_samples for g in groups},
        guidance_scale=cfg.guidance_scale,
    )
