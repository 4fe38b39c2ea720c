"""Stage 4 (neurodiff.sample): the synthetic cohort on disk, its provenance and errors, the
sampler table and the chapter's figures."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import tiny_run_params

from neurodiff import artifacts, config
from neurodiff.artifacts import load_synthetic
from neurodiff.errors import CheckpointError, ConfigError, DataError
from neurodiff.sample import sampler_table, write_synthetic
from neurodiff.sample import speedup as sample_speedup
from neurodiff.sampling import generate, reverse_process

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------
# the stage: a trained smoke model -> synthetic cohort on disk
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    """Params of a smoke run whose preprocessing and (2-step) training are done."""
    from neurodiff import preprocess, train

    derived = tmp_path_factory.mktemp("derived")
    params = tiny_run_params(
        tiny_cohort,
        derived,
        groups=[],  # the unconditional path (test_augment.py samples each group)
    )
    preprocess.run(params)
    train.train(params, preprocess.load_split(params, "train")[0], progress=False)
    return params


@pytest.fixture(scope="module")
def synthetic(trained):
    """The result of `neurodiff sample` (3 slices, DDIM-5, seed 4) for the trained smoke model."""
    from neurodiff.sample import run

    return run(trained)


def _with(params, **overrides):
    return config.Params({**params.to_dict(), **overrides})


def test_run_writes_nifti_with_the_target_geometry_and_provenance(trained, synthetic):
    from neurodiff.artifacts import load_manifest
    from neurodiff.checkpoints import latest_checkpoint
    from neurodiff.intensity import to_unit_range
    from neurodiff.io import file_sha256
    from neurodiff.model import load_ema_model
    from neurodiff.templates import target_affine

    result = synthetic
    out = artifacts.synthetic_dir(trained)
    assert result.out_dir == out and result.n_samples == 3
    assert "3 images of 16x16" in str(result) and "ddim, 5 network evaluations" in str(result)
    files = sorted(out.glob("sub-*/anat/*_T1w.nii.gz"))
    assert [f.name for f in files] == [f"sub-synth000{i}_T1w.nii.gz" for i in (1, 2, 3)]

    target = load_manifest(trained)["target"]
    spacing = target["volume_spacing_mm"]
    expected = target_affine(spacing, 16) @ np.array(
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, np.mean(target["slices"])], [0, 0, 0, 1]]
    )
    for f in files:
        img = nib.load(f)
        assert img.shape == (16, 16, 1)
        np.testing.assert_allclose(img.affine, expected, atol=1e-5)
        np.testing.assert_allclose(img.header.get_zooms(), (spacing,) * 3, rtol=1e-6)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        data = np.asarray(img.dataobj)
        assert data.dtype == np.float32
        assert 0.0 <= data.min() < data.max() <= 1.0

    # the files hold exactly the seeded samples of the latest checkpoint's EMA weights
    model, mcfg, ckpt = load_ema_model(trained)
    again = generate(model, mcfg, 3, sampler="ddim", steps=5, batch_size=2, seed=4, progress=False)
    synthetic = load_synthetic(trained)
    assert synthetic.shape == (3, 1, 16, 16) and synthetic.dtype == np.float32
    np.testing.assert_array_equal(synthetic, to_unit_range(again))

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    gen = desc["GeneratedBy"][0]
    assert ckpt == latest_checkpoint(artifacts.train_dir(trained))
    assert gen["CheckpointSHA256"] == file_sha256(ckpt)
    assert (gen["Sampler"], gen["Steps"], gen["Eta"], gen["Seed"]) == ("ddim", 5, 0.0, 4)
    assert gen["ParametersHash"] == trained.hash()
    assert gen["Version"]
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0].split("\t")[:2] == ["participant_id", "site"]
    assert participants[1].split("\t")[:2] == ["sub-synth0001", "synthetic"]
    assert (out / "grid.png").stat().st_size > 0


def test_interrupted_run_leaves_no_partial_nifti(trained, monkeypatch):
    import shutil

    from neurodiff.sample import run
    from neurodiff.sample import stage as sample_stage

    params = _with(trained, profile="interrupted")
    shutil.copytree(artifacts.train_dir(trained), artifacts.train_dir(params))
    shutil.copytree(artifacts.preprocessed_dir(trained), artifacts.preprocessed_dir(params))
    out = artifacts.synthetic_dir(params)

    def boom(*args, **kwargs):  # called after the NIfTI files are written
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(sample_stage, "save_grid", boom)
        with pytest.raises(KeyboardInterrupt):
            run(params)
    assert not out.exists()
    leftovers = [p for p in out.parent.rglob("*") if "synth" in p.name]
    assert leftovers == []

    run(params)  # a complete run, then an interrupted one with other sampler settings
    with monkeypatch.context() as m:
        m.setattr(sample_stage, "save_grid", boom)
        with pytest.raises(KeyboardInterrupt):
            run(_with(params, steps=4))
    # the previous complete cohort is still there, unchanged
    gen = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert gen["Steps"] == 5
    assert len(list(out.glob("sub-*/anat/*.nii.gz"))) == 3
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    assert not artifacts.synthetic_dir(_with(params, steps=4)).exists()


def test_checkpoint_problems_are_named(trained, tmp_path):
    import shutil

    from neurodiff.sample import run

    params = _with(trained, derived_dir=str(tmp_path))
    shutil.copytree(artifacts.preprocessed_dir(trained), artifacts.preprocessed_dir(params))
    with pytest.raises(CheckpointError, match="no checkpoint in .*checkpoints"):
        run(params)
    shutil.copytree(artifacts.train_dir(trained), artifacts.train_dir(params))
    # a checkpoint of another model where this one's should be: the field is named
    other = _with(params, num_res_blocks=2)
    shutil.copytree(artifacts.train_dir(trained), artifacts.train_dir(other))
    with pytest.raises(CheckpointError, match="num_res_blocks: checkpoint has 1, expected 2"):
        run(other)
    ckpt = sorted((artifacts.train_dir(params) / "checkpoints").glob("step-*.pt"))[-1]
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        run(params)
    assert not artifacts.synthetic_dir(params).exists()


def test_bad_parameters_fail_before_the_checkpoint_is_read(trained, tmp_path):
    from neurodiff.sample import run

    params = _with(trained, derived_dir=str(tmp_path))  # nothing there at all
    with pytest.raises(ConfigError, match=r"'steps' \(60\) must be <= the model's timesteps"):
        run(_with(params, steps=60))
    with pytest.raises(DataError, match="no complete preprocessed data"):
        run(params)


def test_load_synthetic_refuses_a_missing_or_foreign_folder(tmp_path):
    with pytest.raises(DataError, match="no synthetic cohort in .*run `neurodiff sample"):
        load_synthetic(tmp_path / "nothing")
    (tmp_path / "dataset_description.json").write_text('{"Name": "x"}')
    with pytest.raises(DataError, match="not a neurodiff synthetic dataset description"):
        load_synthetic(tmp_path)


def test_synthetic_volumes_reload_through_the_cohort_loader(tmp_path):
    from neurodiff.cohort import load_cohort

    rng = np.random.default_rng(0)
    vols = rng.uniform(0, 1, (3, 1, 16, 16, 16)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -15
    write_synthetic(tmp_path / "synthetic", vols, affine=affine, generated_by={"Seed": 0})
    table = load_cohort(tmp_path / "synthetic")
    assert table.attrs["layout"] == "bids"
    assert list(table["subject"]) == ["sub-synth0001", "sub-synth0002", "sub-synth0003"]
    assert set(table["site"]) == {"synthetic"}
    assert set(table["shape"]) == {(16, 16, 16)} and set(table["orientation"]) == {"RAS"}
    assert set(table["voxel_size"]) == {(2.0, 2.0, 2.0)}
    np.testing.assert_array_equal(load_synthetic(tmp_path / "synthetic"), vols)


def test_synthetic_slices_reload_through_the_cohort_loader(trained, synthetic):
    from neurodiff.cohort import load_cohort

    table = load_cohort(artifacts.synthetic_dir(trained))
    assert len(table) == 3 and set(table["site"]) == {"synthetic"}
    assert set(table["shape"]) == {(16, 16, 1)}


def test_sampler_table_on_the_real_test_split(trained):
    from neurodiff.artifacts import load_split
    from neurodiff.intensity import to_unit_range
    from neurodiff.model import load_ema_model
    from neurodiff.sample import compare_samplers, default_table_rows

    assert default_table_rows(50) == [
        ("ddpm", 50),
        ("ddim", 50),
        ("ddim", 20),
        ("ddim", 10),
        ("pndm", 50),
        ("pndm", 20),
    ]
    assert ("ddim", 250) in default_table_rows(250) and ("ddim", 250) not in default_table_rows(249)
    model, mcfg, _ = load_ema_model(trained)
    test = to_unit_range(load_split(trained, "test")[0])
    train_ = to_unit_range(load_split(trained, "train")[0])
    table = sampler_table(
        model, mcfg, test, train_, n=2, rows=[("ddpm", 50), ("ddim", 10), ("pndm", 10)]
    )
    assert list(table["label"]) == ["real (reference)", "ddpm-50", "ddim-10", "pndm-10"]
    assert list(table["steps"]) == [0, 50, 10, 10]
    assert (table["seconds_per_sample"][1:] > 0).all()
    assert np.isfinite(table[["mmd_rbf", "mmd_linear"]].to_numpy()).all()
    assert table.attrs["bandwidth"] > 0 and table.attrs["n"] == 2
    seconds = table.set_index("label")["seconds_per_sample"]
    assert sample_speedup(table, "ddim-10", "ddpm-50") == pytest.approx(
        seconds["ddpm-50"] / seconds["ddim-10"]
    )
    assert sample_speedup(table, "ddim-99", "ddpm-50") is None
    with pytest.raises(ConfigError, match="sampler_table_samples"):
        sampler_table(model, mcfg, test, n=1)
    with pytest.raises(DataError, match=r"real images must have shape \(M, 1, 16, 16\)"):
        sampler_table(model, mcfg, test[:, :, :8], n=2)
    # the same table for the run's parameters, in one call (notebook 04)
    rows = [("ddim", 5)]
    for_run = compare_samplers(
        config.Params({**trained.to_dict(), "sampler_table_samples": 2}), rows
    )
    assert list(for_run["label"]) == ["real (reference)", "ddim-5"]
    assert for_run.attrs["n"] == 2


def test_figures(model, smoke_cfg, trained):
    from matplotlib.figure import Figure

    from neurodiff.sample import reverse_processes
    from neurodiff.viz.sample import (
        plot_orthogonal,
        plot_reverse_process,
        plot_sampler_tradeoff,
        plot_synthetic_vs_real,
    )

    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 1, (5, 1, 16, 16))
    vols = rng.uniform(0, 1, (2, 1, 16, 16, 16))
    fig = plot_synthetic_vs_real(imgs, imgs[::-1], n=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 8
    assert [fig.axes[0].get_ylabel(), fig.axes[4].get_ylabel()] == ["real (test)", "synthetic"]
    np.testing.assert_allclose(fig.axes[4].images[0].get_array(), imgs[::-1][0, 0].T, rtol=1e-6)
    fig = plot_synthetic_vs_real(vols, vols, n=2)
    assert fig.axes[0].images[0].get_array().shape == (16, 16)  # the central axial slice
    fig = plot_orthogonal(vols, n=2)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["sagittal", "coronal", "axial"]
    with pytest.raises(ValueError, match=r"'volumes' must be \(N, 1, X, Y, Z\)"):
        plot_orthogonal(imgs)
    rp = reverse_process(model, smoke_cfg, steps=5, n_snapshots=3)
    fig = plot_reverse_process(rp)
    assert len(fig.axes) == 8  # 2 rows x (3 snapshots + final)
    assert [ax.get_title() for ax in fig.axes[:4]] == [f"t = {t}" for t in rp.timesteps] + [
        "sample"
    ]
    both = reverse_processes(trained, n_snapshots=2)
    assert both["ddpm"].sampler == "ddpm" and both["ddim"].sampler == "ddim"
    assert both["ddpm"].timesteps[0] == trained.timesteps - 1
    table = sampler_table(model, smoke_cfg, imgs, imgs, n=2, rows=[("ddim", 5), ("ddim", 2)])
    fig = plot_sampler_tradeoff(table)
    xs = fig.axes[0].lines[0].get_xdata()
    assert len(xs) == 2 and list(xs) == sorted(xs)
    assert fig.axes[0].lines[-1].get_label() == "real train vs real test"


def test_cli_sample(trained, capsys):
    from neurodiff.cli import main

    base = [
        "sample",
        "--profile",
        "smoke",
        "-p",
        f"derived_dir={trained.derived_dir}",
        "-p",
        f"cohort={trained.cohort}",
        "-p",
        "qc_exclude=false",
        "-p",
        "train_steps=2",
        "-p",
        "checkpoint_every=2",
        "-p",
        "preview_every=0",
        "-p",
        "seed=4",
        "-p",
        "groups=[]",
    ]
    assert main([*base, "-p", "sampler=lms"]) == 2
    assert "parameter 'sampler' must be one of" in capsys.readouterr().err
    assert main([*base, "-p", "sampler=pndm", "-p", "steps=4", "-p", "n_samples=2"]) == 0
    out = capsys.readouterr().out
    assert "synthetic cohort: 2 images of 16x16" in out and "pndm, 4 network evaluations" in out
    pndm = config.resolve("smoke", [*base[4::2], "sampler=pndm", "steps=4", "n_samples=2"])
    assert len(load_synthetic(pndm)) == 2


def test_provenance_summarises_generated_by(trained, synthetic):
    from neurodiff.io import folder_summary
    from neurodiff.sample import provenance

    out = artifacts.synthetic_dir(trained)
    record = provenance(out)
    full = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert "ModelConfig" in full and "ModelConfig" not in record
    assert record == {k: v for k, v in full.items() if k != "ModelConfig"}
    assert record["Sampler"] in ("ddpm", "ddim", "pndm") and len(record["CheckpointSHA256"]) == 64
    text = folder_summary(out)
    n_nifti = len(list(out.rglob("*.nii.gz")))
    assert n_nifti >= 1 and f", {n_nifti} *.nii.gz" in text
    assert "dataset_description.json" in text


def test_the_sampler_table_of_a_v_prediction_model_leaves_pndm_out(model, smoke_cfg):
    """PNDM needs epsilon-prediction: chapter 4 of a v-prediction run (teaching exercise 4) must
    still draw its table, without the PNDM rows."""
    import dataclasses

    from neurodiff.sample import sampler_table

    v_cfg = dataclasses.replace(smoke_cfg, prediction_type="v_prediction")
    real = np.random.default_rng(0).random((4, 1, 16, 16), dtype=np.float32)
    table = sampler_table(model, v_cfg, real, n=2, rows=None)
    assert "pndm" not in set(table["sampler"]) and {"ddpm", "ddim"} <= set(table["sampler"])
