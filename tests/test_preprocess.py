"""Tests of the preprocessing stage: outputs, split, cache, QC, registration, errors, readers."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurodiff import artifacts, config
from neurodiff import preprocess as pp
from neurodiff.errors import ConfigError, DataError
from neurodiff.io import file_sha256
from neurodiff.preprocess import pipeline, stage


def make_params(cohort: Path, derived: Path, **overrides) -> config.Params:
    """The smoke profile (16^2 slices, 4 mm, no registration) on a test cohort."""
    return config.resolve(
        "smoke", {"cohort": str(cohort), "derived_dir": str(derived), **overrides}
    )


def copy_cohort(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def add_subject(
    cohort: Path,
    subject: str,
    site: str,
    data: np.ndarray,
    affine: np.ndarray,
    dtype: str = "float32",
) -> Path:
    """Write ``sub-*/anat/sub-*_T1w.nii.gz`` and its participants.tsv row into a BIDS copy."""
    path = cohort / subject / "anat" / f"{subject}_T1w.nii.gz"
    path.parent.mkdir(parents=True)
    nib.Nifti1Image(np.asarray(data).astype(dtype), affine).to_filename(path)
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype=str)
    row = {c: "n/a" for c in table.columns} | {
        "participant_id": subject,
        "site": site,
        "age": "50",
        "sex": "F",
    }
    pd.concat([table, pd.DataFrame([row])]).to_csv(
        cohort / "participants.tsv", sep="\t", index=False
    )
    return path


def scan(cohort: Path, subject: str) -> Path:
    return cohort / subject / "anat" / f"{subject}_T1w.nii.gz"


@pytest.fixture(scope="module")
def built(tiny_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """One 2D build of the tiny cohort, shared by the read-only tests."""
    params = make_params(tiny_cohort, tmp_path_factory.mktemp("derived"))
    return params, pp.run(params, workers=1)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def test_2d_outputs_shape_range_dtype(built, tiny_cohort: Path) -> None:
    params, result = built
    cfg = params.stage(config.PreprocessConfig)
    folder = artifacts.preprocessed_dir(params)
    assert result.out_dir == folder and not result.cached
    assert result.n_subjects == 12 and result.excluded == []
    for split in ("train", "test"):
        images, index = pp.load_split(params, split)
        assert images.dtype == np.float32
        assert images.shape[1:] == (1, 16, 16)
        assert images.min() >= -1.0 and images.max() <= 1.0
        assert images.min() == -1.0 and images.max() > 0.9  # background and bright tissue
        assert len(index) == len(images) == 2 * index["subject"].nunique()
        assert set(index["slice"]) == set(cfg.slice_indices()) == {7, 10}
        assert list(index["row"]) == list(range(len(images)))
    manifest = pp.load_manifest(params)
    assert manifest["params"]["image_size"] == 16 and manifest["params_hash"] == result.params_hash
    assert manifest["shapes"]["train"] == [result.n_train, 1, 16, 16]
    assert manifest["downsampling"] == {
        "fov_voxels": 56,
        "image_size": 16,
        "resize_factor": 3.5,
        "upsampling": False,
        "unet_downsample_factor": 2,
        "divisible": True,
    }
    sources = manifest["sources"]
    rel = "sub-001/anat/sub-001_T1w.nii.gz"
    assert sources[rel]["sha256"] == file_sha256(tiny_cohort / rel)
    assert "participants.tsv" in sources
    assert set(manifest["outputs"]) >= {
        "train.npy",
        "test.npy",
        "split.tsv",
        "qc.tsv",
        "volumes/sub-001.nii.gz",
    }
    for subject in [f"sub-00{i}" for i in range(1, 7)]:
        vol = nib.load(folder / "volumes" / f"{subject}.nii.gz")
        data = np.asarray(vol.dataobj)
        assert data.shape == (16, 16, 16) and data.dtype == np.float32
        assert data.min() >= 0.0 and data.max() <= 1.0
        assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
        assert np.allclose(vol.header.get_zooms(), 14.0)  # 224 mm / 16
    # a 2D training slice is the volume's axial slice, rescaled to [-1, 1]
    images, index = pp.load_split(params, "train")
    first = index.iloc[0]
    vol = np.asarray(nib.load(folder / "volumes" / f"{first['subject']}.nii.gz").dataobj)
    np.testing.assert_allclose(images[0, 0], vol[:, :, first["slice"]] * 2 - 1, atol=1e-6)


def test_3d_mode_gives_volumes(tiny_cohort: Path, tmp_path: Path) -> None:
    params = make_params(tiny_cohort, tmp_path, spatial_dims=3)
    result = pp.run(params, workers=1)
    images, index = pp.load_split(params, "train")
    assert images.shape == (result.n_train_subjects, 1, 16, 16, 16)
    assert images.dtype == np.float32 and images.min() >= -1.0 and images.max() <= 1.0
    assert (index["slice"] == -1).all() and index["subject"].is_unique
    assert "volumes" in str(result)


def test_training_dataset_is_monai_cache_dataset(built) -> None:
    import torch
    from monai.data import CacheDataset, DataLoader

    params, result = built
    ds = pp.training_dataset(params)
    assert isinstance(ds, CacheDataset) and len(ds) == result.n_train
    item = ds[0]
    assert set(item) == {"image"}
    assert item["image"].shape == (1, 16, 16) and item["image"].dtype == torch.float32
    images, _ = pp.load_split(params)
    np.testing.assert_array_equal(item["image"].numpy(), images[0])
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 1, 16, 16)
    mapped, _ = pp.load_split(params, mmap=True)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, images)


def test_cli_runs_the_stage(built, capsys: pytest.CaptureFixture) -> None:
    from neurodiff.cli import main

    params, _ = built
    args = [
        "preprocess",
        "--profile",
        "smoke",
        "-p",
        f"cohort={params.cohort}",
        "-p",
        f"derived_dir={params.derived_dir}",
    ]
    assert main(args) == 0
    assert "reused the cache" in capsys.readouterr().out
    assert main([*args, "-p", "target_spacing=0"]) == 2
    assert "target_spacing" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------


def test_split_has_no_leakage_and_is_stratified(built) -> None:
    params, result = built
    split = pp.load_split_table(params)
    train = set(split.loc[split["split"] == "train", "subject"])
    test = set(split.loc[split["split"] == "test", "subject"])
    assert not train & test
    assert train | test == {f"sub-{i:03d}" for i in range(1, 13)}
    assert split.groupby("site")["split"].nunique().eq(2).all()  # every site in both
    _, train_index = pp.load_split(params, "train")
    _, test_index = pp.load_split(params, "test")
    assert set(train_index["subject"]) == train and set(test_index["subject"]) == test
    assert (result.n_train_subjects, result.n_test_subjects) == (len(train), len(test))


def test_split_subjects_is_seeded_and_proportional() -> None:
    table = pd.DataFrame(
        {"subject": [f"s{i:02d}" for i in range(40)], "site": ["A"] * 20 + ["B"] * 12 + ["C"] * 8}
    )
    a = pp.split_subjects(table, 0.25, seed=0)
    assert a.equals(pp.split_subjects(table.sample(frac=1, random_state=1), 0.25, seed=0))
    assert not a.equals(pp.split_subjects(table, 0.25, seed=1))
    counts = a[a["split"] == "test"].groupby("site").size().to_dict()
    assert counts == {"A": 5, "B": 3, "C": 2}
    # a site with two subjects still gives one to each side; a single subject goes to train
    small = pd.DataFrame({"subject": ["x", "y", "z"], "site": ["A", "A", "B"]})
    s = pp.split_subjects(small, 0.1, seed=0).set_index("subject")["split"]
    assert sorted(s[["x", "y"]]) == ["test", "train"] and s["z"] == "train"


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def test_cache_reuse_and_invalidation(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurodiff.preprocess import workers

    cohort = copy_cohort(tiny_cohort, tmp_path / "cohort")
    params = make_params(cohort, tmp_path / "derived")
    first = pp.run(params, workers=1)
    manifest = artifacts.preprocessed_dir(params) / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    images = np.concatenate([pp.load_split(params, part)[0] for part in ("train", "test")])

    def no_work(*args, **kwargs):
        raise AssertionError("a cached run must not read the cohort or process scans")

    with monkeypatch.context() as m:  # reuse = no scan is read: only file sizes and dates
        m.setattr(stage, "load_cohort", no_work)
        m.setattr(workers, "preprocess_scan", no_work)
        again = pp.run(params, workers=1)
    assert again.cached and not first.cached
    assert manifest.stat().st_mtime_ns == stamp
    assert again.n_train == first.n_train and again.params_hash == first.params_hash

    # touching a source without changing it keeps the cache (checksums decide)
    src = scan(cohort, "sub-002")
    src.touch()
    assert pp.run(params, workers=1).cached

    # a changed parameter builds into its own folder; the first build stays, reused as it is
    other = make_params(cohort, tmp_path / "derived", clip_percentiles=[1.0, 99.0])
    rebuilt = pp.run(other, workers=1)
    assert not rebuilt.cached and rebuilt.params_hash != first.params_hash
    assert rebuilt.out_dir != first.out_dir and rebuilt.out_dir.parent == first.out_dir.parent
    assert manifest.stat().st_mtime_ns == stamp
    assert pp.run(params, workers=1).cached
    # parameters never built have no data, whatever was built before
    with pytest.raises(DataError, match="no complete preprocessed data.*same parameters"):
        pp.load_manifest(make_params(cohort, tmp_path / "derived", clip_percentiles=[2.0, 98.0]))

    # a changed source file rebuilds; parallel workers give the same arrays as one process
    img = nib.load(src)
    data = np.asarray(img.dataobj).copy()
    data[data.shape[0] // 2] = 0
    nib.Nifti1Image(data, img.affine, img.header).to_filename(src)
    changed = pp.run(params, workers=2)
    assert not changed.cached
    assert pp.load_manifest(params)["timing"]["workers"] == 2
    serial = pp.run(params, workers=1, force=True)
    assert not serial.cached
    serial_images = np.concatenate([pp.load_split(params, p)[0] for p in ("train", "test")])
    assert not np.array_equal(serial_images, images)  # sub-002 changed ...
    pp.run(params, workers=2, force=True)
    parallel_images = np.concatenate([pp.load_split(params, p)[0] for p in ("train", "test")])
    np.testing.assert_array_equal(parallel_images, serial_images)  # ... reproducibly

    # a new scan in the cohort rebuilds
    add_subject(cohort, "sub-013", "A", data, img.affine, dtype=str(img.get_data_dtype()))
    grown = pp.run(params, workers=1)
    assert not grown.cached and grown.n_subjects == 13


def test_interrupted_run_leaves_nothing_that_looks_complete(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = make_params(tiny_cohort, tmp_path)
    folder = artifacts.preprocessed_dir(params)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stage, "write_split_arrays", crash)
        with pytest.raises(KeyboardInterrupt):
            pp.run(params, workers=1)
    assert not folder.exists()
    assert [p.name for p in folder.parent.iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(DataError, match=r"neurodiff preprocess --profile smoke"):
        pp.load_split(params)

    # an interrupted rebuild keeps the previous complete build
    pp.run(params, workers=1)
    with monkeypatch.context() as m:
        m.setattr(stage, "write_split_arrays", crash)
        with pytest.raises(KeyboardInterrupt):
            pp.run(params, workers=1, force=True)
    assert pp.run(params, workers=1).cached
    # and an interrupted build of other parameters leaves nothing for them
    other = make_params(tiny_cohort, tmp_path, seed=3)
    with monkeypatch.context() as m:
        m.setattr(stage, "write_split_arrays", crash)
        with pytest.raises(KeyboardInterrupt):
            pp.run(other, workers=1)
    with pytest.raises(DataError, match="no complete preprocessed data"):
        pp.load_split(other)


def test_load_split_reports_missing_and_incomplete_data(built, tmp_path: Path) -> None:
    params, _ = built
    with pytest.raises(DataError, match=r"no complete preprocessed data in .*nothing"):
        pp.load_split(tmp_path / "nothing")
    copy = shutil.copytree(artifacts.preprocessed_dir(params), tmp_path / "smoke" / "preprocessed")
    (copy / "test.npy").unlink()
    with pytest.raises(DataError, match=r"test\.npy is missing.*neurodiff preprocess"):
        pp.load_split(copy, "test")
    np.save(copy / "train.npy", np.zeros((3, 1, 16, 16), np.float64))
    with pytest.raises(DataError, match="the manifest expects float32"):
        pp.load_split(copy, "train")
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        pp.load_split(params, "validation")


# --------------------------------------------------------------------------------------------
# Orientation, registration, QC
# --------------------------------------------------------------------------------------------


def _twins(tiny_cohort: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An LPS-stored scan (site B of the tiny cohort) and its RAS twin (same voxels, reordered)."""
    lps = next(
        p
        for p in sorted(tiny_cohort.glob("sub-*/anat/*_T1w.nii.gz"))
        if nib.aff2axcodes(nib.load(p).affine) == ("L", "P", "S")
    )
    img = nib.load(lps)
    ras = nib.as_closest_canonical(img)
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    path = tmp_path / "ras_twin.nii.gz"
    ras.to_filename(path)
    assert not np.array_equal(np.asarray(img.dataobj), np.asarray(ras.dataobj))
    return lps, path


def test_lps_scan_and_its_ras_twin_come_out_identical(tiny_cohort: Path, tmp_path: Path) -> None:
    lps, ras = _twins(tiny_cohort, tmp_path)
    cfg = make_params(tiny_cohort, tmp_path).stage(config.PreprocessConfig)
    a = pp.preprocess_scan(lps, cfg, "lps")
    b = pp.preprocess_scan(ras, cfg, "ras")
    np.testing.assert_allclose(a.volume, b.volume, atol=1e-5)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    assert a.volume.max() == pytest.approx(1.0)


def test_rigid_registration_undoes_a_head_rotation(tiny_cohort: Path, tmp_path: Path) -> None:
    """The one registration test: the same head, turned by 12 degrees inside the scanner."""
    from scipy.ndimage import rotate

    src = scan(tiny_cohort, "sub-002")
    img = nib.load(src)
    data = np.asarray(img.dataobj, dtype=np.float32)
    turned = tmp_path / "turned.nii.gz"
    nib.Nifti1Image(rotate(data, 12, axes=(1, 2), reshape=False, order=1), img.affine).to_filename(
        turned
    )
    base = make_params(tiny_cohort, tmp_path, image_size=32).stage(config.PreprocessConfig)
    rigid = dataclasses.replace(base, register="rigid")

    none_a, none_b = (pp.preprocess_scan(p, base) for p in (src, turned))
    rigid_a, rigid_b = (pp.preprocess_scan(p, rigid) for p in (src, turned))
    unregistered = np.abs(none_a.volume - none_b.volume).mean()
    registered = np.abs(rigid_a.volume - rigid_b.volume).mean()
    print(f"mean |difference|: unregistered {unregistered:.4f}, registered {registered:.4f}")
    assert registered < 0.5 * unregistered
    assert pp.ncc(rigid_a.volume, rigid_b.volume) > 0.97
    assert rigid_a.ncc > rigid.qc_threshold and rigid_b.ncc > rigid.qc_threshold
    assert abs(rigid_a.ncc - rigid_b.ncc) < 0.02  # the turned head lands where the first did
    assert rigid_a.timings["register"] > 0 and none_a.timings["register"] == 0
    np.testing.assert_allclose(rigid_a.affine, rigid_b.affine)  # the MNI grid, for every scan


def test_brain_mask_keeps_the_template_brain_only(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "_register", lambda img, cfg: np.eye(4))  # the mask is the point
    base = make_params(tiny_cohort, tmp_path, register="rigid").stage(config.PreprocessConfig)
    masked_cfg = dataclasses.replace(base, mask_brain=True)
    head = pp.preprocess_scan(scan(tiny_cohort, "sub-001"), base)
    brain = pp.preprocess_scan(scan(tiny_cohort, "sub-001"), masked_cfg)
    outside = pipeline._template_final("rigid", 4.0, 56, 16) < 0.01  # far from the template brain
    assert head.volume[outside].max() > 0.3  # scalp and skull
    assert brain.volume[outside].max() < 0.05
    assert brain.volume.max() == pytest.approx(1.0)
    assert brain.ncc == pytest.approx(head.ncc)  # QC judges the registered head, not the mask


def test_qc_flags_and_excludes_a_scrambled_scan(tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = copy_cohort(tiny_cohort, tmp_path / "cohort")
    img = nib.load(scan(cohort, "sub-003"))
    data = np.asarray(img.dataobj)
    scrambled = np.random.default_rng(0).permutation(data.ravel()).reshape(data.shape)
    add_subject(cohort, "sub-099", "C", scrambled, img.affine)

    params = make_params(cohort, tmp_path / "derived")
    result = pp.run(params, workers=1)
    qc = pp.load_qc(params).set_index("subject")
    assert qc.loc["sub-099", "ncc"] < 0.4 and qc.loc["sub-099", "flagged"]
    assert qc.drop(index="sub-099")["ncc"].min() > 0.6
    assert qc["flagged"].tolist().count(True) == 1 and qc.loc["sub-099", "excluded"]
    assert result.excluded == result.flagged == ["sub-099"] and "sub-099" in str(result)
    split = pp.load_split_table(params).set_index("subject")
    assert split.loc["sub-099", "split"] == "excluded"
    for part in ("train", "test"):
        assert "sub-099" not in set(pp.load_split(params, part)[1]["subject"])
    manifest = pp.load_manifest(params)
    assert manifest["qc"]["excluded"] == ["sub-099"] and manifest["n"]["excluded"] == 1

    kept = make_params(cohort, tmp_path / "derived", qc_exclude=False)
    result = pp.run(kept, workers=1)
    assert result.flagged == ["sub-099"] and result.excluded == []
    assert pp.load_split_table(kept).set_index("subject").loc["sub-099", "split"] in {
        "train",
        "test",
    }


def test_failed_registration_names_the_subject(
    tiny_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipeline._register

    def flaky(img, cfg):
        if img.meta.get("filename_or_obj", "").endswith("sub-004_T1w.nii.gz"):
            raise ValueError("optimiser diverged")
        return np.eye(4)  # skip the real optimiser: this test is about the error path

    assert callable(real)
    monkeypatch.setattr(pipeline, "_register", flaky)
    params = make_params(tiny_cohort, tmp_path, register="rigid", qc_exclude=False)
    with pytest.raises(DataError, match=r"registration failed for subject sub-004 .*diverged"):
        pp.run(params, workers=1)
    assert not artifacts.preprocessed_dir(params).exists()
    excluded = pp.run(make_params(tiny_cohort, tmp_path, register="rigid"), workers=1)
    assert "sub-004" in excluded.excluded


# --------------------------------------------------------------------------------------------
# Bad input: clear errors, before any work
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target_spacing": 0}, r"'target_spacing' must be > 0; got 0"),
        ({"target_spacing": -2.0}, r"'target_spacing' must be > 0"),
        ({"image_size": 64}, r"'image_size' \(64\) is not reachable.*56 voxels"),
        ({"image_size": 15}, r"'image_size' must be divisible .* = 2; got 15"),
        ({"slice_range": [0.5, 1.2]}, r"'slice_range' must be <= 1"),
        ({"slice_range": [0.6, 0.4]}, r"'slice_range' must be \[start, stop\]"),
        ({"mask_brain": True}, r"'mask_brain' needs a registration"),
        ({"fov_mm": 0}, r"'fov_mm' must be > 0"),
    ],
)
def test_bad_parameters_are_refused_before_work(tmp_path: Path, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        make_params(tmp_path, tmp_path, **overrides)


def test_slices_are_spread_over_the_range_and_capped(tmp_path: Path) -> None:
    cfg = make_params(tmp_path, tmp_path).stage(config.PreprocessConfig)
    assert cfg.slice_indices() == [7, 10]  # 16 voxels, range 0.45-0.65 -> slices 7..10
    assert cfg.slice_indices(3) == [7, 8, 10]
    assert cfg.slice_indices(9) == [7, 8, 9, 10]  # capped at what the range covers
    wide = make_params(tmp_path, tmp_path, image_size=32, slices_per_subject=8)
    assert len(wide.stage(config.PreprocessConfig).slice_indices()) == 7


def test_missing_cohort_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'cohort' must be a folder.*does not exist"):
        pp.run(make_params(tmp_path / "nowhere", tmp_path))


def test_too_few_subjects_for_a_split(tiny_cohort: Path, tmp_path: Path) -> None:
    cohort = tmp_path / "one"
    (cohort / "sub-001").mkdir(parents=True)
    shutil.copytree(tiny_cohort / "sub-001" / "anat", cohort / "sub-001" / "anat")
    table = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t", dtype=str)
    table[table["participant_id"] == "sub-001"].to_csv(
        cohort / "participants.tsv", sep="\t", index=False
    )
    shutil.copy(tiny_cohort / "dataset_description.json", cohort)
    with pytest.raises(DataError, match=r"at least 2 subjects; 1 left of 1"):
        pp.run(make_params(cohort, tmp_path / "derived"), workers=1)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_figures_and_tables(built) -> None:
    from matplotlib.figure import Figure

    from neurodiff import artifacts
    from neurodiff.viz import preprocess as plots

    params, result = built
    subjects = pp.example_subjects(params)
    assert len(subjects) == 3  # one per site
    examples = pp.before_after_examples(params)
    assert [e["subject"] for e in examples] == subjects
    assert examples[0]["volume"].shape == (16, 16, 16)
    assert len(examples[1]["stored_codes"]) == 3
    fig = plots.plot_before_after(examples)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * 6
    assert fig.axes[0].get_ylabel().startswith(subjects[0])
    assert fig.axes[3].images[0].get_array().shape == (16, 16)

    hist = plots.plot_normalisation_histograms(
        artifacts.load_histograms(params), params.normalise, params.clip_percentiles
    )
    assert [ax.get_title() for ax in hist.axes][0] == "before normalisation"
    assert "percentile 0.5-99.5" in hist.axes[1].get_title()

    table = pp.split_summary(params)
    assert table.loc["total", "total"] == 12
    assert table.loc["total", "train"] == result.n_train_subjects

    qc = pp.load_qc(params)
    qc_fig = plots.plot_qc(qc, params.qc_threshold, params.qc_exclude)
    assert qc_fig.axes[0].lines[0].get_ydata()[0] == params.qc_threshold
    assert sum(len(c.get_offsets()) for c in qc_fig.axes[0].collections) == len(qc)

    images, index = artifacts.load_split(params, "train")
    grid = plots.plot_model_inputs(images, index, n=4)
    assert len([ax for ax in grid.axes if ax.images]) == 4
    assert grid.axes[0].images[0].get_array().shape == (16, 16)
    assert grid.axes[0].get_title().startswith(index["subject"].iloc[0])

    manifest = artifacts.load_manifest(params)
    timing = manifest["timing"]
    assert set(timing["seconds_per_subject"]) == set(pp.STEPS)
    assert list(pp.timing_table(params).index) == list(pp.STEPS)
    summary = pp.summary_table(params)["value"]
    assert summary["cache key (parameters + pipeline)"] == result.params_hash
    assert summary["field of view"].startswith("224 mm cube = 56^3 voxels")
