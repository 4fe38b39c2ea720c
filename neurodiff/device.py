"""Device choice and mixed precision, in one place for training, sampling and metrics."""

from __future__ import annotations

import contextlib
import logging

import torch

from .errors import ConfigError

__all__ = ["autocast", "resolve_device", "resolve_precision"]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, then MPS, then CPU; otherwise the named device.

    Under ``torchrun`` (``LOCAL_RANK`` set) a bare ``cuda`` means this process's GPU.
    """
    import os

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"parameter 'device' must be auto, cpu, cuda, cuda:N or mps; got {name!r}",
            parameter="device",
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"parameter 'device' is {name!r} but no CUDA GPU is available here; "
            "use device=auto or device=cpu",
            parameter="device",
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "parameter 'device' is 'mps' but MPS is not available here", parameter="device"
        )
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for plain fp32.

    ``auto`` means bf16 on CUDA and fp32 elsewhere.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    raise ConfigError(
        f"parameter 'precision' must be auto, fp32 or bf16; got {precision!r}",
        parameter="precision",
    )


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device`` (a no-op context when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
