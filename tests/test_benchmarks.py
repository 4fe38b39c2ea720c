"""The GPU benchmark of the paper's model is kept ready to run: every option it times works on the
CPU at toy size (smoke3d), torch.compile and scaled-dot-product attention included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_train_throughput_runs_every_variant_in_3d(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no preprocessed data here: random volumes of the right shape
    bench = _module("train_throughput")
    speedup = bench.main(
        [
            *("--profile", "smoke3d", "-p", f"derived_dir={tmp_path}"),
            *("-p", "device=cpu", "-p", "grad_accum=2", "-p", "batch_size=1"),
            *("--steps", "1", "--warmup", "1", "--rounds", "1"),
            *("--variants", "--sampling"),
        ]
    )
    out = capsys.readouterr().out
    assert speedup > 0
    for row in (
        "neurodiff fp32",
        "neurodiff + channels_last",
        "neurodiff + compile",
        "neurodiff, plain attention",
        "neurodiff, per-tensor optimiser",
        "neurodiff, micro-batch 2 x 1",
    ):
        assert row in out, row
    assert "3D 16^3" in out and "sampling one volume, ddpm-20" in out
    assert "sampling one volume, ddim-20" in out
