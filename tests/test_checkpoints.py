"""Checkpoint files: atomic save, safe load, rotation, EMA state."""

from __future__ import annotations

import pytest
import torch

from neurodiff import checkpoints as C
from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.errors import CheckpointError


def _state(step: int, cfg: ModelConfig) -> dict:
    weights = {"w": torch.full((2,), float(step))}
    return {
        "format": C.CHECKPOINT_FORMAT,
        "step": step,
        "model": weights,
        "ema": weights,
        "optimizer": {},
        "lr_scheduler": {},
        "rng": C.rng_state(),
        "model_config": cfg.to_dict(),
        "train_config": {},
        "params_hash": "x",
    }


def test_save_rotate_and_load(tmp_path):
    cfg = config.resolve("smoke").stage(ModelConfig)
    for step in (3, 6, 9):
        C.save_checkpoint(tmp_path, step, _state(step, cfg))
    C.rotate_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in C.list_checkpoints(tmp_path)] == [6, 9]
    latest = C.latest_checkpoint(tmp_path)
    assert latest == C.checkpoint_path(tmp_path, 9) and C.checkpoint_step(latest) == 9
    assert C.load_checkpoint(latest, expected_model_config=cfg)["model"]["w"].tolist() == [9, 9]
    state, loaded_cfg, path = C.load_ema_state(tmp_path)
    assert state["w"].tolist() == [9.0, 9.0] and loaded_cfg == cfg and path == latest
    assert not list(tmp_path.rglob(".*"))  # no temporary file left


def test_rng_state_round_trip():
    state = C.rng_state()
    a = torch.rand(3)
    C.set_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def test_problems_are_named(tmp_path):
    cfg = config.resolve("smoke").stage(ModelConfig)
    with pytest.raises(CheckpointError, match="does not exist"):
        C.load_checkpoint(tmp_path / "step-0000001.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        C.load_ema_state(tmp_path)
    path = C.save_checkpoint(tmp_path, 1, _state(1, cfg))
    other = config.resolve("smoke", {"timesteps": 40}).stage(ModelConfig)
    with pytest.raises(CheckpointError, match="timesteps: checkpoint has 50, expected 40"):
        C.load_checkpoint(path, expected_model_config=other)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        C.load_checkpoint(path)
    assert C.checkpoint_step(tmp_path / "model.pt") is None
