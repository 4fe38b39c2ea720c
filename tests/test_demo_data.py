"""The simulated multi-site cohort: BIDS layout, site differences, determinism, patients."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurodiff.cli import main
from neurodiff.demo_data import SITE_PROTOCOLS, anatomy, cohort, make_demo_cohort, site_protocols
from neurodiff.errors import ConfigError


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_bids_layout_and_description(tiny_cohort: Path) -> None:
    scans = sorted(tiny_cohort.glob("sub-*/anat/sub-*_T1w.nii.gz"))
    assert [p.name for p in scans] == [f"sub-{i:03d}_T1w.nii.gz" for i in range(1, 13)]
    table = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "site", "age", "sex", "group"]
    assert table["participant_id"].tolist() == [f"sub-{i:03d}" for i in range(1, 13)]
    assert table["site"].value_counts().to_dict() == {"A": 4, "B": 4, "C": 4}
    assert table["age"].between(20, 86).all()
    assert set(table["sex"]) <= {"F", "M"}
    desc = json.loads((tiny_cohort / "dataset_description.json").read_text())
    assert "SIMULATED" in desc["Name"]
    assert desc["DatasetType"] == "raw"
    assert desc["GeneratedBy"][0]["Name"] == "neurodiff demo-data"
    assert "MNI ICBM152" in desc["GeneratedBy"][0]["Description"]
    assert desc["SimulationParameters"]["seed"] == 0
    assert len(desc["SimulationParameters"]["site_protocols"]) == 3
    assert "SIMULATED" in (tiny_cohort / "README").read_text()


def test_each_site_stores_its_own_way(tiny_cohort: Path) -> None:
    table = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    expected = {p.name: p for p in SITE_PROTOCOLS}
    assert {p.orientation for p in SITE_PROTOCOLS} >= {"RAS", "LPS"}
    levels = {}
    for pid, site in zip(table["participant_id"], table["site"]):
        img = nib.load(tiny_cohort / pid / "anat" / f"{pid}_T1w.nii.gz")
        proto = expected[site]
        assert "".join(nib.aff2axcodes(img.affine)) == proto.orientation
        assert img.get_data_dtype() == np.dtype(proto.dtype)
        # fast mode doubles the voxel size
        np.testing.assert_allclose(
            img.header.get_zooms(), np.array(proto.voxel_size) * 2, rtol=1e-6
        )
        assert img.header["qform_code"] == 1 and img.header["sform_code"] == 1
        data = img.get_fdata()
        assert data.ndim == 3 and data.min() >= 0 and np.ptp(data) > 0
        levels.setdefault(site, []).append(np.percentile(data, 99))
    # intensity scales differ by orders of magnitude between sites (uint16 ~1e3, float32 ~1)
    assert min(levels["A"]) > 100 * max(levels["C"])
    assert min(levels["B"]) > 1.5 * max(levels["A"])


def test_same_seed_gives_identical_bytes_other_seed_other_subjects(
    tiny_cohort: Path, tmp_path: Path
) -> None:
    again = make_demo_cohort(
        tmp_path / "again",
        subjects=6,
        sites=3,
        seed=0,
        patients=6,
        resolution=2,
        workers=1,
        progress=False,
    )
    assert _hashes(again) == _hashes(tiny_cohort)

    other = make_demo_cohort(
        tmp_path / "other", subjects=6, sites=3, seed=1, patients=6, resolution=2, progress=False
    )
    first, second = _hashes(tiny_cohort), _hashes(other)
    assert first.keys() == second.keys()
    scans = [k for k in first if k.endswith(".nii.gz")]
    assert all(first[k] != second[k] for k in scans)
    t0 = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    t1 = pd.read_csv(other / "participants.tsv", sep="\t")
    assert t0["age"].tolist() != t1["age"].tolist()


def test_patients_add_a_group_and_keep_the_controls(tmp_path: Path) -> None:
    plain = make_demo_cohort(
        tmp_path / "plain", subjects=3, sites=3, seed=5, resolution=2, progress=False
    )
    with_patients = make_demo_cohort(
        tmp_path / "pat", subjects=3, sites=3, seed=5, patients=2, resolution=2, progress=False
    )
    table = pd.read_csv(with_patients / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "site", "age", "sex", "group"]
    assert table["group"].tolist() == ["control"] * 3 + ["patient"] * 2
    assert table.loc[table["group"] == "patient", "age"].between(45, 80).all()
    h0, h1 = _hashes(plain), _hashes(with_patients)
    for pid in ("sub-001", "sub-002", "sub-003"):
        key = f"{pid}/anat/{pid}_T1w.nii.gz"
        assert h0[key] == h1[key]
    desc = json.loads((with_patients / "dataset_description.json").read_text())
    assert "frontotemporal" in desc["GeneratedBy"][0]["Description"]
    assert desc["SimulationParameters"]["patients"] == 2
    assert (
        "patient"
        in json.loads((with_patients / "participants.json").read_text())["group"]["Levels"]
    )


def test_patient_pattern_is_frontal_and_anterior_temporal() -> None:
    """Same seed as control and as patient: the difference is grey-matter loss at the front."""
    tpl = anatomy._templates(2)
    site = SITE_PROTOCOLS[0]
    base = anatomy._site_base(tpl, site)
    volumes = {}
    for group in ("control", "patient"):
        subject = anatomy._Subject("sub-1", 0, 60, "F", group, (7, 3, 0))
        volumes[group] = anatomy._render(subject, site, base, tpl, 2).astype(float)
    shape, affine = anatomy._site_grid(site, 2)
    ijk = np.indices(shape).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:4]).reshape(3, *shape)
    diff = volumes["patient"] - volumes["control"]
    frontal = (world[1] > 25) & (world[2] > -10) & (np.abs(world[0]) < 60)
    occipital = (world[1] < -60) & (world[2] > -10)
    # grey matter turns darker (towards CSF) in front, hardly at the back
    assert diff[frontal].mean() < -2.0
    assert abs(diff[occipital].mean()) < 0.1 * abs(diff[frontal].mean())


def test_site_protocols_beyond_three_are_stable() -> None:
    five = site_protocols(5)
    assert [s.name for s in five] == ["A", "B", "C", "D", "E"]
    assert five[:3] == SITE_PROTOCOLS
    assert site_protocols(5) == five
    assert len({s.orientation for s in five}) >= 3
    # every site's head is plausible: skull 5-8 mm, scalp 4-8 mm, neck muscle ~half of WM
    for site in site_protocols(26):
        assert 5.0 <= site.skull_mm <= 8.0 and 4.0 <= site.scalp_mm <= 8.0
        assert 0.4 <= site.contrast["muscle"] <= 0.6
    # the reference sites differ in both thickness
    assert len({s.skull_mm for s in SITE_PROTOCOLS}) == 3
    assert len({s.scalp_mm for s in SITE_PROTOCOLS}) == 3


def test_skull_and_scalp_thickness_are_each_sites_own() -> None:
    """Measured in the template-space head (1 mm grid), over the top of the head: the scalp
    starts where the skull ends (half-way from skull to scalp signal) and ends where its signal
    has halved. Each site's layers are as thick as its protocol declares."""
    tpl = anatomy._templates(1)
    z = anatomy._template_axes(tpl.affine, tpl.t1.shape)[2]
    top = (tpl.outside == 1) & (z[None, None, :] > 20)
    dist = tpl.dist[top]
    measured = {}
    for site in SITE_PROTOCOLS:
        c = site.contrast
        signal = anatomy._site_base(tpl, site)[top]
        scalp_starts = dist[signal > (c["skull"] + c["scalp"]) / 2].min()
        scalp_ends = dist[signal > c["scalp"] / 2].max()
        skull = scalp_starts - anatomy._RIM_MM
        scalp = scalp_ends - scalp_starts
        assert skull == pytest.approx(site.skull_mm, abs=0.25), site.name
        assert scalp == pytest.approx(site.scalp_mm, abs=0.25), site.name
        measured[site.name] = (skull, scalp)
    # the sites' 1 mm differences are seen, in the declared order
    for k in (0, 1):
        declared = sorted(SITE_PROTOCOLS, key=lambda s: (s.skull_mm, s.scalp_mm)[k])
        seen = sorted(measured, key=lambda name: measured[name][k])
        assert seen == [s.name for s in declared]


def test_the_head_goes_on_into_a_neck() -> None:
    """Below the brain, far beyond where the head's layers end (which left air there), there is
    a neck of the site's muscle signal; above the skull base there is none."""
    tpl = anatomy._templates(2)
    z = anatomy._template_axes(tpl.affine, tpl.t1.shape)[2][None, None, :]
    voxel_cm3 = 2.0**3 / 1000
    for site in SITE_PROTOCOLS:
        base = anatomy._site_base(tpl, site)
        beyond_layers = tpl.dist > anatomy._RIM_MM + site.skull_mm + site.scalp_mm + 3.0
        muscle = np.abs(base - site.contrast["muscle"]) < 0.01
        # at least a 10 mm slab of a ~12 cm-wide neck, minus the head's layers around the
        # cerebellum and the spinal canal
        assert np.count_nonzero(muscle & beyond_layers & (z <= -50)) * voxel_cm3 > 20, site.name
        assert np.all(base[beyond_layers & (z > 0)] < 1e-3), site.name


def test_stored_scans_have_a_neck_to_the_edge_of_the_field_of_view(tiny_cohort: Path) -> None:
    """The lowest 10 mm of every stored scan (below the template's lower edge, z = -72 mm)
    cross the neck: a good part of those voxels hold tissue, not just noise."""
    table = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    protocols = {p.name: p for p in SITE_PROTOCOLS}
    for pid, site in zip(table["participant_id"], table["site"]):
        img = nib.as_closest_canonical(nib.load(tiny_cohort / pid / "anat" / f"{pid}_T1w.nii.gz"))
        data = np.asarray(img.dataobj, dtype=np.float32)
        lowest = max(1, round(10.0 / img.header.get_zooms()[2]))
        tissue = data[:, :, :lowest] > 0.25 * protocols[site].scale
        # the neck's cross-section is ~110 cm2 of the 480 cm2 field of view
        assert tissue.mean() > 0.1, pid


def test_the_head_leaves_the_brain_unchanged() -> None:
    """Inside the template brain mask the site's base is the template T1 in the site's
    contrast, whatever its head: another head changes the head only."""
    tpl = anatomy._templates(2)
    brain = tpl.outside == 0
    assert np.count_nonzero(brain) > 100_000
    for site in SITE_PROTOCOLS:
        other_head = replace(
            site,
            skull_mm=8.0 if site.skull_mm < 7 else 5.0,
            scalp_mm=4.0 if site.scalp_mm > 5 else 8.0,
            contrast={**site.contrast, "skull": 0.3, "marrow": 0.7, "scalp": 0.5, "muscle": 0.9},
        )
        base, other = anatomy._site_base(tpl, site), anatomy._site_base(tpl, other_head)
        np.testing.assert_array_equal(base[brain], other[brain])
        assert np.mean(base[~brain] != other[~brain]) > 0.05
        # template white matter is white matter (= 1) at every site
        wm = brain & (np.abs(tpl.t1 - anatomy._TEMPLATE_LEVELS["wm"]) < 1e-3)
        np.testing.assert_allclose(base[wm], 1.0, atol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subjects": 0}, "subjects must be an integer >= 1; got 0"),
        ({"subjects": 2, "sites": 3}, r"sites \(3\) must not exceed subjects \(2\)"),
        ({"sites": 27}, "sites must be between 1 and 26; got 27"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"patients": 1.5}, "patients must be an integer"),
        ({"resolution": 3}, "resolution must be 1 or 2"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_demo_cohort(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="is not a cohort written by 'neurodiff demo-data'"):
        make_demo_cohort(foreign, subjects=1, sites=1, resolution=2, progress=False)
    assert (foreign / "thesis.tex").read_text() == "precious"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        make_demo_cohort(afile, subjects=1, sites=1, resolution=2, progress=False)


def test_interrupted_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = cohort._work

    def failing(index: int) -> int:
        if index == 1:
            raise RuntimeError("disk full")
        return real(index)

    monkeypatch.setattr(cohort, "_work", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        make_demo_cohort(
            tmp_path / "demo", subjects=2, sites=1, resolution=2, workers=1, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_cohort_is_replaced(tiny_cohort: Path, tmp_path: Path) -> None:
    out = make_demo_cohort(
        tmp_path / "c", subjects=2, sites=1, seed=3, patients=0, resolution=2, progress=False
    )
    (out / "stale.txt").write_text("old")
    make_demo_cohort(out, subjects=1, sites=1, seed=3, patients=0, resolution=2, progress=False)
    assert not (out / "stale.txt").exists()
    assert len(list(out.glob("sub-*"))) == 1


def test_cli_reports_bad_arguments_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["demo-data", "--out", str(tmp_path / "d"), "--subjects", "1", "--sites", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert "must not exceed subjects" in err and "Traceback" not in err
