"""Anatomical plausibility: tissue fractions at matched levels and the group difference map,
against their definitions on images whose tissues are known, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neurodiff import metrics as M
from neurodiff.config import MetricsConfig, resolve
from neurodiff.errors import MetricError
from neurodiff.features import get_extractor
from neurodiff.measures import plausibility as P
from neurodiff.metrics import anatomy, difference
from neurodiff.metrics.entries import EvalSettings, Sets
from neurodiff.metrics.inputs import MetricsInputs

# --------------------------------------------------------------------------------------------
# Slices with known tissues: white matter inside, a grey-matter ring, a CSF rim, background 0
# --------------------------------------------------------------------------------------------

SIZE = 32
LEVELS = (0, 1, 2, 3)
CSF, GM, WM = 0.3, 0.6, 0.85
SITES = ("A", "B")


def brain_slice(
    level: int,
    rng: np.random.Generator,
    gm_loss: float = 0.0,
    atrophy: float = 0.0,
    noise: float = 0.02,
) -> np.ndarray:
    """``(SIZE, SIZE)`` in [0, 1]: white matter of a radius growing with ``level``, a grey-matter
    ring whose outer ``gm_loss`` pixels are CSF (eroded grey matter), a CSF rim; ``atrophy``
    pixels more of the ring turned to CSF in one quadrant (the simulated patients' region,
    :func:`atrophy_region`). Radii jitter per slice, as anatomy does between people."""
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    r = np.hypot(xx, 1.1 * yy)
    wm = 4.0 + 1.2 * level + rng.normal(0.0, 0.3)
    gm = wm + 3.0 + rng.normal(0.0, 0.2)
    outer = gm - gm_loss - atrophy * atrophy_region()
    img = np.where(r < gm + 2.0, CSF, 0.0)
    img = np.where(r < outer, GM, img)
    img = np.where(r < wm, WM, img)
    img = img + noise * rng.standard_normal(img.shape) * (img > 0)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def atrophy_region() -> np.ndarray:
    """The quadrant (low second, high first array index) where patients lose grey matter."""
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    return ((xx < 0) & (yy > 0)).astype(float)


def cohort(
    n_subjects: int,
    seed: int,
    group: str = "control",
    prefix: str = "s",
    levels=LEVELS,
    **kw,
) -> tuple[np.ndarray, pd.DataFrame]:
    """``n_subjects`` subjects, one slice per level each: images ``(N, 1, SIZE, SIZE)`` and an
    index table as the preprocessing writes it (subject, site, slice, group)."""
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for s in range(n_subjects):
        for level in levels:
            images.append(brain_slice(level, rng, **kw)[None])
            rows.append((f"{prefix}{seed}-{s:02d}", SITES[s % 2], level, group))
    index = pd.DataFrame(rows, columns=["subject", "site", "slice", "group"])
    return np.stack(images), index


def synthetic_set(n: int, seed: int, **kw) -> np.ndarray:
    """``n`` slices, each from another subject and at a random level: what a generator of
    perfect slices would return (no slice position, every image its own draw)."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [brain_slice(int(rng.integers(len(LEVELS))), rng, **kw)[None] for _ in range(n)]
    )


@pytest.fixture(scope="module")
def cfg() -> MetricsConfig:
    params = resolve("smoke", {"n_redraws": 60, "n_bootstrap": 60, "device": "cpu"})
    return params.stage(MetricsConfig)


@pytest.fixture(scope="module")
def controls():
    """Real test (8 subjects) and training (16 subjects) splits of healthy slices."""
    test, test_index = cohort(8, seed=1)
    train, train_index = cohort(16, seed=2)
    return test, test_index, train, train_index


def _evaluate(controls, synthetic, cfg):
    test, test_index, train, train_index = controls
    inputs = MetricsInputs(test, train, synthetic, test_index, train_index, group="control")
    return M.evaluate_inputs(inputs, cfg, "random", "cpu")


@pytest.fixture(scope="module")
def real_made(controls, cfg):
    """The metrics of a synthetic set made of real slices of new subjects."""
    return _evaluate(controls, synthetic_set(32, seed=3), cfg)


@pytest.fixture(scope="module")
def shrunken(controls, cfg):
    """The metrics of a synthetic set whose grey matter is eroded into CSF by 1.5 pixels."""
    return _evaluate(controls, synthetic_set(32, seed=3, gm_loss=1.5), cfg)


# --------------------------------------------------------------------------------------------
# The tissue model and the fractions
# --------------------------------------------------------------------------------------------


def test_the_tissue_model_finds_the_three_tissues_in_order_of_intensity(controls):
    model = P.fit_tissue_model(controls[2], seed=0)
    np.testing.assert_allclose(model.means, (CSF, GM, WM), atol=0.02)
    # noise-free slices: every voxel classified as drawn, the fractions are the areas
    rng = np.random.default_rng(0)
    clean = np.stack([brain_slice(2, rng, noise=0.0)[None] for _ in range(3)])
    labels = model.classify(clean)
    expected = np.select([clean == CSF, clean == GM, clean == WM], [0, 1, 2], default=-1)
    np.testing.assert_array_equal(labels, expected)
    fractions = model.fractions(clean)
    for k, level in enumerate((CSF, GM, WM)):
        area = (clean == level).sum((1, 2, 3)) / (clean > 0).sum((1, 2, 3))
        np.testing.assert_allclose(fractions[:, k], area)
    np.testing.assert_allclose(fractions.sum(1), 1.0)


def test_an_image_without_brain_has_no_fractions(controls):
    model = P.fit_tissue_model(controls[2], seed=0)
    blank = np.zeros((2, 1, SIZE, SIZE), np.float32)
    blank[1, 0, :4, :4] = GM
    fractions = model.fractions(blank)
    assert np.isnan(fractions[0]).all()
    np.testing.assert_allclose(fractions[1], (0.0, 1.0, 0.0))


def test_level_gap_is_the_weighted_mean_absolute_difference_of_level_means():
    real = np.array([[0.2, 0.5, 0.3], [0.4, 0.3, 0.3], [0.1, 0.6, 0.3], [0.5, 0.5, 0.0]])
    real_levels = np.array([0, 0, 1, 2])
    syn = np.array([[0.3, 0.4, 0.3], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.1, 0.0]])
    syn_levels = np.array([0, 1, 1, 7])  # level 7: no real slice there, left out
    # level 0: real mean (0.3, 0.4, 0.3) vs synthetic (0.3, 0.4, 0.3), one synthetic image
    # level 1: real (0.1, 0.6, 0.3) vs synthetic mean (0.2, 0.4, 0.4), two synthetic images
    expected = (1 * np.array([0.0, 0.0, 0.0]) + 2 * np.array([0.1, 0.2, 0.1])) / 3
    gap = P.level_gap(real, real_levels, syn, syn_levels)
    np.testing.assert_allclose(gap, expected)
    # the same sets in the index-array form of the bootstrap and the redraws
    pooled = np.concatenate([real, syn])
    lv = np.concatenate([real_levels, syn_levels])
    reps = P.level_gap_replicates(pooled, lv, lv, np.arange(4)[None], np.arange(4, 8)[None])
    np.testing.assert_allclose(reps[0], expected)
    # a set against itself: no gap; no shared level: undefined
    np.testing.assert_allclose(P.level_gap(real, real_levels, real, real_levels), 0.0)
    assert np.isnan(P.level_gap(real, real_levels, syn[3:], syn_levels[3:])).all()


def test_nearest_levels_never_takes_the_images_own_subject():
    d2 = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    levels = np.array([10, 11, 12])
    subjects = np.array(["a", "a", "b"])
    np.testing.assert_array_equal(P.nearest_levels(d2, levels, (subjects, subjects)), [12, 12, 11])
    np.testing.assert_array_equal(P.nearest_levels(d2, levels), [10, 11, 12])


# --------------------------------------------------------------------------------------------
# Through the metrics stage: real slices pass, shrunken grey matter fails
# --------------------------------------------------------------------------------------------


def test_a_synthetic_set_of_real_slices_is_inside_the_real_vs_real_range(real_made):
    for key in anatomy.TISSUE_METRICS.values():
        m = real_made.metrics[key]
        assert m.verdict == "inside", (key, m.value, m.baseline_ci)
        assert "subject-level redraws" in m.extra["baseline_from"]
        assert m.ci[0] <= m.value <= m.ci[1]
        assert m.extra["levels_shared"] == len(LEVELS)
    gm = real_made.metrics["gm_fraction_gap"]
    assert gm.extra["real_fraction"] == pytest.approx(gm.extra["synthetic_fraction"], abs=0.03)


def test_shrunken_grey_matter_is_outside_the_real_vs_real_range(real_made, shrunken):
    gm, csf = shrunken.metrics["gm_fraction_gap"], shrunken.metrics["csf_fraction_gap"]
    assert gm.verdict == "outside" and gm.value > gm.baseline_ci[1]
    assert csf.verdict == "outside"  # the eroded grey matter became CSF
    assert gm.extra["synthetic_fraction"] < gm.extra["real_fraction"] - 0.05
    assert gm.value > 3 * real_made.metrics["gm_fraction_gap"].value
    # the real-vs-real range is the same: it does not depend on the synthetic set
    assert gm.baseline_ci == real_made.metrics["gm_fraction_gap"].baseline_ci


def test_synthetic_slices_take_the_level_of_their_nearest_training_slice(real_made):
    tissue = real_made.data.tissue
    train_levels = tissue.levels.train
    np.testing.assert_array_equal(
        tissue.levels.synthetic, train_levels[real_made.audit.syn_nearest]
    )
    # on these slices the level is written in the anatomy: most land where they were drawn
    truth = np.random.default_rng(3)
    drawn = []
    for _ in range(32):
        drawn.append(int(truth.integers(len(LEVELS))))
        brain_slice(drawn[-1], truth)
    assert (tissue.levels.synthetic == np.array(drawn)).mean() > 0.6


def test_the_ladder_measures_tissue_gaps_of_degraded_slices(real_made, cfg):
    params = resolve("smoke", {"n_redraws": 60, "n_bootstrap": 60, "device": "cpu"})
    ladder = M.calibration_for(real_made, params)
    csf = ladder["csf_fraction_gap"]
    # a background haze above the brain threshold is counted as brain, classified CSF
    assert csf["background haze +0.1"] > 5 * csf["real (undegraded)"]
    assert (
        ladder.loc["noise sigma 0.1", "gm_fraction_gap"]
        > ladder.loc["real (undegraded)", "gm_fraction_gap"]
    )
    assert ladder.attrs["n"] == real_made.n_subset


# --------------------------------------------------------------------------------------------
# The group difference map
# --------------------------------------------------------------------------------------------


def _inputs(group: str, seed: int, synthetic: np.ndarray, atrophy: float = 0.0) -> MetricsInputs:
    test, test_index = cohort(6, seed, group=group, atrophy=atrophy)
    train, train_index = cohort(12, seed + 100, group=group, atrophy=atrophy)
    return MetricsInputs(test, train, synthetic, test_index, train_index, group=group)


SETTINGS = EvalSettings(n_bootstrap=40, seed=0, n_redraws=40)


@pytest.fixture(scope="module")
def controls_and_patients():
    """``make(synthetic patients)``: the patients' and the controls' inputs (the patients' real
    slices with atrophy) and each group's levels, synthetic images placed at their nearest
    training slice's as the stage places them."""
    extractor = get_extractor("random", seed=0)

    def make(patient_synthetic: np.ndarray):
        groups = (
            _inputs("patient", 20, patient_synthetic, atrophy=2.0),
            _inputs("control", 40, synthetic_set(24, seed=41)),
        )
        return (*groups, {x.group: anatomy.group_levels(x, extractor) for x in groups})

    return make


def _compare(patients, controls, levels, roi=True):
    region = atrophy_region().astype(bool) if roi else None
    return difference.group_difference_metrics(
        patients, controls, SETTINGS, region, "one quadrant" if roi else "", levels
    )


def test_the_difference_map_of_real_slices_matches_the_real_one(controls_and_patients):
    patients, controls, levels = controls_and_patients(synthetic_set(24, seed=21, atrophy=2.0))
    diff = _compare(patients, controls, levels)
    r, gap = diff.metrics["difference_map_r"], diff.metrics["atrophy_effect_gap"]
    assert r.verdict == "inside" and r.value > 0.5
    assert gap.verdict == "inside"
    assert gap.extra["real_roi_difference"] < -0.02  # patients darker where they atrophy
    assert diff.roi_source == "one quadrant"
    # the maps are what they say: mean patient image minus mean control image (every subject
    # has one slice per level, so matched levels change nothing for the real test split)
    expected = patients.test[:, 0].mean(0) - controls.test[:, 0].mean(0)
    np.testing.assert_allclose(diff.real, expected, atol=1e-6)
    assert diff.counts == {
        "real patient": 24,
        "real control": 24,
        "synthetic patient": 24,
        "synthetic control": 24,
    }


def test_synthetic_patients_without_atrophy_fail_the_difference_map(controls_and_patients):
    patients, controls, levels = controls_and_patients(synthetic_set(24, seed=21))
    diff = _compare(patients, controls, levels)
    r, gap = diff.metrics["difference_map_r"], diff.metrics["atrophy_effect_gap"]
    assert r.verdict == "outside" and r.value < r.baseline_ci[0]
    assert gap.verdict == "outside" and gap.value > gap.baseline_ci[1]  # weaker than real


def test_map_correlation_is_one_for_the_same_map_and_near_zero_for_unrelated_ones():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 64))
    mask = np.ones_like(a, dtype=bool)
    assert P.map_correlation(a, a, mask) == pytest.approx(1.0)
    assert P.map_correlation(a, 2 * a + 0.1, mask) == pytest.approx(1.0)
    assert P.map_correlation(a, -a, mask) == pytest.approx(-1.0)
    assert abs(P.map_correlation(a, rng.standard_normal((64, 64)), mask)) < 0.05
    # only the mask's voxels count
    b = a.copy()
    b[:32] = rng.standard_normal((32, 64))
    inside = np.zeros_like(mask)
    inside[32:] = True
    assert P.map_correlation(a, b, inside) == pytest.approx(1.0)
    assert P.roi_mean(a, inside) == pytest.approx(a[32:].mean())


def test_a_synthetic_set_equal_to_the_real_one_has_the_real_map(controls_and_patients):
    patients, controls, _ = controls_and_patients(synthetic_set(24, seed=21, atrophy=2.0))
    same, levels = [], {}
    for x in (patients, controls):
        same.append(
            MetricsInputs(x.test, x.train, x.test, x.test_index, x.train_index, group=x.group)
        )
        test, train = x.test_index["slice"].to_numpy(), x.train_index["slice"].to_numpy()
        exact = Sets(test, test, train)
        levels[x.group] = anatomy.Levels(exact, exact)
    diff = difference.group_difference_metrics(*same, SETTINGS, levels=levels)
    assert diff.metrics["difference_map_r"].value == pytest.approx(1.0)
    assert diff.metrics["atrophy_effect_gap"].value == pytest.approx(0.0, abs=1e-12)
    # without regions, the region is derived from the training split, and says so
    assert diff.roi_source.startswith("derived from the data")
    assert diff.roi.sum() == pytest.approx(difference.ROI_QUANTILE * diff.brain.sum(), abs=2)


# --------------------------------------------------------------------------------------------
# The atrophy regions of the cohort, on the image grid
# --------------------------------------------------------------------------------------------


class _Volume:
    def __init__(self, affine):
        self.affine = affine


def test_atrophy_regions_are_placed_through_the_volumes_affine(tmp_path, monkeypatch):
    # one region centred at x = +/-20, y = 10 mm, z = 0 mm, half-widths 8 mm; 4 mm voxels
    region = {"name": "box", "centre_mm_right": [20.0, 10.0, 0.0], "width_mm": [8.0, 8.0, 8.0]}
    desc = {"SimulationParameters": {"bvftd_regions": [region]}}
    (tmp_path / "dataset_description.json").write_text(json.dumps(desc))
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-62.0, -62.0, -8.0]  # voxel (i, j, k) at (4 i - 62, 4 j - 62, 4 k - 8)
    monkeypatch.setattr(
        difference.artifacts, "load_preprocessed_volume", lambda params, s: _Volume(affine)
    )
    params = {"register": "rigid", "cohort": str(tmp_path)}
    index = pd.DataFrame({"subject": ["s1", "s1"], "slice": [2, 3]})  # z = 0 and 4 mm
    roi, source = difference.atrophy_roi(params, index, (32, 32))
    assert "box" in source
    x = 4 * np.arange(32) - 62.0
    inside_x = (np.abs(np.abs(x) - 20) / 8) ** 4 <= 2 * np.log(2)
    inside_y = (np.abs(x - 10) / 8) ** 4 <= 2 * np.log(2)
    # at z = 0 and z = 4 the box is entered: at every level the same x-y box, both hemispheres
    np.testing.assert_array_equal(roi.any(1), inside_x)
    assert roi[inside_x][:, inside_y].all()
    assert not roi[:, ~inside_y].any()
    # not registered, or no regions listed: no placement, and why
    assert difference.atrophy_roi({**params, "register": "none"}, index, (32, 32))[0] is None
    (tmp_path / "dataset_description.json").write_text("{}")
    roi, why = difference.atrophy_roi(params, index, (32, 32))
    assert roi is None and "lists no atrophy regions" in why


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def test_the_figure_shows_fractions_by_level_and_both_maps(real_made, controls_and_patients):
    from neurodiff.viz import metrics as plots

    patients, controls, levels = controls_and_patients(synthetic_set(24, seed=21, atrophy=2.0))
    diff = _compare(patients, controls, levels)
    fig = plots.plot_anatomy(real_made, diff)
    titles = [ax.get_title() for ax in fig.axes]
    assert sum("gap" in t for t in titles) == 3
    assert f"r = {diff.metrics['difference_map_r'].value:.2f}" in titles[5]
    maps = [ax.images[0].get_array() for ax in fig.axes[3:5]]
    np.testing.assert_allclose(maps[0].filled(np.nan).T[diff.brain], diff.real[diff.brain])
    only_fractions = plots.plot_anatomy(real_made)
    assert len(only_fractions.axes) == 3


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_what_was_expected():
    f = np.full((4, 3), 1 / 3)
    with pytest.raises(MetricError, match=r"'real_fractions' must be \(N, 3\).*got shape \(4, 2\)"):
        P.level_gap(f[:, :2], np.zeros(4), f, np.zeros(4))
    with pytest.raises(MetricError, match="'synthetic_levels' must give one level per image"):
        P.level_gap(f, np.zeros(4), f, np.zeros(3))
    with pytest.raises(MetricError, match="needs at least 30 brain voxels.*found 0"):
        P.fit_tissue_model(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(MetricError, match=r"must lie in \[0, 1\]"):
        P.fit_tissue_model(np.full((2, 1, 8, 8), 2.0, np.float32))
    with pytest.raises(MetricError, match="'threshold' must lie in"):
        P.brain_mask(np.zeros((2, 2)), threshold=1.5)
    images = np.full((3, 1, 4, 4), 0.5, np.float32)
    with pytest.raises(MetricError, match="hold no image of group 'patient'; found groups"):
        P.group_difference(images, ["control"] * 3, "patient", "control")
    with pytest.raises(MetricError, match="'groups' must give one group per image"):
        P.group_difference(images, ["control"] * 2, "patient", "control")
    with pytest.raises(MetricError, match="must have one shape"):
        P.map_correlation(np.zeros((4, 4)), np.zeros((4, 5)), np.ones((4, 4)))
    with pytest.raises(MetricError, match="'roi' holds no voxel"):
        P.roi_mean(np.zeros((4, 4)), np.zeros((4, 4), bool))
    with pytest.raises(MetricError, match="no reference image of another subject"):
        P.nearest_levels(np.zeros((1, 1)), [0], (["a"], ["a"]))


def test_the_difference_map_needs_both_groups_in_every_set(controls_and_patients):
    patients, controls, _ = controls_and_patients(synthetic_set(4, seed=21))
    empty = MetricsInputs(
        controls.test,
        controls.train,
        controls.synthetic[:0],
        controls.test_index,
        controls.train_index,
        group="control",
    )
    with pytest.raises(MetricError, match="needs synthetic images of both groups.*found 4 and 0"):
        difference.group_difference_metrics(patients, empty, SETTINGS)


def test_difference_maps_need_a_class_conditional_model():
    with pytest.raises(MetricError, match="'groups' is \\[\\]"):
        difference.difference_maps({"groups": []})
    with pytest.raises(MetricError, match="'case' must be one of \\['patient'\\]; got 'x'"):
        difference.difference_maps({"groups": ["control", "patient"]}, case="x")


def test_the_new_metrics_are_reported_like_every_other(real_made):
    """In the Discussion's Markdown table (a label holding '|' would break its row), with a
    verdict, as in metrics.json."""
    doc = M.results.jsonable(real_made.to_dict())
    table = M.results_markdown(doc)
    for key in anatomy.TISSUE_METRICS.values():
        entry = doc["metrics"][key]
        assert entry["verdict"] in ("inside", "outside")
        assert entry["baseline_from"].startswith("60 subject-level redraws")
        row = next(line for line in table.splitlines() if line.startswith(f"| {entry['label']} |"))
        assert row.count("|") == 7
    for label, *_ in M.results.METRIC_SPECS.values():
        assert "|" not in label
