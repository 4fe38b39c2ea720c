"""Device choice and mixed precision, in one place for training, sampling and metrics."""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from .errors import ConfigError

__all__ = [
    "ISA_FLAGS",
    "autocast",
    "cpu_description",
    "cpu_has_native_bf16",
    "precision_label",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, then MPS, then CPU; otherwise the named device.

    Under ``torchrun`` (``LOCAL_RANK`` set) a bare ``cuda`` means this process's GPU.
    """
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


def resolve_precision(
    precision: str, device: torch.device, *, training: bool = False
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for plain fp32.

    The one precision rule of neurodiff (the ``precision`` parameter's help says the same):

    * ``fp32`` / ``bf16``: as named, everywhere;
    * ``auto``: bf16 on CUDA. On a CPU, bf16 only for **training** and only where the CPU has
      native bf16 arithmetic (AVX512-BF16 or AMX): there ``benchmarks/train_throughput.py``
      measured it about 1.8x faster than fp32 with the same loss. Sampling and metrics keep fp32
      on a CPU: the quality of bf16 CPU sampling has not been measured. Elsewhere (MPS, CPUs
      without native bf16, where bf16 is emulated and slow) fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        if device.type == "cpu" and training and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    raise ConfigError(
        f"parameter 'precision' must be auto, fp32 or bf16; got {precision!r}",
        parameter="precision",
    )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch or a non-x86 CPU
        return False


#: The instruction-set flags that decide which CPU kernels torch uses (and so the last bits of a
#: result): vector width, and native bf16 arithmetic (AVX512-BF16, AMX).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_description() -> dict:
    """The CPU as results should name it: ``{"model", "cores", "flags", "native_bf16"}``.

    ``model`` is the ``model name`` of ``/proc/cpuinfo`` (the processor's marketing name, e.g.
    "AMD EPYC" or "Intel(R) Xeon(R) Processor"; ``platform.processor()`` elsewhere), ``flags`` the
    :data:`ISA_FLAGS` it has. Two CPUs with the same flags run the same kernels; bf16 training
    (``precision=auto`` where ``native_bf16``) differs most between CPUs.
    """
    import platform

    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "cores": os.cpu_count(),
        "flags": [f for f in ISA_FLAGS if f in flags],
        "native_bf16": cpu_has_native_bf16(),
    }


def precision_label(dtype: torch.dtype | None) -> str:
    """How logs and results name an autocast dtype: ``fp32`` or ``bf16 autocast``."""
    return "fp32" if dtype is None else "bf16 autocast"


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device`` (a no-op context when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
