"""Cohort discovery on BIDS / IXI / flat folders, and every kind of unusable file or table."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import write_nifti

from neurodiff.cli import main
from neurodiff.cohort import check_scan, detect_layout, load_cohort
from neurodiff.errors import CohortError


def _volume(seed: int = 0, shape: tuple[int, ...] = (16, 16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, shape)


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def test_bids_demo_cohort(tiny_cohort: Path) -> None:
    df = load_cohort(tiny_cohort)
    assert df.attrs["layout"] == "bids"
    assert df.attrs["skipped"] == []
    assert df["subject"].tolist() == [f"sub-{i:03d}" for i in range(1, 13)]
    for col in (
        "subject",
        "site",
        "path",
        "shape",
        "voxel_size",
        "orientation",
        "dtype",
        "p1",
        "p50",
        "p99",
        "age",
        "sex",
    ):
        assert col in df.columns
    by_site = df.groupby("site").first()
    assert by_site.loc["A", "orientation"] == "RAS" and by_site.loc["A", "dtype"] == "uint16"
    assert by_site.loc["B", "orientation"] == "LPS" and by_site.loc["B", "dtype"] == "int16"
    assert by_site.loc["C", "orientation"] == "LIA" and by_site.loc["C", "dtype"] == "float32"
    assert by_site.loc["A", "voxel_size"] == (2.4, 2.4, 2.4)
    assert all(len(s) == 3 for s in df["shape"])
    assert ((df["p1"] <= df["p50"]) & (df["p50"] < df["p99"])).all()
    assert df["age"].dtype.kind in "if"
    assert all(Path(p).is_file() for p in df["path"])


def test_bids_sessions_share_the_participant_row(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    for ses in ("1", "2"):
        write_nifti(
            root / "sub-01" / f"ses-{ses}" / "anat" / f"sub-01_ses-{ses}_T1w.nii.gz",
            _volume(int(ses)),
        )
    write_nifti(root / "sub-02" / "anat" / "sub-02_T1w.nii.gz", _volume(3))
    (root / "sub-02" / "anat" / "sub-02_T1w.json").write_text("{}")  # sidecar: ignored
    write_nifti(root / "sub-02" / "anat" / "sub-02_T2w.nii.gz", _volume(4))  # not T1: ignored
    (root / "participants.tsv").write_text(
        "participant_id\tsite\tage\tsex\nsub-01\tX\t30\tF\nsub-02\tY\t40\tM\n"
    )
    df = load_cohort(root)
    assert df.attrs["layout"] == "bids"
    assert df["subject"].tolist() == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert df["site"].tolist() == ["X", "X", "Y"]
    assert df["age"].tolist() == [30, 30, 40]


def _ixi_folder(root: Path) -> Path:
    write_nifti(root / "IXI002-Guys-0828-T1.nii.gz", _volume(1))
    write_nifti(root / "IXI012-HH-1211-T1.nii.gz", _volume(2), dtype="int16")
    write_nifti(root / "IXI035-IOP-0873-T1.nii.gz", _volume(3))
    write_nifti(root / "IXI002-Guys-0828-T2.nii.gz", _volume(4))  # another modality: ignored
    return root


def test_ixi_layout_with_its_table(tmp_path: Path) -> None:
    root = _ixi_folder(tmp_path / "ixi")
    # like the published IXI.xls: a subject without a T1 scan and a repeated ID are tolerated
    (root / "IXI.csv").write_text(
        'IXI_ID,"SEX_ID (1=m, 2=f)",HEIGHT,AGE\n'
        "2,2,164,35.8\n12,1,175,38.78\n35,2,163,37.2\n99,1,170,50\n12,1,175,\n"
    )
    df = load_cohort(root)
    assert df.attrs["layout"] == "ixi"
    assert df["subject"].tolist() == ["IXI002", "IXI012", "IXI035"]
    assert df["site"].tolist() == ["Guys", "HH", "IOP"]
    assert df["sex"].tolist() == ["F", "M", "F"]
    assert df["age"].tolist() == [35.8, 38.8, 37.2]
    assert df.loc[1, "dtype"] == "int16"
    assert "HEIGHT" not in df.columns


def test_ixi_layout_without_table(tmp_path: Path) -> None:
    df = load_cohort(_ixi_folder(tmp_path / "ixi"))
    assert df["site"].tolist() == ["Guys", "HH", "IOP"]
    assert "age" not in df.columns


def test_flat_folder_without_table_has_unknown_site(tmp_path: Path) -> None:
    write_nifti(tmp_path / "b_T1w.nii.gz", _volume(1))
    write_nifti(tmp_path / "a.nii", _volume(2))
    (tmp_path / "notes.txt").write_text("not a scan, ignored")
    df = load_cohort(tmp_path)
    assert detect_layout(tmp_path) == "flat"
    assert df["subject"].tolist() == ["a", "b"]
    assert df["site"].tolist() == ["unknown", "unknown"]


def test_flat_folder_with_table(tmp_path: Path) -> None:
    write_nifti(tmp_path / "scans" / "s1.nii.gz", _volume(1))
    write_nifti(tmp_path / "scans" / "s2.nii.gz", _volume(2))
    (tmp_path / "scans" / "demo.csv").write_text(
        "subject,site,age,sex,group,handedness\ns2,north,61,M,patient,R\ns1,south,55,F,control,L\n"
    )
    df = load_cohort(tmp_path / "scans")
    assert df["site"].tolist() == ["south", "north"]
    assert df["group"].tolist() == ["control", "patient"]
    assert df["handedness"].tolist() == ["L", "R"]
    # an explicit TSV elsewhere, without a site column
    table = tmp_path / "other.tsv"
    table.write_text("participant_id\tage\ns1\t20\ns2\t30\n")
    (tmp_path / "scans" / "demo.csv").unlink()
    df = load_cohort(tmp_path / "scans", table=table)
    assert df["site"].tolist() == ["unknown", "unknown"]
    assert df["age"].tolist() == [20, 30]
    assert df.attrs["table"] == str(table)


# --------------------------------------------------------------------------------------------
# Table problems
# --------------------------------------------------------------------------------------------


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    root = tmp_path / "flat"
    write_nifti(root / "s1.nii.gz", _volume(1))
    write_nifti(root / "s2.nii.gz", _volume(2))
    return root


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "name,age\ns1,3\ns2,4\n",
            r"has no subject column: expected one of \['subject', "
            r"'participant_id'\], found columns \['name', 'age'\]",
        ),
        ("subject,age\ns1,3\ns1,4\ns2,5\n", "lists 1 subject\\(s\\) more than once: s1"),
        (
            "subject,age\ns1,3\ns2,4\ns3,5\n",
            "lists 1 subject\\(s\\) without a scan in the cohort folder: s3",
        ),
        ("subject,age\ns1,old\ns2,4\n", "column 'age' must be numeric; subject s1 has 'old'"),
    ],
)
def test_table_problems(flat: Path, text: str, match: str) -> None:
    table = flat.parent / "table.csv"
    table.write_text(text)
    with pytest.raises(CohortError, match=match) as info:
        load_cohort(flat, table=table)
    assert info.value.path == table
    assert str(table) in str(info.value)


def test_missing_table_and_ambiguous_tables(flat: Path) -> None:
    with pytest.raises(CohortError, match="demographics table .*nope.csv does not exist"):
        load_cohort(flat, table=flat / "nope.csv")
    (flat / "a.csv").write_text("subject\ns1\ns2\n")
    (flat / "b.tsv").write_text("subject\ns1\ns2\n")
    with pytest.raises(CohortError, match=r"several tables \(a.csv, b.tsv\)"):
        load_cohort(flat)


def test_bids_participants_without_scans(tiny_cohort: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "bids"
    shutil.copytree(tiny_cohort, root)
    shutil.rmtree(root / "sub-003")
    with pytest.raises(
        CohortError,
        match=r"participants.tsv lists 1 subject\(s\) without a scan"
        r" in the cohort folder: sub-003",
    ):
        load_cohort(root)


def test_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="cohort folder .*missing does not exist"):
        load_cohort(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(CohortError, match="is a file; expected a folder"):
        load_cohort(tmp_path / "f.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match="no T1 scans found in .*empty"):
        load_cohort(tmp_path / "empty")


def test_cohort_error_is_a_value_error() -> None:
    assert issubclass(CohortError, ValueError)


# --------------------------------------------------------------------------------------------
# Unusable files: one line each
# --------------------------------------------------------------------------------------------


def _not_nifti(p: Path) -> Path:
    p = p.with_name("bad.nii")
    p.write_bytes(b"this is a text file pretending to be a NIfTI image" * 20)
    return p


def _other_format(p: Path) -> Path:
    p = p.with_name("bad.mgz")
    p.write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    return p


def _not_gzip(p: Path) -> Path:
    p.write_text("plain text with a .nii.gz name")
    return p


def _truncated(p: Path) -> Path:
    write_nifti(p, _volume(5, (32, 32, 32)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _corrupt_gzip(p: Path) -> Path:
    write_nifti(p, _volume(5, (32, 32, 32)))
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    p.write_bytes(bytes(data))
    return p


def _short_gzip(p: Path) -> Path:
    p.write_bytes(gzip.compress(b"x" * 100, mtime=0))
    return p


def _empty(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _four_d(p: Path) -> Path:
    return write_nifti(p, _volume(6, (16, 16, 16, 3)))


def _two_d(p: Path) -> Path:
    return write_nifti(p, _volume(6, (16, 16)))


def _too_small(p: Path) -> Path:
    return write_nifti(p, _volume(6, (16, 4, 16)))


def _non_finite(p: Path) -> Path:
    data = _volume(7)
    data[3, 4, 5] = np.nan
    data[0, 0, 0] = np.inf
    return write_nifti(p, data)


def _singular(p: Path) -> Path:
    img = nib.Nifti1Image(_volume(8).astype(np.float32), None)
    img.header.set_sform(np.diag([2.0, 2.0, 0.0, 1.0]), code=1)  # a flat voxel-to-world map
    img.to_filename(p)
    return p


def _truncated_plain(p: Path) -> Path:
    p = write_nifti(p.with_name("bad.nii"), _volume(5, (32, 32, 32)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _constant(p: Path) -> Path:
    return write_nifti(p, np.full((16, 16, 16), 7.0))


def _directory(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _dangling(p: Path) -> Path:
    p.symlink_to(p.parent / "gone.nii.gz")
    return p


BAD_FILES = [
    (_not_nifti, r"not a NIfTI file \(the header does not start with a NIfTI size field\)"),
    (_other_format, r"not a NIfTI file \(expected .nii or .nii.gz, found .mgz\)"),
    (_not_gzip, "named .nii.gz but not gzip-compressed"),
    (_truncated, "truncated or corrupt gzip data"),
    (_corrupt_gzip, "truncated or corrupt gzip data"),
    (_short_gzip, "not a NIfTI file, or truncated: 100 bytes, a NIfTI header alone needs 348"),
    (_truncated_plain, "truncated or corrupt image data"),
    (_empty, r"empty file \(0 bytes\)"),
    (_four_d, r"is 4D with 3 volumes \(shape \(16, 16, 16, 3\)\); expected one 3D T1 volume"),
    (_two_d, r"is 2D \(shape \(16, 16\)\)"),
    (_too_small, r"shape \(16, 4, 16\) is too small"),
    (_non_finite, "contains 2 non-finite voxel values"),
    (_singular, r"singular affine \(determinant 0\)"),
    (_constant, r"constant image \(every voxel is 7\)"),
    (_directory, "is a directory, expected a NIfTI file"),
    (_dangling, r"dangling symbolic link \(its target .*gone.nii.gz does not exist\)"),
]


@pytest.mark.parametrize(("make", "match"), BAD_FILES, ids=[m.__name__[1:] for m, _ in BAD_FILES])
def test_each_bad_file_is_named_with_its_problem(tmp_path: Path, make, match: str) -> None:
    root = tmp_path / "cohort"
    write_nifti(root / "good.nii.gz", _volume(0))
    bad = make(root / "bad.nii.gz")
    with pytest.raises(CohortError, match="1 of 2 scans .* cannot be used") as info:
        load_cohort(root)
    assert info.value.path == root
    [(path, problem)] = info.value.problems
    assert path == bad
    assert re.search(match, problem), problem
    # the same check, on the file alone
    with pytest.raises(CohortError, match=match) as one:
        check_scan(bad)
    assert one.value.path == bad and str(bad) in str(one.value)
    # skip_bad: continue with the good one, list the bad one
    df = load_cohort(root, skip_bad=True)
    assert df["subject"].tolist() == ["good"]
    assert df.attrs["skipped"] == [(bad, problem)]


def test_all_problems_are_collected(tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    write_nifti(root / "good.nii.gz", _volume(0))
    bad = [_empty(root / "e.nii.gz"), _constant(root / "c.nii.gz"), _directory(root / "d.nii.gz")]
    with pytest.raises(CohortError, match="3 of 4 scans") as info:
        load_cohort(root)
    assert sorted(p for p, _ in info.value.problems) == sorted(bad)
    _directory(tmp_path / "only" / "x.nii")
    with pytest.raises(CohortError, match="none of the 1 scans"):
        load_cohort(tmp_path / "only", skip_bad=True)


def test_single_volume_4d_is_squeezed(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "v.nii.gz", _volume(9, (16, 16, 16, 1)), dtype="int16")
    img = check_scan(path)
    assert img.shape == (16, 16, 16)
    assert img.get_fdata().shape == (16, 16, 16)
    df = load_cohort(tmp_path)
    assert df.loc[0, "shape"] == (16, 16, 16)


def test_check_scan_returns_a_loaded_image(tmp_path: Path) -> None:
    affine = np.array([[-2.0, 0, 0, 10], [0, -2.0, 0, 5], [0, 0, 2.0, -3], [0, 0, 0, 1]])
    path = write_nifti(tmp_path / "v.nii", _volume(9), affine=affine)
    img = check_scan(path)
    assert isinstance(img, nib.Nifti1Image)
    assert "".join(nib.aff2axcodes(img.affine)) == "LPS"
    np.testing.assert_allclose(img.get_fdata(dtype=np.float32), _volume(9), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    root = tmp_path / "broken"
    write_nifti(root / "good.nii.gz", _volume(0))
    _empty(root / "empty.nii.gz")
    _truncated(root / "cut.nii.gz")
    _dangling(root / "link.nii.gz")
    return root


def test_cli_lists_each_bad_file_and_exits_2(broken: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["cohort", str(broken)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    for name, problem in (
        ("empty.nii.gz", "empty file"),
        ("cut.nii.gz", "truncated or corrupt"),
        ("link.nii.gz", "dangling symbolic link"),
    ):
        assert any(line.startswith(str(broken / name)) and problem in line for line in lines)
    assert lines[-1].startswith("neurodiff cohort: error: 3 of 4 scans")
    assert "Traceback" not in err + out


def test_cli_skip_bad_prints_the_table(
    broken: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    code = main(["cohort", str(broken), "--skip-bad", "--csv", str(tmp_path / "t.csv")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "good" in out and "unknown" in out
    assert err.count("skipped ") == 3
    assert "1 scans, 1 sites, 3 skipped" in err
    assert (tmp_path / "t.csv").read_text().startswith("subject,site,path")


def test_console_script_end_to_end(broken: Path) -> None:
    exe = Path(sys.executable).with_name("neurodiff")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "neurodiff"]
    res = subprocess.run(
        [*cmd, "cohort", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{broken / 'empty.nii.gz'}: empty file (0 bytes)" in res.stderr
