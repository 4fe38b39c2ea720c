"""Stage folders and the readers of stage outputs."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

from neurodiff import artifacts, config, registry, runs
from neurodiff.errors import DataError


def test_stage_folders_follow_the_parameters(tmp_path):
    params = config.resolve("smoke", {"derived_dir": str(tmp_path)})
    base = tmp_path / "smoke"
    keys = runs.chain_keys(params)
    assert artifacts.preprocessed_dir(params) == base / "preprocessed" / keys["preprocessed"]
    assert artifacts.train_dir(params) == base / "train" / keys["train"]
    assert artifacts.synthetic_dir(params) == base / "synthetic" / keys["synthetic"]
    assert artifacts.metrics_dir(params) == base / "metrics" / keys["metrics"]
    assert artifacts.train_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_missing_outputs_name_the_folder_and_the_command(tmp_path):
    params = config.resolve("smoke", {"derived_dir": str(tmp_path)})
    with pytest.raises(DataError, match=r"no complete preprocessed data in .*neurodiff preprocess"):
        artifacts.load_split(params, "train")
    with pytest.raises(DataError, match="no loss log"):
        artifacts.read_loss_log(params)
    with pytest.raises(DataError, match=r"no synthetic cohort .*neurodiff sample"):
        artifacts.load_synthetic(params)
    assert artifacts.load_metrics_json(params) is None
    assert artifacts.preview_images(params) == []


def test_split_names_are_checked(tmp_path):
    with pytest.raises(config.ConfigError, match="split must be 'train' or 'test'; got 'val'"):
        artifacts.load_split(tmp_path, "val")


def test_metrics_json_and_previews_are_read_back(tmp_path):
    params = config.resolve("smoke", {"derived_dir": str(tmp_path)})
    folder = artifacts.metrics_dir(params)
    folder.mkdir(parents=True)
    stored = {"format": registry.METRICS.format, "params_hash": "abc"}
    (folder / "metrics.json").write_text(json.dumps(stored))
    assert artifacts.load_metrics_json(params) == stored
    previews = artifacts.train_dir(params) / "previews"
    previews.mkdir(parents=True)
    for step in (20, 3):
        matplotlib.image.imsave(previews / f"step-{step:07d}.png", np.full((4, 4), step / 20))
    read = artifacts.preview_images(params)
    assert [step for step, _ in read] == [3, 20]  # oldest first
    assert read[0][1].shape[:2] == (4, 4)
