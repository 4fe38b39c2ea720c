"""Chapter 6: the class-conditional generator and the augmentation experiment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurodiff import artifacts, augment, config
from neurodiff.augment import Arm, stats
from neurodiff.conditioning import ClassGuided, class_labels, null_class
from neurodiff.errors import ConfigError, DataError
from neurodiff.preprocess.split import split_subjects


@pytest.fixture(scope="module")
def smoke_run(tiny_cohort: Path, tiny_pools: Path, tmp_path_factory) -> config.Params:
    """The smoke profile through preprocessing, training and sampling on the tiny cohort (6
    controls, 6 patients)."""
    from neurodiff import preprocess, sample, train

    derived = tmp_path_factory.mktemp("derived")
    params = config.resolve(
        "smoke",
        {
            "cohort": str(tiny_cohort),
            "pools_cohort": str(tiny_pools),
            "derived_dir": str(derived),
        },
    )
    preprocess.run(params)
    train.run(params)
    sample.run(params)
    return params


# --- the conditional generator ----------------------------------------------------------------


def test_the_conditional_model_trains_and_samples_each_group(smoke_run) -> None:
    params = smoke_run
    table = pd.read_csv(artifacts.synthetic_dir(params) / "participants.tsv", sep="\t")
    assert table["group"].value_counts().to_dict() == {"control": 8, "patient": 8}
    controls = artifacts.load_synthetic(params, group="control")
    patients = artifacts.load_synthetic(params, group="patient")
    assert controls.shape == patients.shape == (8, 1, 16, 16)
    assert not np.allclose(controls, patients)  # each group its own noise and its own class
    with pytest.raises(DataError, match="no images of group 'other'"):
        artifacts.load_synthetic(params, group="other")


def test_the_class_label_changes_the_prediction(smoke_run) -> None:
    from neurodiff.model import load_ema_model

    model, cfg, _ = load_ema_model(smoke_run)
    assert model.class_embedding.num_embeddings == len(cfg.groups) + 1
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 10])
    with torch.no_grad():
        outs = [ClassGuided(model, k, null_class(cfg))(x, timesteps=t) for k in range(2)]
        uncond = model(x, timesteps=t)  # no labels: the "no class" label
        null = ClassGuided(model, 0, null_class(cfg), scale=0.0)(x, timesteps=t)
        guided = ClassGuided(model, 1, null_class(cfg), scale=3.0)(x, timesteps=t)
    assert not torch.allclose(outs[0], outs[1])
    torch.testing.assert_close(uncond, null)
    torch.testing.assert_close(guided, uncond + 3.0 * (outs[1] - uncond), rtol=1e-4, atol=1e-5)


def test_class_labels_name_what_is_wrong() -> None:
    cfg = config.resolve("smoke").stage(config.ModelConfig)
    good = pd.DataFrame({"group": ["patient", "control", "patient"]})
    assert class_labels(good, cfg).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="needs a 'group' column.*train_index.tsv"):
        class_labels(pd.DataFrame({"subject": ["a"]}), cfg, "train_index.tsv")
    with pytest.raises(DataError, match=r"group\(s\) \['ALS'\] that are not in parameter"):
        class_labels(pd.DataFrame({"group": ["ALS", "control"]}), cfg)


def test_training_without_labels_is_refused_before_any_work(tmp_path: Path) -> None:
    from neurodiff import train

    params = config.resolve("smoke", {"derived_dir": str(tmp_path)})
    images = np.zeros((8, 1, 16, 16), dtype=np.float32)
    with pytest.raises(DataError, match="needs class labels"):
        train.train(params, images, tmp_path / "t", progress=False)
    with pytest.raises(DataError, match=r"must lie in 0\.\.1"):
        train.train(params, images, tmp_path / "t", labels=np.full(8, 2), progress=False)


def test_groups_are_checked() -> None:
    with pytest.raises(ConfigError, match="distinct, non-empty"):
        config.resolve("smoke", {"groups": ["control", "control"]})
    with pytest.raises(ConfigError, match="generator_channels"):
        config.resolve("smoke", {"generator_channels": [8, 8, 8, 8, 8, 8]})  # 16 px: too deep
    with pytest.raises(ConfigError, match="primary_n"):
        config.resolve("smoke", {"primary_n": 4})
    with pytest.raises(ConfigError, match="augment_draws"):
        config.resolve("smoke", {"augment_draws": [2, 2, 2]})


# --- the cohort and its split -----------------------------------------------------------------


def test_the_split_is_stratified_by_group_and_keeps_the_controls() -> None:
    controls = pd.DataFrame(
        {"subject": [f"c{i:02d}" for i in range(12)], "site": ["A", "B", "C"] * 4}
    )
    plain = split_subjects(controls, 0.25, seed=3)
    patients = pd.DataFrame(
        {"subject": [f"p{i:02d}" for i in range(6)], "site": ["A", "B", "C"] * 2}
    )
    both = pd.concat(
        [controls.assign(group="control"), patients.assign(group="patient")], ignore_index=True
    )
    grouped = split_subjects(both, 0.25, seed=3)
    kept = grouped[grouped["group"] == "control"].set_index("subject")["split"]
    assert kept.to_dict() == plain.set_index("subject")["split"].to_dict()
    test_patients = grouped[(grouped["group"] == "patient") & (grouped["split"] == "test")]
    assert sorted(test_patients["site"]) == ["A", "B", "C"]  # one per site and group


# --- the pools ---------------------------------------------------------------------------------


def test_the_pools_are_disjoint_stratified_and_age_matched(tiny_cohort: Path) -> None:
    from neurodiff.demo_data import make_pools_cohort

    sizes = (6, 6, 3, 9, 3)
    root = make_pools_cohort(
        Path(tiny_cohort).parent / "pools-sizes", sizes, seed=1, resolution=2, progress=False
    )
    t = pd.read_csv(root / "participants.tsv", sep="\t")
    assert t["participant_id"].is_unique
    counts = t.groupby(["pool", "group"]).size().to_dict()
    assert counts[("pretrain", "control")] == 6 and ("pretrain", "patient") not in counts
    for pool, n in zip(augment.POOL_NAMES[1:], sizes[1:], strict=True):
        assert counts[(pool, "control")] == counts[(pool, "patient")] == n
    assert set(t.loc[t["pool"] == "ood", "site"]) == {"D"}
    assert set(t.loc[t["pool"] != "ood", "site"]) == {"A", "B", "C"}
    test = t[t["pool"] == "test"]
    assert test.groupby("group")["site"].value_counts().unique().tolist() == [3]  # by site
    matched = t[t["pool"] != "pretrain"]
    assert matched["age"].between(45, 80).all()  # controls drawn like the patients
    demo = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    assert not set(demo["participant_id"]) & set(t["participant_id"])


def test_pools_that_share_a_subject_or_hold_patients_for_pretraining_are_refused(fair) -> None:
    params, pools, _ = fair
    acfg = params.stage(config.AugmentConfig)
    augment.check_pools(pools, acfg)
    leaky = dataclasses.replace(pools, parts=dict(pools.parts))
    test = pools["test"]
    subject = test.subject.copy()
    subject[0] = pools["train"].subject[0]
    leaky.parts["test"] = dataclasses.replace(test, subject=subject)
    with pytest.raises(DataError, match="in both the train and the test pool"):
        augment.check_pools(leaky, acfg)
    sick = dataclasses.replace(pools, parts=dict(pools.parts))
    pre = pools["pretrain"]
    sick.parts["pretrain"] = dataclasses.replace(pre, y=np.ones_like(pre.y))
    with pytest.raises(DataError, match="must be healthy"):
        augment.check_pools(sick, acfg)
    small = dataclasses.replace(acfg, augment_real_k=(1, 9))
    with pytest.raises(DataError, match="training pool has 6 subjects"):
        augment.check_pools(pools, small)


def test_a_cohort_without_a_pool_column_is_refused_with_the_fix(tiny_cohort, tmp_path) -> None:
    from neurodiff.notebook import prepare_cohorts

    params = config.resolve(
        "smoke", {"pools_cohort": str(tiny_cohort), "derived_dir": str(tmp_path)}
    )
    prepare_cohorts(params, "augment")
    with pytest.raises(DataError, match="no 'pool' column.*demo-data --pools"):
        augment.load_pools(params)


def test_an_unconditional_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    params = config.resolve("smoke", {"groups": [], "derived_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="groups='\\[control, patient\\]'"):
        augment.load_pools(params)


# --- the experiment ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fair(tiny_pools: Path, tmp_path_factory):
    """The whole experiment on the smoke profile and the tiny pools: ``(params, pools,
    result)``."""
    from neurodiff.notebook import prepare_cohorts

    derived = tmp_path_factory.mktemp("fair")
    params = config.resolve("smoke", {"pools_cohort": str(tiny_pools), "derived_dir": str(derived)})
    prepare_cohorts(params, "augment")
    result = augment.run(params)
    return params, augment.load_pools(params), result


def test_every_generator_is_fitted_on_its_draw_s_images_only(tiny_pools, tmp_path, monkeypatch):
    """The images each fit actually receives, mapped back to their subjects: the pretraining
    sees the healthy pool only, each draw's fine-tuning exactly its draw, C_pool's the pool."""
    from neurodiff.augment import generators
    from neurodiff.notebook import prepare_cohorts

    params = config.resolve(
        "smoke", {"pools_cohort": str(tiny_pools), "derived_dir": str(tmp_path), "seed": 5}
    )
    prepare_cohorts(params, "augment")
    seen: list[np.ndarray] = []
    real_fit = generators.fit_diffusion

    def spy(cfg, images, labels, settings, seed, init=None):
        seen.append(np.array(images))
        return real_fit(cfg, images, labels, settings, seed, init)

    monkeypatch.setattr(generators, "fit_diffusion", spy)
    result = augment.run(params)
    pools = augment.load_pools(params)
    owner = {}
    for name in augment.POOL_NAMES:
        for img, subject in zip(pools[name].images, pools[name].subject, strict=True):
            owner.setdefault(img.tobytes(), set()).add(subject)

    def subjects_of(images: np.ndarray) -> set[str]:
        return set().union(*(owner[img.tobytes()] for img in images))

    pretrain, pool_fit, *draw_fits = seen
    assert subjects_of(pretrain) == set(pools["pretrain"].subjects())
    assert subjects_of(pool_fit) == set(pools["train"].subjects())
    records = result.info["draw_records"]
    order = [f"n{n}-d{d}" for n, d in augment.schedule(params.stage(config.AugmentConfig))]
    by_name = {r["name"]: r for r in records}
    assert len(draw_fits) == len(order)
    for name, images in zip(order, draw_fits, strict=True):
        assert subjects_of(images) == set(by_name[name]["subjects"])
        assert sorted(subjects_of(images)) == by_name[name]["generator_trained_on"]


def test_no_generator_saw_a_subject_outside_its_draw(fair) -> None:
    params, pools, result = fair
    info = result.info
    pool_of = {s: p for p, subjects in info["pool_subjects"].items() for s in subjects}
    assert len(pool_of) == sum(len(v) for v in info["pool_subjects"].values())  # disjoint
    records = info["draw_records"]
    acfg = params.stage(config.AugmentConfig)
    assert len(records) == sum(acfg.draws_of(n) for n in acfg.augment_n)
    for r in records:
        assert r["generator_trained_on"] == sorted(r["subjects"])
        assert {pool_of[s] for s in r["subjects"]} == {"train"}
        extra = {s for cls in r["extra_subjects"] for s in cls}
        assert extra and not extra & set(r["subjects"])
        assert {pool_of[s] for s in extra} == {"train"}
        labels = pools["train"].subject_labels(r["subjects"])
        assert labels.tolist() == [0] * r["n"] + [1] * r["n"]  # n per class, first group first


def test_every_arm_is_judged_and_tuned_on_its_own_pools(fair) -> None:
    params, pools, result = fair
    acfg = params.stage(config.AugmentConfig)
    t = result.tables["table"]
    names = [a.name for a in augment.arms_of(acfg)]
    for pool in ("test", "ood"):
        for clf in augment.CLASSIFIERS:
            arms = t[(t["pool"] == pool) & (t["classifier"] == clf)]["arm"]
            assert set(arms) == set(names)
    assert t["auroc"].between(0, 1).all() and (t["ci_low"] <= t["ci_high"]).all()
    tuning = result.tables["tuning"]
    b = tuning[tuning["arm"] == "B"]["setting"]
    assert b.str.contains("/").all()  # B's strength is tuned with the learner's setting
    assert (tuning["settings tried"] > 1).all()
    primary = result.tables["gains"][result.tables["gains"]["primary"]]
    assert (
        len(primary) == 1 and primary.iloc[0]["comparison"] == f"C{max(acfg.augment_synthetic)} - A"
    )
    assert primary.iloc[0]["n"] == acfg.primary_n
    assert result.info["n_test_subjects"] == len(pools["test"].subjects())


def test_a_run_is_resumed_from_its_finished_draws(fair, tmp_path) -> None:
    params, _, result = fair
    work = artifacts.augment_work_dir(params)
    draws = sorted(work.glob("n*-d*.json"))
    before = {p.name: p.stat().st_mtime_ns for p in draws}
    lost = draws[-1]
    lost.unlink()  # a draw killed before its record was written
    again = augment.run(params, force=True)
    after = {p.name: p.stat().st_mtime_ns for p in sorted(work.glob("n*-d*.json"))}
    assert set(after) == set(before)
    assert all(after[k] == before[k] for k in before if k != lost.name)  # not recomputed
    pd.testing.assert_frame_equal(again.tables["table"], result.tables["table"])
    assert (
        augment.run(params, budget_seconds=0, force=True) is not None
    )  # all done: no budget needed


def test_a_budget_stops_between_draws_and_the_next_run_continues(tiny_pools, tmp_path) -> None:
    from neurodiff.notebook import prepare_cohorts

    params = config.resolve(
        "smoke", {"pools_cohort": str(tiny_pools), "derived_dir": str(tmp_path), "seed": 3}
    )
    prepare_cohorts(params, "augment")
    assert augment.run(params, budget_seconds=0) is None  # stopped before the first draw
    assert augment.load(params) is None
    with pytest.raises(DataError, match="too few finished draws"):
        augment.summarise(params)
    done = augment.run(params)
    assert done is not None and not done.cached
    assert augment.load(params).cached


def test_the_same_seed_gives_the_same_draws(fair) -> None:
    params, pools, _ = fair
    a = augment.plan_draw(pools, 2, 0, seed=0, k_max=2)
    b = augment.plan_draw(pools, 2, 0, seed=0, k_max=2)
    c = augment.plan_draw(pools, 2, 1, seed=0, k_max=2)
    assert a == b and (a.subjects != c.subjects or a.extra != c.extra)
    assert len(set(a.subjects)) == 4 and not set(a.subjects) & {s for x in a.extra for s in x}


def test_arms_are_typed_and_read_back_from_their_names() -> None:
    acfg = config.resolve("demo").stage(config.AugmentConfig)
    arms = augment.arms_of(acfg)
    assert [a.name for a in arms][:3] == ["A", "A_H", "B"]
    assert [Arm.parse(a.name) for a in arms] == arms
    assert Arm("C", 64).name == "C64" and Arm("E", 4).name == "E4"
    assert not Arm("D").uses_real and not Arm("ceiling").per_draw
    for bad in ("C", "Cx", "F", "E0"):
        with pytest.raises(ValueError):
            Arm.parse(bad)


# --- the learners and the augmentation ---------------------------------------------------------


def _two_blobs(n: int, seed: int, shift: float = 0.6):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n)
    x = rng.normal(0, 0.3, (2 * n, 1, 16, 16)).astype(np.float32)
    x[y == 1, :, 4:12, 4:12] += shift  # a bright square in the patients
    return x, y


def test_both_learners_learn_a_visible_difference_and_are_seeded() -> None:
    x, y = _two_blobs(24, 0)
    xt, yt = _two_blobs(20, 1)
    cnn = augment.fit_cnn(x, y, [xt], steps=60, seed=0)
    assert list(cnn) == ["steps=20", "steps=40", "steps=60"]
    assert augment.auroc(cnn["steps=60"][0], yt) > 0.9
    again = augment.fit_cnn(x, y, [xt], steps=60, seed=0)
    np.testing.assert_array_equal(cnn["steps=60"][0], again["steps=60"][0])
    lr = augment.fit_logistic(augment.features(x), y, [augment.features(xt)], (0.01, 1.0))
    assert list(lr) == ["C=0.01", "C=1"]
    assert augment.auroc(lr["C=1"][0], yt) > 0.9


def test_realistic_augmentation_changes_intensity_and_shape_within_range() -> None:
    from neurodiff.augment.realistic import realistic_copies

    x, y = _two_blobs(4, 0)
    x = np.clip(x, -1, 1)
    out, labels = realistic_copies(x, y, 5, "strong", seed=0)
    assert out.shape == (10, 1, 16, 16) and labels.tolist() == [0] * 5 + [1] * 5
    assert out.min() >= -1 and out.max() <= 1
    again, _ = realistic_copies(x, y, 5, "strong", seed=0)
    np.testing.assert_array_equal(out, again)
    mild, _ = realistic_copies(x, y, 5, "mild", seed=0)
    assert not np.allclose(out, mild)


def test_a_fine_tuning_starts_from_its_init_and_is_seeded() -> None:
    from neurodiff.finetune import FitSettings, fit_diffusion

    cfg = (
        config.resolve("smoke")
        .stage(config.AugmentConfig)
        .generator_config(config.resolve("smoke").stage(config.ModelConfig))
    )
    x, y = _two_blobs(4, 0)
    settings = FitSettings(steps=3, lr=1e-3, batch_size=4, warmup=1, device="cpu")
    a = fit_diffusion(cfg, x, y, settings, seed=0)
    b = fit_diffusion(cfg, x, y, settings, seed=0)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, msg=k)
    init = {k: torch.zeros_like(v) for k, v in a.state_dict().items()}
    zero = fit_diffusion(cfg, x, y, dataclasses.replace(settings, steps=1, lr=1e-12), 0, init)
    w = next(v for k, v in zero.state_dict().items() if k.endswith("weight") and v.ndim == 4)
    assert float(w.abs().max()) < 1e-6  # it started from the given weights


# --- the statistics ---------------------------------------------------------------------------


def test_auroc_is_the_mann_whitney_area() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(9), np.ones(6)].astype(int)
    s = rng.normal(size=15) + y
    s[3] = s[10]  # a tie
    assert augment.auroc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_the_hierarchical_bootstrap_pairs_arms_and_sees_a_shift() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60), np.ones(60)].astype(int)
    w = stats.BootstrapWeights(y, {4: 6, 8: 6}, 400, seed=0)
    base = rng.normal(size=(6, 120)) + 0.5 * y
    est, reps = stats.auroc_replicates(base, w, 4)
    assert est == pytest.approx(np.mean([augment.auroc(s, y) for s in base]))
    same, same_reps = stats.auroc_replicates(base.copy(), w, 4)
    np.testing.assert_array_equal(reps, same_reps)  # an identical arm: zero gain in every one
    better = base + 1.0 * y
    _, b_reps = stats.auroc_replicates(better, w, 4)
    lo, hi = stats.interval(b_reps - reps)
    assert lo > 0
    noise = base + rng.normal(0, 0.01, base.shape)
    _, n_reps = stats.auroc_replicates(noise, w, 4)
    lo, hi = stats.interval(n_reps - reps)
    assert lo < 0 < hi
    assert stats.p_value(float(np.mean(b_reps - reps)), b_reps - reps) < 1e-4
    assert stats.p_value(0.0, n_reps - reps) == pytest.approx(1.0)


def test_the_draws_needed_split_the_spread_into_draws_and_test_subjects() -> None:
    assert (
        stats.draws_for(0.05, 0.05, 0.01, draws=10) == 46
    )  # 10 * 0.05^2 / ((0.05/1.96)^2 - 0.01^2)
    assert stats.draws_for(0.05, 0.01, 0.03, draws=10) is None  # the test set alone is too wide
    assert stats.draws_for(0.05, 0.001, 0.001, draws=10) == 10
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(80), np.ones(80)].astype(int)
    per_draw = rng.normal(0, 1.0, (12, 1)) * y  # draws differ a lot, test subjects are many
    a = rng.normal(size=(12, 160)) + 0.5 * y
    sd_draws, sd_test = stats.sd_split(a + per_draw, a, y, 300, seed=0)
    assert sd_draws > sd_test > 0


def test_holm_matches_its_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, 0.09, 0.5])


def test_worth_is_not_positive_below_a_and_censored_beyond_the_pool() -> None:
    m = np.array([2, 3, 4, 6, 10, 18, 100.0])
    curve = stats.fit_curve(m, 0.9 - 0.4 * m**-0.6)
    assert curve[0] == pytest.approx(0.9, abs=0.02)
    a16 = 0.9 - 0.4 * 16**-0.6
    below, how = stats.worth_of(a16 - 0.005, a16, curve, 100 - 16)
    assert below < 0 and how == "fitted"
    same, _ = stats.worth_of(a16, a16, curve, 84)
    assert same == pytest.approx(0.0, abs=1e-6)
    above, _ = stats.worth_of(0.9 - 0.4 * 32**-0.6, a16, curve, 84)
    assert above == pytest.approx(16, rel=0.15)
    top, how = stats.worth_of(0.95, a16, curve, 84)
    assert how == "at least" and top > 0


def test_worth_at_n16_is_not_positive_for_an_arm_below_a(fair) -> None:
    """The results table's rule: an arm whose mean AUROC is below A's has no positive worth."""
    _, _, result = fair
    w = result.tables["worth"]
    below = w[w["auroc"] < w["a auroc"]]
    assert (below["worth (real subjects per class)"] <= 0).all()
    above = w[(w["auroc"] > w["a auroc"])]
    assert (above["worth (real subjects per class)"] >= 0).all()


def test_the_answer_is_generated_from_the_tables(fair) -> None:
    _, _, result = fair
    text = augment.answer(result)
    p = result.info["primary"]
    assert f"{p['gain']:+.3f}" in text and "Holm" in text and "leak" in text
    assert augment.reading.status_sentence(result) == ""  # a live run has no sittings


def test_the_committed_results_were_made_by_the_benchmark() -> None:
    root = config.project_root()
    full = augment.from_results_file(root / "benchmarks" / "results" / "augment_fair.json")
    raw = full.raw
    assert raw["command"].startswith("python benchmarks/augment_fair.py")
    assert raw["cpu"] and raw["sittings"]
    pools = full.info["pool_subjects"]
    seen: dict[str, str] = {}
    for pool, subjects in pools.items():
        for s in subjects:
            assert s not in seen, f"{s} in {seen.get(s)} and {pool}"
            seen[s] = pool
    for r in full.info["draw_records"]:  # every generator trained on its own draw only
        assert r["generator_trained_on"] == sorted(r["subjects"])
        assert {seen[s] for s in r["subjects"]} == {"train"}
    assert full.info["pool_sizes"]["test"] == {"control": 250, "patient": 250}
    assert min(full.info["pool_sizes"]["train"].values()) >= 100
    w = full.tables["worth"]
    below = w[(w["n"] == 16) & (w["auroc"] < w["a auroc"])]
    assert (below["worth (real subjects per class)"] <= 0).all()
    primary = full.info["primary"]
    assert primary["half_width"] <= raw["target_half_width"] or not raw["complete"]
    text = augment.answer(full)
    assert f"{full.info['primary']['gain']:+.3f}" in text
