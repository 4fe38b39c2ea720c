"""The yardstick: a subject-level MMD test at its level, one bandwidth per report, the
real-vs-real range from subject-level redraws, and inside/outside verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from neurodiff.errors import MetricError
from neurodiff.measures import mmd_rbf
from neurodiff.measures.intervals import real_range
from neurodiff.measures.redraws import redraw_indices
from neurodiff.metrics import evaluate
from neurodiff.metrics.results import MetricValue, interpret, jsonable, results_markdown


def _clustered(rng, n_subjects: int, per_subject: int, dim: int = 8, spread: float = 1.0):
    """Features of ``n_subjects`` subjects with ``per_subject`` correlated slices each: a subject
    effect (spread ``spread``) plus a smaller slice effect, as slices of one brain are alike."""
    centres = rng.normal(0.0, spread, (n_subjects, dim))
    x = np.repeat(centres, per_subject, axis=0) + rng.normal(
        0.0, 0.3, (n_subjects * per_subject, dim)
    )
    return x, np.repeat(np.arange(n_subjects), per_subject)


def _rejection_rate(units: bool, trials: int = 200, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    rejected = 0
    for t in range(trials):
        x, sx = _clustered(rng, 12, 8)
        y, sy = _clustered(rng, 12, 8)
        kwargs = {"real_units": sx, "synthetic_units": sy} if units else {}
        p = mmd_rbf(x, y, n_permutations=99, seed=t, **kwargs).p_value
        rejected += p < 0.05
    return rejected / trials


def test_subject_level_mmd_test_rejects_two_real_groups_about_5_percent_of_the_time():
    """Under the null (two groups of subjects from one population, eight alike slices each), the
    test that permutes subjects holds its 5 % level; permuting slices does not."""
    by_subject = _rejection_rate(units=True)
    by_slice = _rejection_rate(units=False)
    assert 0.01 <= by_subject <= 0.10, by_subject
    assert by_slice > 0.25, by_slice


def test_subject_level_mmd_test_still_detects_a_real_difference():
    rng = np.random.default_rng(1)
    x, sx = _clustered(rng, 12, 8)
    y, sy = _clustered(rng, 12, 8)
    y = y + 1.5
    p = mmd_rbf(x, y, n_permutations=99, real_units=sx, synthetic_units=sy).p_value
    assert p < 0.05


def test_unit_labels_must_match_the_samples():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(MetricError, match="labels for 10 samples"):
        mmd_rbf(x, x + 1, n_permutations=10, real_units=np.arange(9))


def test_redraws_split_subjects_never_slices():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(10)], 4)
    ia, ib = redraw_indices(subjects, 3, 8, 50, rng)
    assert ia.shape == ib.shape == (50, 8)
    for a, b in zip(ia, ib, strict=True):
        assert not set(subjects[a]) & set(subjects[b])
        assert len(set(subjects[a])) <= 3
        assert len(set(a)) == len(a)  # no sample twice within a group
    # redraws differ from each other
    assert len({tuple(sorted(set(subjects[a]))) for a in ia}) > 5


def test_redraws_need_subjects_on_both_sides():
    with pytest.raises(MetricError, match="subjects in both groups"):
        redraw_indices(np.array(["a", "a", "b"]), 2, 2, 5, np.random.default_rng(0))


def test_real_range_is_the_central_95_percent():
    lo, hi = real_range(np.arange(1001.0))
    assert lo == pytest.approx(25.0) and hi == pytest.approx(975.0)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("fid", 0.5, "inside"),  # under a lower-is-better range: as good as real
        ("fid", 2.5, "outside"),
        ("precision", 0.95, "inside"),  # above a higher-is-better range
        ("precision", 0.4, "outside"),
        ("density", 1.8, "outside"),  # two-sided
        ("density", 0.3, "outside"),
        ("density", 1.0, "inside"),
    ],
)
def test_verdict_reads_the_range_by_direction(name, value, expected):
    m = MetricValue(name, value, (value, value), 1.0, (0.8, 1.2), "f", 10, 10)
    assert m.verdict == expected


def _image_sets(seed: int = 0):
    rng = np.random.default_rng(seed)

    def subjects(n, per, shift=0.0):
        base = rng.random((n, 1, 1, 16, 16)) * 0.5 + shift
        x = np.clip(base + rng.normal(0, 0.05, (n, per, 1, 16, 16)), 0, 1)
        return x.reshape(n * per, 1, 16, 16).astype(np.float32), np.repeat(np.arange(n), per)

    test, ts = subjects(6, 4)
    train, trs = subjects(18, 4)
    return test, ts, train, trs, subjects


def test_evaluate_reports_one_bandwidth_and_redrawn_ranges():
    test, ts, train, trs, subjects = _image_sets()
    noisy, _ = subjects(24, 1, shift=0.4)
    r = evaluate(
        test,
        noisy,
        train,
        n_bootstrap=20,
        n_permutations=50,
        msssim_pairs=10,
        nn_k=2,
        real_subjects=ts,
        train_subjects=trs + 100,
        n_redraws=12,
    )
    rbf = r.metrics["mmd_rbf"]
    assert rbf.extra["bandwidth"] == r.bandwidth and r.n_redraws == 12
    assert rbf.extra["permuted"] == "subjects"
    for key in ("fid", "mmd_rbf", "precision", "coverage", "ms_ssim_diversity"):
        m = r.metrics[key]
        assert "split_baseline" in m.extra and m.baseline_ci[0] <= m.baseline <= m.baseline_ci[1]
    # shifted synthetic images are far outside what two groups of real subjects show
    assert r.metrics["fid"].verdict == "outside"
    assert rbf.extra["p_value"] < 0.05
    table = interpret(r)
    assert table.loc["fid", "reading"].startswith("outside")
    text = results_markdown(jsonable(r.to_dict()))
    assert "subject-level redraws" in text and "Subject-level MMD test" in text


def test_evaluate_subject_labels_must_fit():
    test, ts, train, trs, _ = _image_sets()
    with pytest.raises(MetricError, match="one subject per image"):
        evaluate(test, test, train, nn_k=2, n_bootstrap=10, real_subjects=ts[:-1])


def test_prdc_from_distances_equals_the_prdc_package():
    from neurodiff.measures.manifold import prdc_from_distances, prdc_metrics

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 6)), rng.normal(0.3, 1.0, size=(30, 6))

    def d(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    fast = prdc_from_distances(d(x, x), d(y, y), d(x, y), 4)
    assert fast == pytest.approx(prdc_metrics(x, y, 4))
