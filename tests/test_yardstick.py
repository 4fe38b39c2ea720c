"""The yardstick: a subject-level MMD test at its level for two real groups, one bandwidth per
report, the real-vs-real range from subject-level redraws stratified as the split, intervals
that resample subjects, and inside/outside verdicts. (The synthetic-vs-real test at chapter 5's
layout: tests/test_layout_test.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from neurodiff.errors import MetricError
from neurodiff.measures import mmd_rbf, resample_indices, resampled_means
from neurodiff.measures.intervals import real_range
from neurodiff.measures.redraws import first_counts, n_partitions, redraw_indices, strata_of
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


def test_redraws_are_stratified_like_the_split():
    """Every redraw's first group holds the test split's subjects of each site (and group)."""
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i:02d}" for i in range(24)], 3)
    sites = np.repeat(np.array(list("AAAAAABBBBBBBBCCCCCCCCCC")), 3)
    groups = np.repeat(np.array(["control", "patient"] * 12), 3)
    strata = strata_of(sites, groups)
    in_test = np.isin(subjects, ["s00", "s01", "s07", "s08", "s09", "s14", "s15"])
    counts = first_counts(subjects, in_test, strata)
    assert counts == {
        "A/control": 1,
        "A/patient": 1,
        "B/control": 1,
        "B/patient": 2,
        "C/control": 1,
        "C/patient": 1,
    }
    ia, ib = redraw_indices(subjects, counts, 6, 40, rng, strata=strata)
    first_sets = set()
    for a, b in zip(ia, ib, strict=True):
        assert not set(subjects[a]) & set(subjects[b])
    ia, _ = redraw_indices(subjects, counts, 21, 40, rng, strata=strata)  # every slice
    for a in ia:
        chosen = np.unique(subjects[a])
        strata_of_chosen = [strata[subjects == s][0] for s in chosen]
        assert dict(zip(*np.unique(strata_of_chosen, return_counts=True))) == counts
        first_sets.add(tuple(chosen))
    assert len(first_sets) > 20
    assert n_partitions(subjects, counts, strata) == 3 * 3 * 4 * 6 * 5 * 5
    with pytest.raises(MetricError, match="per stratum"):
        redraw_indices(subjects, 7, 6, 5, rng, strata=strata)


def test_redraws_without_strata_fall_back_to_one_stratum():
    subjects = np.repeat([f"s{i}" for i in range(6)], 2)
    assert first_counts(subjects, subjects < "s2") == {"all": 2}
    ia, ib = redraw_indices(subjects, 2, 4, 5, np.random.default_rng(0))
    assert ia.shape == ib.shape == (5, 4)


def test_bootstrap_resamples_subjects_not_slices():
    """Resampling by subject keeps a subject's slices together: with a strong subject effect the
    replicates of a mean vary as much as the subjects do, resampling slices shrinks it by the
    number of slices per subject."""
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(8), 8)
    scores = np.repeat(rng.normal(size=8), 8) + rng.normal(0, 0.05, 64)
    by_subject = resampled_means(scores, 400, rng, units).std()
    by_slice = resampled_means(scores, 400, rng).std()
    assert by_subject > 2 * by_slice
    idx = resample_indices(64, 20, rng, units)
    assert idx.shape == (20, 64)
    # one sample per unit: the same as resampling samples
    singles = resample_indices(10, 5, np.random.default_rng(1), np.arange(10))
    assert singles.shape == (5, 10) and singles.max() < 10


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
        n_redraws=39,
    )
    rbf = r.metrics["mmd_rbf"]
    assert rbf.extra["bandwidth"] == r.bandwidth and r.n_redraws == 39
    assert "39 real-vs-real redraws" in rbf.extra["test"] and rbf.extra["test_n_single"] == 9
    assert "permutations of subjects" in rbf.extra["baseline_test"]
    for key in ("fid", "kid", "mmd_rbf", "precision", "coverage", "ms_ssim_diversity"):
        m = r.metrics[key]
        assert "split_baseline" in m.extra and m.baseline_ci[0] <= m.baseline <= m.baseline_ci[1]
    # shifted synthetic images are far outside what two groups of real subjects show
    assert r.metrics["fid"].verdict == "outside" and r.metrics["kid"].verdict == "outside"
    assert rbf.extra["p_value"] <= 0.05
    table = interpret(r)
    assert table.loc["fid", "reading"].startswith("outside")
    text = results_markdown(jsonable(r.to_dict()))
    assert "subject-level redraws" in text and "Synthetic-vs-real MMD test" in text


def test_evaluate_without_redraws_says_why_there_is_no_test():
    test, ts, train, trs, subjects = _image_sets()
    r = evaluate(test, test, train, nn_k=2, n_bootstrap=10, n_permutations=10, msssim_pairs=10)
    rbf = r.metrics["mmd_rbf"]
    assert "p_value" not in rbf.extra and "n_redraws > 0" in rbf.extra["test"]
    assert "not run" in results_markdown(jsonable(r.to_dict()))


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
