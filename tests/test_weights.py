"""The trained generator as a file (neurodiff.weights, neurodiff.sample.generator, the model card
of neurodiff.release): exported from a smoke run, loaded through the card's own snippet, sampled
as the run's checkpoint samples, and refused when truncated or of the wrong shapes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import tiny_run_params

from neurodiff import artifacts, cli, config, release
from neurodiff.config import ModelConfig, SampleConfig
from neurodiff.errors import CheckpointError, DataError
from neurodiff.weights import WEIGHTS_FORMAT, read_weights, save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tiny_cohort, tmp_path_factory):
    """A class-conditional smoke run (preprocessed, trained 2 steps, sampled: 3 images per group,
    DDIM-5, seed 4) and its exported generator: ``(params, weights, card)``."""
    from neurodiff import preprocess, sample, train

    derived = tmp_path_factory.mktemp("derived")
    params = tiny_run_params(tiny_cohort, derived)
    assert list(params.groups) == ["control", "patient"]  # the conditional path
    preprocess.run(params)
    train.run(params)
    sample.run(params)
    weights, card = release.write_generator(params, derived / "downloads")
    return params, weights, card


def _synthetic_cohort(folder: Path) -> dict[str, np.ndarray]:
    """The images of a synthetic cohort folder by group, in file order, and one affine."""
    table = json.loads((folder / "dataset_description.json").read_text())
    assert "GeneratedBy" in table
    participants = np.loadtxt(folder / "participants.tsv", dtype=str, delimiter="\t", skiprows=1)
    out: dict[str, list[np.ndarray]] = {}
    for row in participants:
        img = nib.load(folder / row[0] / "anat" / f"{row[0]}_T1w.nii.gz")
        out.setdefault(row[-1], []).append(np.asarray(img.dataobj, dtype=np.float32))
        out.setdefault("affine", [img.affine])
    return {k: np.stack(v) for k, v in out.items()}


def test_the_cards_snippet_samples_as_the_runs_checkpoint(run, monkeypatch):
    from neurodiff.model import load_ema_model
    from neurodiff.sample.stage import synthesize

    params, weights, card = run
    text = card.read_text()
    snippet = release.card_snippet(text)
    assert len(snippet.strip().splitlines()) == 3  # "how to load it in three lines"
    monkeypatch.chdir(weights.parent)  # the snippet names the file as downloaded
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - the card's own code, as a reader runs it
    images = namespace["images"]
    assert tuple(images.shape) == (8, 1, 16, 16)

    model, cfg, _ = load_ema_model(params)  # the run's checkpoint, not the file
    settings = dataclasses.replace(params.stage(SampleConfig), n_samples=8)
    expected = synthesize(model, cfg, settings, torch.device("cpu"), "control")
    assert torch.equal(images, expected)
    other = synthesize(model, cfg, settings, torch.device("cpu"), "patient")
    assert not torch.equal(images, other)  # the comparison can fail


def test_the_file_keeps_the_ema_weights_and_what_made_them(run):
    from neurodiff.checkpoints import latest_checkpoint, load_checkpoint
    from neurodiff.io import file_sha256

    params, weights, _ = run
    ckpt_path = latest_checkpoint(artifacts.train_dir(params))
    ckpt = load_checkpoint(ckpt_path)
    loaded = read_weights(weights)
    assert loaded.state.keys() == ckpt["ema"].keys()
    assert all(torch.equal(loaded.state[k], v) for k, v in ckpt["ema"].items())
    assert loaded.model_config == params.stage(ModelConfig)
    assert loaded.source["checkpoint_sha256"] == file_sha256(ckpt_path)
    assert loaded.source["params_hash"] == params.hash()
    assert loaded.sampling["sampler"] == "ddim" and loaded.sampling["steps"] == 5
    assert loaded.target is not None and "volume_spacing_mm" in loaded.target


def test_sample_weights_writes_the_runs_synthetic_cohort_without_training(run, tmp_path, capsys):
    params, weights, _ = run
    out = tmp_path / "samples"
    # the demo profile samples with heun, which a DDPM model cannot: the file's recorded
    # sampler (DDIM-5) is used; the number, seed and batch come from -p as for any profile
    rc = cli.main(
        ["sample", "--weights", str(weights), "--profile", "demo", "--out", str(out)]
        + ["-p", f"cohort={tmp_path / 'no-cohort'}"]
        + ["-p", "n_samples=3", "-p", "sample_batch_size=2", "-p", "seed=4"]
    )
    assert rc == 0, capsys.readouterr().err
    assert "6 images of 16x16" in capsys.readouterr().out
    mine = _synthetic_cohort(out)
    runs = _synthetic_cohort(artifacts.synthetic_dir(params))
    for group in ("control", "patient"):
        assert mine[group].shape == (3, 16, 16, 1)
        np.testing.assert_array_equal(mine[group], runs[group])
    np.testing.assert_allclose(mine["affine"], runs["affine"])
    generated = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert "neurodiff-generator.safetensors" in json.dumps(generated)
    # the sampler's provenance is the run's, entry for entry (one function writes both)
    run_desc = artifacts.synthetic_dir(params) / "dataset_description.json"
    theirs = json.loads(run_desc.read_text())["GeneratedBy"][0]
    for key in (
        "Sampler",
        "Steps",
        "Eta",
        "Churn",
        "Seed",
        "Groups",
        "GuidanceScale",
        "ModelConfig",
    ):
        assert key in generated and key in theirs and generated[key] == theirs[key], key


def test_a_sampler_given_with_p_replaces_the_recorded_one(run, tmp_path, capsys):
    _, weights, _ = run
    rc = cli.main(
        ["sample", "--weights", str(weights), "--profile", "smoke", "--out", str(tmp_path / "s")]
        + ["-p", f"cohort={tmp_path / 'no-cohort'}", "-p", "n_samples=1", "-p", "steps=3"]
    )
    assert rc == 0, capsys.readouterr().err
    assert "ddim, 3 network evaluations" in capsys.readouterr().out


def test_a_truncated_file_is_refused_with_its_name(run, tmp_path, capsys):
    _, weights, _ = run
    data = weights.read_bytes()
    for cut in (len(data) // 2, 5):
        bad = tmp_path / f"cut-{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated") as err:
            read_weights(bad)
        assert str(bad) in str(err.value) and err.value.path == bad
    rc = cli.main(["sample", "--weights", str(bad), "--profile", "smoke", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2 and str(bad) in captured.err and "Traceback" not in captured.err
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "missing.safetensors")


def test_a_file_of_the_wrong_shapes_is_refused(run, tmp_path):
    _, weights, _ = run
    good = read_weights(weights)
    name = next(k for k, v in good.state.items() if v.ndim == 4)  # a convolution kernel
    state = dict(good.state)
    state[name] = torch.zeros(state[name].shape[0] + 1, *state[name].shape[1:])
    bad = save_weights(tmp_path / "wrong.safetensors", state, good.model_config)
    with pytest.raises(CheckpointError) as err:
        read_weights(bad)
    message = str(err.value)
    assert str(bad) in message and f"tensor {name!r} has shape" in message
    assert str(tuple(good.state[name].shape)) in message  # what was expected

    # a header that describes another network: every mismatch is named
    wider = dataclasses.replace(good.model_config, channels=(32, 64))
    other = save_weights(tmp_path / "other.safetensors", good.state, wider)
    with pytest.raises(CheckpointError, match=r"does not fit .*channels \(32, 64\)"):
        read_weights(other)

    del state[name]
    missing = save_weights(tmp_path / "missing.safetensors", state, good.model_config)
    with pytest.raises(CheckpointError, match=f"missing tensor {name!r}"):
        read_weights(missing)


def test_a_safetensors_file_of_another_kind_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"format 'pt'.*expected '{WEIGHTS_FORMAT}'"):
        read_weights(path)


def test_the_card_says_what_the_model_is_for_and_what_was_not_measured(run, monkeypatch, tmp_path):
    params, weights, card = run
    text = card.read_text()
    for needed in (
        "## Architecture",
        "## Recipe",
        "Simulated, no patient data",
        "Not for clinical use",
        "Teaching and method development",
        "Chapter 5 has not measured this model",  # the metrics stage did not run here
        "`control`, `patient`",
        weights.name,
    ):
        assert needed in text, needed
    monkeypatch.setenv("NEURODIFF_ROOT", str(tmp_path))  # a checkout without seeds.json
    assert "Not measured in this checkout" in release.model_card(params, weights)
    seeds = tmp_path / release.SEEDS_RESULTS
    seeds.parent.mkdir(parents=True)
    fid = {
        "label": "FID (features)",
        "values": [0.031, 0.052],
        "median": 0.0415,
        "min": 0.031,
        "max": 0.052,
        "baseline_ci": [0.02, 0.045],
        "verdicts": ["inside", "outside"],
    }
    recipes = {"base": {"seeds": [0, 1], "metrics": {"fid": fid}}}
    seeds.write_text(json.dumps({"cpu": "A CPU", "demo_recipe": "base", "recipes": recipes}))
    card = release.model_card(params, weights)
    assert "generator seeds [0, 1], measured on A CPU" in card
    assert "| FID (features) | 0.031, 0.052 |" in card


def test_seed_spread_reads_what_the_file_holds(tmp_path):
    path = tmp_path / "seeds.json"
    assert "not measured in this checkout" in release.seed_spread(path).lower()
    fid = {
        "label": "FID",
        "values": [0.03, 0.05, 0.04],
        "median": 0.04,
        "min": 0.03,
        "max": 0.05,
        "baseline_ci": [0.02, 0.045],
        "verdicts": ["inside", "outside", "inside"],
    }
    seeds = {
        "cpu": {"model": "Test CPU", "cores": 2, "flags": []},
        "demo_recipe": "churn_0.3",
        "recipes": {
            "base": {"seeds": [0, 1, 2], "metrics": {"fid": {**fid, "median": 9.0}}},
            "churn_0.3": {"seeds": [0, 1, 2], "metrics": {"fid": fid}},
        },
    }
    path.write_text(json.dumps(seeds))
    table = release.seed_spread(path)
    assert "Recipe `churn_0.3`, generator seeds [0, 1, 2], measured on Test CPU" in table
    assert "| FID | 0.03, 0.05, 0.04 | 0.04 [0.03, 0.05] | [0.02, 0.045] | 2/3 |" in table
    path.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="no 'recipes' mapping"):
        release.seed_spread(path)


def test_no_checkpoint_writes_no_download(tiny_cohort, tmp_path):
    params = config.resolve("smoke", {"cohort": str(tiny_cohort), "derived_dir": str(tmp_path)})
    assert release.write_generator(params, tmp_path / "downloads") is None
    assert not (tmp_path / "downloads").exists()


def test_unknown_sampling_settings_are_named(run):
    from neurodiff.config import ConfigError
    from neurodiff.sample import load_generator

    _, weights, _ = run
    generator = load_generator(weights)
    with pytest.raises(ConfigError, match="unknown setting"):
        generator.sample(1, stepz=3)
