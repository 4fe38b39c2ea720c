"""Real whole-head scans through stage 2: skull stripping, registration and QC.

Colin27 (Holmes et al. 1998) with its skull and the same brain skull-stripped come from Debian's
``mricron-data`` (``.ci/run`` installs it); without the package these tests skip and say so. The
same brain is also presented as a scanner would store it -- tilted in the scanner, a coronal
acquisition with thick slices, LPS and LAS headers, scaled int16 and float intensities -- and
every presentation must come out as the skull-stripped reference does. A header wrong by 90
degrees and nibabel's cropped ``anatomical.nii`` must be flagged by QC, with their reasons.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from neurodiff import config
from neurodiff import preprocess as pp
from neurodiff.artifacts import volume_path
from neurodiff.preprocess.intensities import dice, slice_correlations

COLIN = Path("/usr/share/mricron/templates")
needs_colin = pytest.mark.skipif(
    not (COLIN / "ch2.nii.gz").is_file() or not (COLIN / "ch2bet.nii.gz").is_file(),
    reason="Colin27 scans not installed: they come from Debian's mricron-data "
    "(apt-get install mricron-data, as .ci/run does)",
)

#: Presentations of the head that must come out like the skull-stripped scan.
SAME_BRAIN = ("head", "tilted", "coronal", "lps_int16", "las_float", "scaled_float", "offset")


def _rotation(dx: float, dy: float, dz: float) -> np.ndarray:
    ax, ay, az = np.deg2rad([dx, dy, dz])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def tilted(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head turned in the scanner (20 degrees nodding, 10 turning): data move, header not."""
    r = _rotation(20.0, 0.0, 10.0)
    c = (np.array(data.shape) - 1) / 2.0
    return ndi.affine_transform(data, r.T, offset=c - r.T @ c, order=1), affine


def coronal(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A coronal acquisition at 2 x 2 x 3 mm: stored x, z, y with 3 mm slices along y."""
    from nibabel.processing import resample_from_to

    new = np.array([[2.0, 0, 0, 0], [0, 0, 3.0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    new[:3, 3] = affine[:3, 3]
    shape = (data.shape[0] // 2, data.shape[2] // 2, data.shape[1] // 3)
    slabs = ndi.uniform_filter1d(data, size=3, axis=1)  # each slice averages its 3 mm slab
    out = resample_from_to(nib.Nifti1Image(slabs, affine), (shape, new), order=1)
    return np.asarray(out.dataobj), new


def flipped(data: np.ndarray, affine: np.ndarray, axes: tuple[int, ...]) -> tuple:
    """The same image stored with ``axes`` reversed (LPS: 0, 1; LAS: 0), same world positions."""
    flip = np.eye(4)
    for a in axes:
        flip[a, a] = -1.0
        flip[a, 3] = data.shape[a] - 1
    return np.flip(data, axes).copy(), affine @ flip


def wrong_header(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A header that says the head lies 90 degrees from where it is."""
    turn = np.eye(4)
    turn[:3, :3] = _rotation(90.0, 0.0, 0.0)
    return data, turn @ affine


def _write(folder: Path, name: str, data: np.ndarray, affine: np.ndarray, dtype) -> None:
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    nib.save(img, folder / f"{name}.nii.gz")


@pytest.fixture(scope="module")
def colin_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat cohort folder: Colin27's presentations, the cropped scan, one table."""
    from nibabel.testing import data_path

    folder = tmp_path_factory.mktemp("colin")
    head = nib.load(COLIN / "ch2.nii.gz")
    bet = nib.load(COLIN / "ch2bet.nii.gz")
    data = np.asarray(head.dataobj, dtype=np.float32)
    aff = head.affine
    _write(folder, "head", data, aff, np.uint8)
    _write(folder, "bet", np.asarray(bet.dataobj), bet.affine, np.uint8)
    _write(folder, "tilted", *tilted(data, aff), np.float32)
    _write(folder, "coronal", *coronal(data, aff), np.float32)
    _write(folder, "lps_int16", *flipped(data * 37.0, aff, (0, 1)), np.int16)
    _write(folder, "las_float", *flipped(data / 255.0, aff, (0,)), np.float32)
    _write(folder, "scaled_float", data * 0.013, aff, np.float32)
    _write(folder, "offset", data * 20.0 + 500.0, aff, np.int16)  # an intensity offset
    _write(folder, "wrong90", *wrong_header(data, aff), np.uint8)
    cropped = nib.load(Path(data_path) / "anatomical.nii")
    nib.save(cropped, folder / "cropped.nii")
    return folder


@pytest.fixture(scope="module")
def colin_built(colin_cohort: Path, tmp_path_factory: pytest.TempPathFactory):
    """The README's command on the folder: ``neurodiff preprocess --profile demo``."""
    derived = tmp_path_factory.mktemp("derived")
    params = config.resolve(
        "demo", {"cohort": str(colin_cohort), "derived_dir": str(derived), "test_fraction": 0.4}
    )
    return pp.run(params, workers=2)


def _volume(built, subject: str) -> np.ndarray:
    return np.asarray(nib.load(volume_path(built.out_dir, subject)).dataobj, dtype=np.float64)


@needs_colin
@pytest.mark.parametrize("name", SAME_BRAIN)
def test_every_presentation_comes_out_as_the_stripped_brain(colin_built, name: str) -> None:
    ref = _volume(colin_built, "bet")
    out = _volume(colin_built, name)
    # slice for slice, as the images are compared (without stripping: 0.8 at best)
    whole = slice_correlations(out, ref, inside=False)
    assert len(whole) >= 20 and min(whole) >= 0.95, (name, np.round(whole, 3))
    # inside the brain, where only registration and intensity scale can differ: the lowest
    # slices (skull base, few 4.7 mm voxels, where the two masks differ most) reach about 0.9
    brain = slice_correlations(out, ref, inside=True)
    assert np.median(brain) >= 0.95 and min(brain) >= 0.88, (name, np.round(brain, 3))


@needs_colin
def test_without_stripping_the_skull_stays_and_the_test_above_fails(colin_cohort, tmp_path) -> None:
    """The measure above can fail: with skull_strip off the head keeps its skull ring."""
    cfg = config.resolve("demo", {"skull_strip": "off"}).stage(config.PreprocessConfig)
    head = pp.preprocess_scan(colin_cohort / "head.nii.gz", cfg, "head").volume
    bet = pp.preprocess_scan(colin_cohort / "bet.nii.gz", cfg, "bet").volume
    assert np.nanmedian(slice_correlations(head, bet, inside=False)) < 0.9  # a flat slice gives NaN


@needs_colin
def test_heads_are_detected_and_stripped_and_masks_kept(colin_built) -> None:
    qc = pp.load_qc(colin_built.out_dir).set_index("subject")
    assert qc.loc[list(SAME_BRAIN), "head"].all()
    assert not qc.loc["bet", "head"]  # already stripped: kept as it is
    for name in (*SAME_BRAIN, "bet"):
        mask = volume_path(colin_built.out_dir, name, kind="masks")
        m = np.asarray(nib.load(mask).dataobj)
        assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
        # nothing left two voxels outside the kept brain (its edge is partial volume): no skull
        vol = _volume(colin_built, name)
        if name != "bet":  # a skull-stripped scan is kept as it came (auto)
            assert vol[~ndi.binary_dilation(m > 0, iterations=2)].max() <= 0.02, name
        assert qc.loc[name, "overlap"] >= 0.9
        # deepbet's brain agrees with the hand-made one of ch2bet, on the same grid
        reference = _volume(colin_built, "bet") > 0.02
        assert dice(m > 0, reference) >= 0.95, name


@needs_colin
def test_the_same_brain_gets_the_same_intensity_scale(colin_built) -> None:
    ref = _volume(colin_built, "bet")
    brain = ref > 0.05
    for name in SAME_BRAIN:
        out = _volume(colin_built, name)
        assert np.median(out[brain]) == pytest.approx(np.median(ref[brain]), abs=0.05), name


@needs_colin
def test_misregistered_and_cropped_scans_are_flagged_with_reasons(colin_built) -> None:
    qc = pp.load_qc(colin_built.out_dir).set_index("subject")
    assert qc.loc["wrong90", "flagged"] and qc.loc["cropped", "flagged"]
    assert qc.loc["wrong90", "excluded"] and qc.loc["cropped", "excluded"]
    assert "qc_threshold" in qc.loc["wrong90", "note"]  # the brain lies turned: low NCC
    assert "qc_min_overlap" in qc.loc["cropped", "note"]  # a slab: most of the brain is missing
    assert not qc.loc[[*SAME_BRAIN, "bet"], "flagged"].any(), qc
    on_disk = pd.read_csv(Path(colin_built.out_dir) / "qc.tsv", sep="\t").set_index("subject")
    assert on_disk.loc["wrong90", "note"] == qc.loc["wrong90", "note"]
