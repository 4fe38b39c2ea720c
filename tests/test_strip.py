"""Skull stripping's decisions, masked normalisation and the QC rules, on constructed cases."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from neurodiff import config
from neurodiff import preprocess as pp
from neurodiff.preprocess import intensities, strip
from neurodiff.preprocess.split import qc_reasons, robust_z


def _ball(shape=(40, 40, 40), radius=12.0, shell: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A bright ball (the 'brain'), optionally inside a brighter shell (a 'skull and scalp')."""
    grid = np.indices(shape).astype(np.float32)
    r = np.sqrt(((grid - (np.array(shape)[:, None, None, None] - 1) / 2) ** 2).sum(0))
    brain = r <= radius
    image = np.where(brain, 0.6, 0.0).astype(np.float32)
    if shell:
        image[(r > radius + 2) & (r <= radius + 2 + shell)] = 1.0
    return image, brain


@pytest.fixture
def fake_deepbet(monkeypatch: pytest.MonkeyPatch):
    """deepbet replaced by the ball's true mask, so the decisions are tested, not the network."""

    def mask_of(volume: np.ndarray) -> np.ndarray:
        return _ball(volume.shape)[1]

    monkeypatch.setattr(strip, "brain_mask", mask_of)


def test_auto_strips_a_head_and_keeps_a_stripped_scan(fake_deepbet) -> None:
    head, brain = _ball(shell=6.0)
    out = strip.strip(head, 2.0, "auto")
    assert out.head and out.stripped and out.outside > strip.HEAD_OUTSIDE
    assert out.image[~brain].max() == 0.0 and np.array_equal(out.mask, brain)
    bare, _ = _ball()
    kept = strip.strip(bare, 2.0, "auto")
    assert not kept.head and not kept.stripped and kept.outside < strip.HEAD_OUTSIDE
    assert np.array_equal(kept.image, bare)  # untouched
    forced = strip.strip(bare, 2.0, "on")
    assert forced.stripped and not forced.head
    off = strip.strip(head, 2.0, "off")
    assert off.mask is None and np.array_equal(off.image, head)


def test_a_stripper_failure_becomes_a_note_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(volume: np.ndarray) -> np.ndarray:
        raise AssertionError("Not enough foreground to calculate bounding box")

    monkeypatch.setattr(strip, "brain_mask", fails)
    out = strip.strip(_ball(shell=6.0)[0], 2.0, "auto")
    assert out.mask is None and not out.stripped
    assert "skull stripping found no brain" in out.note and "foreground" in out.note
    monkeypatch.setattr(strip, "brain_mask", lambda v: np.zeros(v.shape, bool))
    assert "no brain" in strip.strip(_ball()[0], 2.0, "on").note


def test_a_noise_scan_with_stripping_on_is_flagged_not_fatal(tmp_path: Path) -> None:
    """The real deepbet on pure noise: the run goes on and QC says why."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.nii.gz"
    nib.Nifti1Image(
        rng.random((60, 72, 60), dtype=np.float32), np.diag([2, 2, 2, 1.0])
    ).to_filename(noise)
    cfg = config.resolve("demo", {"skull_strip": "on"}).stage(config.PreprocessConfig)
    res = pp.preprocess_scan(noise, cfg, "noise")
    reasons = qc_reasons(res.ncc, res.overlap, np.nan, res.note, cfg)
    assert reasons, (res.ncc, res.overlap, res.note)


def _data(volume: np.ndarray) -> dict:
    import torch
    from monai.data import MetaTensor

    return {"image": MetaTensor(torch.as_tensor(volume)[None])}


def test_normalisation_inside_the_brain_ignores_what_surrounds_it() -> None:
    cfg = config.resolve("demo", {}).stage(config.PreprocessConfig)
    bare, brain = _ball()
    rng = np.random.default_rng(1)
    bare = bare + brain * rng.normal(0, 0.05, bare.shape).astype(np.float32)
    skull = bare.copy()
    skull[~brain] = rng.uniform(0, 3.0, int((~brain).sum()))  # bright, varied outside
    offset = np.where(brain, bare * 7.0 + 40.0, 0.0).astype(np.float32)  # scale and offset
    _d, _b, a = intensities.normalise(_data(bare), cfg, brain)
    _d, _b, b = intensities.normalise(_data(skull), cfg, brain)
    _d, _b, c = intensities.normalise(_data(offset), cfg, brain)
    np.testing.assert_allclose(a[brain], b[brain], atol=1e-5)
    np.testing.assert_allclose(a[brain], c[brain], atol=1e-4)
    # whole-image percentiles (no mask) would have squeezed the brain under the bright outside
    _d, _b, d = intensities.normalise(_data(skull), cfg, None)
    assert np.median(d[brain]) < np.median(a[brain]) - 0.2
    # an empty mask falls back to the whole image instead of dividing by nothing
    _d, _b, e = intensities.normalise(_data(skull), cfg, np.zeros_like(brain))
    np.testing.assert_allclose(e, d)


def test_robust_z_and_its_floor() -> None:
    assert np.isnan(robust_z(np.array([0.8, 0.7]))).all()  # too few to judge
    z = robust_z(np.array([0.80, 0.81, 0.79, 0.80, 0.82, 0.78, 0.20]))
    assert z[-1] < -20 and abs(z[0]) < 1
    same = robust_z(np.array([0.8, 0.8, 0.8, 0.79]))  # MAD 0: the 0.01 floor keeps z finite
    assert np.isfinite(same).all() and same[-1] == pytest.approx(-1.0)
    assert np.isnan(robust_z(np.array([0.8, 0.7, np.nan, 0.9]))[2])


def test_each_qc_rule_gives_its_reason() -> None:
    cfg = config.resolve("demo", {}).stage(config.PreprocessConfig)
    assert qc_reasons(0.8, 0.95, 0.0, "", cfg) == []
    assert "qc_threshold" in qc_reasons(0.3, 0.95, 0.0, "", cfg)[0]
    assert "qc_outlier_z" in qc_reasons(0.6, 0.95, -7.0, "", cfg)[0]
    assert "qc_min_overlap" in qc_reasons(0.8, 0.5, 0.0, "", cfg)[0]
    assert len(qc_reasons(0.3, 0.5, -9.0, "", cfg)) == 3
    assert qc_reasons(np.nan, np.nan, np.nan, "registration failed: X", cfg) == [
        "registration failed: X"
    ]
    assert qc_reasons(0.8, np.nan, np.nan, "", cfg) == []  # no mask, no overlap rule
    loose = dataclasses.replace(cfg, qc_outlier_z=10.0)
    assert qc_reasons(0.6, 0.95, -7.0, "", loose) == []


def test_the_chapter_2_figures_draw_every_case() -> None:
    """Stripping figure with a mask, without one (no brain found) and not applied; the QC
    overlays with a flagged scan, a scan without a mask, and nothing to show."""
    from neurodiff.viz import preprocess as plots

    head, brain = _ball(shell=6.0)
    base = {"subject": "s", "site": "A", "scan": head, "stripped": head, "volume": head / 2}
    examples = [
        {**base, "mask": brain, "head": True, "outside": 0.4, "applied": True},
        {**base, "mask": None, "head": False, "outside": float("nan"), "applied": True},
        {**base, "mask": brain, "head": True, "outside": 0.4, "applied": False},
    ]
    fig = plots.plot_skull_strip(examples)
    titles = [ax.get_title() for ax in fig.axes]
    assert "head: stripped" in titles and "no brain found" in titles
    assert any("not applied" in t for t in titles)
    rec = {
        "subject": "s",
        "site": "A",
        "flagged": True,
        "note": "NCC with the template 0.17 < qc_threshold 0.5; other",
        "ncc": 0.17,
        "overlap": 0.84,
        "volume": head / 2,
        "mask": brain.astype(np.uint8),
        "template_mask": brain,
    }
    fig = plots.plot_qc_overlays([rec, {**rec, "flagged": False, "note": "", "mask": None}])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("FLAGGED") and "qc_threshold" in t for t in titles)
    assert any(t.startswith("passed") for t in titles)
    assert plots.plot_qc_overlays([]).axes[0].texts[0].get_text() == "no scan to show"
