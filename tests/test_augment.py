"""Chapter 6: the class-conditional generator and the augmentation experiment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurodiff import artifacts, augment, config
from neurodiff.augment import Arm, stats
from neurodiff.augment.checks import nearest_level
from neurodiff.augment.data import ExperimentData, check_pools, draw, oracle_images
from neurodiff.conditioning import ClassGuided, class_labels, null_class
from neurodiff.errors import ConfigError, DataError
from neurodiff.measures.intervals import percentile_interval
from neurodiff.preprocess.split import split_subjects


@pytest.fixture(scope="module")
def smoke_run(tiny_cohort: Path, tiny_new_cohort: Path, tmp_path_factory) -> config.Params:
    """The smoke profile through preprocessing, training and sampling on the tiny cohort (6
    controls, 6 patients), with the tiny oracle preprocessed too."""
    from neurodiff import preprocess, sample, train
    from neurodiff.notebook import prepare_cohorts

    derived = tmp_path_factory.mktemp("derived")
    params = config.resolve(
        "smoke",
        {
            "cohort": str(tiny_cohort),
            "oracle_cohort": str(tiny_new_cohort),
            "derived_dir": str(derived),
        },
    )
    preprocess.run(params)
    train.run(params)
    sample.run(params)
    prepare_cohorts(params, "augment")  # the oracle cohort, preprocessed like the cohort
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
    with pytest.raises(ConfigError, match="augment_synthetic.*n_samples is 8"):
        config.resolve("smoke", {"augment_synthetic": [4, 16]})


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


def test_new_subjects_are_new(tiny_cohort: Path, tiny_new_cohort: Path) -> None:
    old = pd.read_csv(tiny_cohort / "participants.tsv", sep="\t")
    new = pd.read_csv(tiny_new_cohort / "participants.tsv", sep="\t")
    assert new["participant_id"].str.startswith("sub-new").all()
    assert set(new["group"]) == {"control", "patient"}
    assert not set(old["participant_id"]) & set(new["participant_id"])
    desc = json.loads((tiny_new_cohort / "dataset_description.json").read_text())
    assert desc["SimulationParameters"]["new_subjects"] is True


# --- the experiment ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(smoke_run):
    return augment.run(smoke_run, force=True)


def test_no_subject_is_in_training_and_test(smoke_run, experiment) -> None:
    data = augment.load_data(smoke_run)
    test = set(data.test_subject)
    assert not test & set(data.train_subject)
    draws = experiment.draws
    assert draws == json.loads((experiment.out_dir / "draws.json").read_text())
    real = {k: v for k, v in draws.items() if k.endswith("-real")}
    assert len(real) == len(smoke_run.augment_n) * smoke_run.augment_draws
    for subjects in real.values():
        assert set(subjects) <= set(data.train_subject) and not set(subjects) & test
    order = experiment.scores["subjects"].tolist()
    assert set(order) == test  # every arm is judged on the test subjects, and only on them


def test_the_oracle_draws_subjects_of_no_other_pool(smoke_run, experiment) -> None:
    data = augment.load_data(smoke_run)
    draws = experiment.draws
    oracle = {s for k, v in draws.items() if k.endswith("-E") for s in v}
    assert oracle and all(s.startswith("sub-new") for s in oracle)
    others = {s for k, v in draws.items() if not k.endswith("-E") for s in v}
    assert not oracle & (others | set(data.train_subject) | set(data.test_subject))


def test_pools_that_share_a_subject_are_refused(smoke_run) -> None:
    data = augment.load_data(smoke_run)
    leaky = ExperimentData(**{**data.__dict__})
    leaky.oracle_subject = data.oracle_subject.copy()
    leaky.oracle_subject[0] = data.test_subject[0]
    with pytest.raises(DataError, match="in both the test and the oracle pool"):
        check_pools(leaky, smoke_run.stage(config.AugmentConfig))


def test_the_same_seed_gives_the_same_table(smoke_run, experiment) -> None:
    again = augment.run(smoke_run, force=True)
    pd.testing.assert_frame_equal(again.table, experiment.table)
    pd.testing.assert_frame_equal(again.worth, experiment.worth)
    acfg = smoke_run.stage(config.AugmentConfig)
    data = augment.load_data(smoke_run)
    same = augment.experiment(data, acfg)["scores"]
    np.testing.assert_array_equal(same, experiment.scores["scores"])
    other = augment.experiment(data, dataclasses.replace(acfg, seed=1))["scores"]
    assert not np.array_equal(other, experiment.scores["scores"])


def test_the_result_has_every_arm_and_is_reused(smoke_run, experiment) -> None:
    arms = [arm.name for arm in augment.arms_of(smoke_run.stage(config.AugmentConfig))]
    assert arms == ["A", "B", "C4", "C8", "D", "E"]
    assert sorted(set(experiment.table["arm"])) == sorted(arms)
    assert experiment.table["auroc"].between(0, 1).all()
    a = experiment.table[experiment.table["arm"] == "A"]
    assert a["gain"].isna().all()
    assert augment.run(smoke_run).cached
    text = augment.answer(experiment)
    assert "Synthetic only (D)" in text and "Worth in real subjects" in text
    shift = experiment.atrophy.set_index("level").loc["all levels"].set_index("images")["mean"]
    reading = augment.conditioning_reading(experiment)
    assert f"{shift['real']:+.3f}" in reading and f"{shift['synthetic']:+.3f}" in reading


def test_a_finished_run_is_read_back_without_computing(smoke_run, experiment, tmp_path) -> None:
    found = augment.load(smoke_run)
    assert found is not None and found.cached
    for name in artifacts.AUGMENT_TABLES:
        pd.testing.assert_frame_equal(getattr(found, name), getattr(experiment, name))
    np.testing.assert_array_equal(found.scores["scores"], experiment.scores["scores"])
    assert found.draws == experiment.draws
    assert {**found.info, "seconds": 0} == {**experiment.info, "seconds": 0}  # rerun since
    assert found.info["arms"] == ["A", "B", "C4", "C8", "D", "E"]
    assert augment.load(config.resolve("smoke", {"derived_dir": str(tmp_path)})) is None


def test_arms_are_typed_and_read_back_from_their_names() -> None:
    acfg = config.resolve("smoke").stage(config.AugmentConfig)
    arms = augment.arms_of(acfg)
    assert arms == [Arm("A"), Arm("B"), Arm("C", 4), Arm("C", 8), Arm("D"), Arm("E")]
    assert [Arm.parse(arm.name) for arm in arms] == arms
    assert augment.arms_of(acfg, oracle=False) == arms[:-1]
    assert [arm.added(8) for arm in arms] == [0, 8, 4, 8, 8, 8]
    assert [arm.uses_real for arm in arms] == [True, True, True, True, False, True]
    assert Arm("C", 64).describe(64) == "real + 64 synthetic per class"
    assert Arm("B").describe(64) == "real + 64 classical augmentations per class"
    for bad in ("", "C", "Cx", "c4", "A1", "F"):
        with pytest.raises(ValueError, match="not an arm name"):
            Arm.parse(bad)
    for kind, synthetic in (("C", None), ("A", 4), ("C", 0), ("F", None)):
        with pytest.raises(ValueError):
            Arm(kind, synthetic)  # type: ignore[arg-type]


def test_draws_are_paired_and_seeded(smoke_run) -> None:
    data = augment.load_data(smoke_run)
    a, b = draw(data, 2, 0, seed=0), draw(data, 2, 0, seed=0)
    assert a.subjects == b.subjects
    assert len(a.subjects) == 4  # 2 per class
    x, y, used = oracle_images(data, 4, np.random.default_rng(0))
    assert len(x) == 8 and y.tolist() == [0] * 4 + [1] * 4 and used


def test_an_unconditional_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    params = config.resolve("smoke", {"groups": [], "derived_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="groups='\\[control, patient\\]'"):
        augment.load_data(params)


# --- the statistics ---------------------------------------------------------------------------


def test_auroc_is_the_mann_whitney_area() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(9), np.ones(6)].astype(int)
    s = rng.normal(size=15) + y
    s[3] = s[10]  # a tie
    assert augment.auroc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_the_paired_bootstrap_sees_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(20), np.ones(10)].astype(int)
    base = rng.normal(size=(8, 30)) + 0.5 * y
    better = base + 1.5 * y  # the same draws, patients scored higher
    pairs = np.stack(
        [
            np.stack([augment.pair_matrix(arm[d], y) for d in range(8)])
            for arm in (base, better, base)
        ]
    )
    est, reps = stats.bootstrap_aurocs(pairs, 500, np.random.default_rng(0))
    assert reps.shape == (3, 500)
    lo, _ = percentile_interval(reps[1] - reps[0])
    assert lo > 0
    np.testing.assert_allclose(reps[2], reps[0])  # an identical arm: zero gain in every replicate


def test_worth_reads_the_real_curve() -> None:
    ks, curve = stats.real_curve([(2, 0.6), (4, 0.7), (8, 0.65), (16, 0.9)])
    assert curve.tolist() == [0.6, 0.7, 0.7, 0.9]  # made non-decreasing
    assert stats.worth(0.8, 4, ks, curve) == (pytest.approx(8.0), "interpolated")
    assert stats.worth(0.55, 2, ks, curve) == (0.0, "none")
    assert stats.worth(0.95, 4, ks, curve) == (12.0, "at least")


def test_the_nearest_level_is_the_nearest_image_and_the_first_of_equals() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 1, 4, 4)).astype(np.float32)
    twice = np.concatenate([ref, ref])  # every reference twice: exact ties
    assert nearest_level(ref, twice, np.arange(10)).tolist() == [0, 1, 2, 3, 4]
    images = rng.normal(size=(20, 1, 4, 4)).astype(np.float32)
    d = ((images.reshape(20, 1, -1) - ref.reshape(1, 5, -1).astype(np.float64)) ** 2).sum(-1)
    levels = np.array([10, 11, 12, 13, 14])
    np.testing.assert_array_equal(nearest_level(images, ref, levels), levels[d.argmin(1)])


def test_the_atrophy_proxy_sees_a_darker_centre() -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 1.0, size=(4, 1, 16, 16)).astype(np.float32)
    dark = img.copy()
    dark[:, :, 6:10, 6:10] = -1.0
    assert (augment.dark_fraction(dark, 0.0) > augment.dark_fraction(img, 0.0)).all()
