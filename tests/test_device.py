"""Device choice and the one precision rule."""

from __future__ import annotations

import pytest
import torch

from neurodiff import device as D
from neurodiff.errors import ConfigError


def test_precision_rule(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert D.resolve_precision("fp32", cuda) is None
    assert D.resolve_precision("bf16", cpu) is torch.bfloat16
    assert D.resolve_precision("auto", cuda) is torch.bfloat16
    assert D.resolve_precision("auto", cuda, training=True) is torch.bfloat16
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: True)
    assert D.resolve_precision("auto", cpu, training=True) is torch.bfloat16
    assert D.resolve_precision("auto", cpu) is None  # sampling and metrics: fp32 on a CPU
    monkeypatch.setattr(D, "cpu_has_native_bf16", lambda: False)
    assert D.resolve_precision("auto", cpu, training=True) is None
    assert D.resolve_precision("auto", torch.device("mps"), training=True) is None
    with pytest.raises(ConfigError, match="'precision' must be auto, fp32 or bf16; got 'fp16'"):
        D.resolve_precision("fp16", cpu)
    assert D.precision_label(None) == "fp32" and D.precision_label(torch.bfloat16) != "fp32"


def test_device_names():
    assert D.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="'device' must be auto, cpu"):
        D.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            D.resolve_device("cuda")
