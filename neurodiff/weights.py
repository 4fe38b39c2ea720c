"""The trained generator as one file: EMA weights in ``safetensors``, described by its header.

A weights file holds the EMA weights of a training checkpoint (every tensor of the UNet's state
dict, fp32 as trained) and, in the safetensors header, plain strings: the format
(:data:`WEIGHTS_FORMAT`), the model configuration the network is rebuilt from, the sampler
settings the run used, the preprocessed grid (so that NIfTI written from it carry a sensible
affine) and where the weights came from (checkpoint, step, its SHA-256, the parameters hash, the
neurodiff version). safetensors stores tensors only, so loading one runs no code, like
``torch.load(..., weights_only=True)`` for the checkpoints.

Reading checks what a file can get wrong before any tensor reaches a model: a missing, truncated
or foreign file, a header of another format, and tensors whose names or shapes differ from the
network the header describes; each error names the file, what was expected and what was found.
Sampling from a file is :func:`neurodiff.sample.load_generator` (the stage's own sampling rule).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .checkpoints import checkpoint_step, load_ema_state
from .config import ModelConfig, Params
from .errors import CheckpointError
from .io import atomic_path, file_sha256
from .model import build_model

__all__ = [
    "WEIGHTS_FORMAT",
    "WeightsFile",
    "export_ema",
    "load_weights_model",
    "read_weights",
    "save_weights",
]

WEIGHTS_FORMAT = "neurodiff-weights/1"

#: Header entries held as JSON (the others are plain strings).
_JSON_ENTRIES = ("model_config", "sampling", "target", "source")


@dataclass
class WeightsFile:
    """A checked weights file: its tensors, the model configuration and the rest of its header."""

    path: Path
    state: dict[str, torch.Tensor]
    model_config: ModelConfig
    sampling: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    version: str = ""


def save_weights(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    model_config: ModelConfig,
    *,
    sampling: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state`` (a UNet state dict) and its header to ``path`` atomically.

    ``sampling``: the sample stage's settings the run used (sampler, steps, ...); ``target``:
    the preprocessed grid (the manifest's ``target``); ``source``: where the weights came from.
    """
    from safetensors.torch import save_file

    header = {
        "format": WEIGHTS_FORMAT,
        "neurodiff_version": __version__,
        "model_config": model_config.to_dict(),
        "sampling": dict(sampling or {}),
        "target": dict(target) if target is not None else None,
        "source": dict(source or {}),
    }
    metadata = {k: json.dumps(v) if k in _JSON_ENTRIES else str(v) for k, v in header.items()}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def export_ema(
    source: Params | str | Path,
    path: str | Path,
    *,
    sampling: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
) -> Path:
    """The EMA weights of the latest checkpoint of ``source`` (``Params``: their train folder,
    checked against their model configuration; a path: a train folder or checkpoint file) as a
    weights file at ``path``; the header names the checkpoint, its step and SHA-256."""
    state, cfg, ckpt = load_ema_state(source)
    origin = {
        "checkpoint": Path(ckpt).name,
        "step": checkpoint_step(ckpt),
        "checkpoint_sha256": file_sha256(ckpt),
    }
    if isinstance(source, Params):
        origin.update(profile=source.profile, params_hash=source.hash())
    return save_weights(path, state, cfg, sampling=sampling, target=target, source=origin)


def _header(path: Path) -> tuple[dict[str, str], list[str]]:
    """The header's metadata and the tensor names, or a clear error for an unreadable file."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist", path=path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), list(f.keys())
    except Exception as exc:  # safetensors raises its own error types for bad bytes
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"weights file {str(path)!r} cannot be read: expected a safetensors file written by "
            f"neurodiff ({WEIGHTS_FORMAT}); it is truncated, corrupt or of another kind ({msg})",
            path=path,
        ) from None


def _parse_header(path: Path, meta: Mapping[str, str]) -> dict[str, Any]:
    found = meta.get("format")
    if found != WEIGHTS_FORMAT:
        raise CheckpointError(
            f"weights file {str(path)!r} has format {found!r} in its header; expected "
            f"{WEIGHTS_FORMAT!r} (a file written by `neurodiff run` or neurodiff.weights)",
            path=path,
        )
    try:
        parsed = {k: json.loads(meta[k]) if k in meta else None for k in _JSON_ENTRIES}
        parsed["model_config"] = ModelConfig.from_params(parsed["model_config"])
    except (TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"weights file {str(path)!r}: its header does not describe a model configuration "
            f"({exc})",
            path=path,
        ) from None
    return parsed


def _shape_problems(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]
) -> list[str]:
    """Differences between the tensors of a file and those of the network, one phrase each."""
    problems = [
        f"missing tensor {k!r} of shape {tuple(v)}" for k, v in expected.items() if k not in found
    ]
    problems += [f"unexpected tensor {k!r}" for k in found if k not in expected]
    problems += [
        f"tensor {k!r} has shape {tuple(found[k])}, expected {tuple(v)}"
        for k, v in expected.items()
        if k in found and tuple(found[k]) != tuple(v)
    ]
    return problems


def _describe(cfg: ModelConfig) -> str:
    kind = f"{len(cfg.groups)}-group class-conditional" if cfg.groups else "unconditional"
    return (
        f"{cfg.spatial_dims}D {kind} UNet at {cfg.image_size} px, channels {tuple(cfg.channels)}, "
        f"{cfg.num_res_blocks} residual block(s) per level"
    )


def read_weights(path: str | Path) -> WeightsFile:
    """Read and check a weights file; see the module docstring.

    Raises
    ------
    CheckpointError
        The file is missing, unreadable (truncated, corrupt, not safetensors), has another
        format, or holds tensors whose names or shapes do not fit the network its header
        describes (the differences are listed).
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta, names = _header(path)
    header = _parse_header(path, meta)
    cfg: ModelConfig = header["model_config"]
    with torch.device("meta"):  # the shapes only: no memory, no arithmetic
        expected = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    try:
        state = load_file(str(path))
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"weights file {str(path)!r} cannot be read: it is truncated or corrupt ({msg})",
            path=path,
        ) from None
    problems = _shape_problems({k: tuple(v.shape) for k, v in state.items()}, expected)
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        raise CheckpointError(
            f"weights file {str(path)!r} does not fit the network its header describes "
            f"({_describe(cfg)}: {len(expected)} tensors; the file has {len(names)}): {shown}",
            path=path,
        )
    return WeightsFile(
        path=path,
        state=state,
        model_config=cfg,
        sampling=header["sampling"] or {},
        target=header["target"],
        source=header["source"] or {},
        version=meta.get("neurodiff_version", ""),
    )


def load_weights_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, WeightsFile]:
    """The network of a weights file with its weights, on ``device`` in ``eval()`` mode, and the
    checked file (:func:`read_weights`)."""
    weights = read_weights(path)
    model = build_model(weights.model_config, flash_attention=torch.device(device).type == "cuda")
    model.load_state_dict(weights.state)  # names and shapes checked by read_weights
    return model.to(device).eval(), weights
