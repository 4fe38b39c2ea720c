"""A healthy-only cohort (a table without a 'group' column, as IXI's): the generator is
unconditional by default, a ``groups`` list the table lacks is refused before any work, and
chapter 6, which compares two groups, says why it cannot run on such pools."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from neurodiff import augment, config, dispatch, runner, runs
from neurodiff.cohort import conditioning_groups, read_groups
from neurodiff.config import ModelConfig
from neurodiff.errors import ConfigError


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    """Six simulated controls at three sites (fast mode): participants.tsv has participant_id,
    site, age and sex, and no 'group' column."""
    from neurodiff.demo_data import make_demo_cohort

    out = tmp_path_factory.mktemp("healthy") / "cohort"
    return make_demo_cohort(
        out, subjects=6, sites=3, seed=0, patients=0, resolution=2, progress=False
    )


def _table_only(root: Path, groups: list[str] | None) -> Path:
    """A BIDS folder holding only its table (the groups are read from the table alone)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1"}))
    rows = ["participant_id\tsite" + ("\tgroup" if groups is not None else "")]
    for i, g in enumerate(groups or ["", ""]):
        rows.append(f"sub-{i:03d}\tA" + (f"\t{g}" if groups is not None else ""))
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return root


def _resolve(cohort: Path, tmp_path: Path, **overrides) -> config.Params:
    return config.resolve(
        "smoke", {"cohort": str(cohort), "derived_dir": str(tmp_path / "derived"), **overrides}
    )


# --- which groups ------------------------------------------------------------------------------


def test_a_healthy_only_cohort_gives_an_unconditional_model(healthy, tmp_path) -> None:
    header = (healthy / "participants.tsv").read_text().splitlines()[0].split("\t")
    assert "group" not in header and "participant_id" in header
    assert read_groups(healthy).groups == ()
    params = _resolve(healthy, tmp_path)
    assert params.groups == () and params.stage(ModelConfig).groups == ()
    assert params.from_cohort == ("groups",)
    assert runs.shaping_params(params, "train")["groups"] == []


def test_a_table_with_both_groups_gives_the_conditional_model(tmp_path) -> None:
    cohort = _table_only(tmp_path / "both", ["control", "patient", "control"])
    params = _resolve(cohort, tmp_path)
    assert params.groups == ("control", "patient")
    # the same run as with the list given: the demo cohort keeps its keys
    given = _resolve(cohort, tmp_path, groups=["control", "patient"])
    assert given.from_cohort == () and given.groups == params.groups
    assert runs.chain_keys(given) == runs.chain_keys(params)


def test_the_keys_follow_the_cohort_s_groups(tmp_path) -> None:
    """A run on the same folder once its table lost the groups is another run (no model
    conditioned on groups is reused for an unconditional one)."""
    cohort = _table_only(tmp_path / "c", ["control", "patient"])
    conditional = _resolve(cohort, tmp_path)
    _table_only(cohort, None)
    unconditional = _resolve(cohort, tmp_path)
    assert unconditional.groups == ()
    assert runs.stage_key(unconditional, "preprocess") == runs.stage_key(conditional, "preprocess")
    for stage in ("train", "sample", "metrics"):
        assert runs.stage_key(unconditional, stage) != runs.stage_key(conditional, stage)


def test_one_group_or_none_is_unconditional_and_a_missing_folder_keeps_the_list(tmp_path):
    assert _resolve(_table_only(tmp_path / "one", ["control", "control"]), tmp_path).groups == ()
    assert _resolve(_table_only(tmp_path / "n-a", ["n/a", "control"]), tmp_path).groups == ()
    flat = tmp_path / "flat"  # no table at all
    flat.mkdir()
    assert read_groups(flat).groups == ()
    assert _resolve(flat, tmp_path).groups == ()
    # not written yet (the simulated cohort is written on demand): the list as configured
    assert read_groups(tmp_path / "absent").groups is None
    assert _resolve(tmp_path / "absent", tmp_path).groups == ("control", "patient")


def test_an_ixi_style_folder_is_healthy_only(healthy, tmp_path) -> None:
    """IXI's own layout (site in the file name, an optional IXI table without groups)."""
    import shutil

    ixi = tmp_path / "ixi"
    ixi.mkdir()
    scans = sorted(healthy.glob("sub-*/anat/*_T1w.nii.gz"))[:3]
    for i, (scan, site) in enumerate(zip(scans, ("Guys", "HH", "IOP"), strict=True)):
        shutil.copy(scan, ixi / f"IXI{i + 1:03d}-{site}-{1000 + i}-T1.nii.gz")
    assert read_groups(ixi).groups == ()
    assert _resolve(ixi, tmp_path).groups == ()
    (ixi / "IXI.csv").write_text("IXI_ID,SEX_ID (1=m, 2=f),AGE\n1,1,30\n2,2,40\n3,1,50\n")
    assert read_groups(ixi).groups == ()
    with pytest.raises(ConfigError, match="groups"):
        _resolve(ixi, tmp_path, groups=["control", "patient"])


def test_a_list_the_table_lacks_is_refused_naming_the_parameter(healthy, tmp_path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"parameter 'groups' is \['control', 'patient'\], but "
        "the cohort has no 'group' column",
    ) as err:
        _resolve(healthy, tmp_path, groups=["control", "patient"])
    assert err.value.parameter == "groups" and "groups=[]" in str(err.value)
    assert _resolve(healthy, tmp_path, groups=[]).groups == ()  # unconditional, as asked
    one = _table_only(tmp_path / "one", ["control"])
    with pytest.raises(
        ConfigError,
        match=r"no subject of .*participants.tsv is in group\(s\) "
        r"\['patient'\]",
    ):
        _resolve(one, tmp_path, groups=["control", "patient"])
    other = _table_only(tmp_path / "adni", ["CN", "AD"])
    with pytest.raises(ConfigError, match=r"defaults to .*groups='\[AD, CN\]'") as err:
        _resolve(other, tmp_path)  # two groups, not the default's: the fix is named
    assert err.value.parameter == "groups"
    assert _resolve(other, tmp_path, groups=["CN", "AD"]).groups == ("CN", "AD")


def test_the_rule_on_its_own() -> None:
    from neurodiff.cohort import CohortGroups

    both = CohortGroups(("control", "patient"), "t.tsv")
    assert conditioning_groups(both, ("patient", "control"), explicit=True) == (
        "patient",
        "control",
    )
    assert conditioning_groups(CohortGroups((), "t.tsv"), ("control", "patient"), False) == ()
    assert conditioning_groups(CohortGroups(None, "x"), ("a", "b"), False) == ("a", "b")
    assert conditioning_groups(both, (), explicit=True) == ()


# --- the model -------------------------------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_the_trained_model_has_no_class_embedding(healthy, tmp_path) -> None:
    from neurodiff import preprocess, train
    from neurodiff.checkpoints import latest_checkpoint, load_checkpoint
    from neurodiff.model import load_ema_model

    params = _resolve(
        healthy,
        tmp_path,
        device="cpu",
        qc_exclude=False,
        train_steps=2,
        checkpoint_every=2,
        preview_every=0,
    )
    preprocess.run(params)
    result = train.run(params)
    ckpt = load_checkpoint(latest_checkpoint(result.train_dir))
    assert ckpt["model_config"]["groups"] == []
    model, cfg, _ = load_ema_model(params, "cpu")
    assert cfg.groups == () and getattr(model, "class_embedding", None) is None
    recorded = json.loads((result.train_dir / runs.RECORD).read_text())
    assert recorded["params"]["groups"] == []


# --- chapter 6 ---------------------------------------------------------------------------------


def test_chapter_6_says_why_it_cannot_run_on_healthy_only_pools(healthy, tmp_path, caplog):
    from neurodiff.notebook import prepare_cohorts

    params = _resolve(healthy, tmp_path, pools_cohort=str(healthy))
    reason = augment.cannot_run(params)
    assert reason is not None and "has no 'group' column" in reason
    assert "compares two groups" in reason and "pools_cohort" in reason
    assert dispatch.cannot_run("augment", params) == reason
    assert dispatch.cannot_run("train", params) is None
    with caplog.at_level(logging.WARNING, logger="neurodiff.notebook"):
        prepare_cohorts(params, "augment")  # nothing preprocessed for a stage that cannot run
    assert "cannot run" in caplog.text
    assert not (tmp_path / "derived").exists()
    assert augment.load(params) is None
    with pytest.raises(ConfigError, match="has no 'group' column") as err:
        augment.run(params)  # `neurodiff augment` says it too
    assert err.value.parameter == "pools_cohort"
    notes = runner.preflight_notes(params, [Path("05_metrics.ipynb"), Path("06_augment.ipynb")])
    assert any(n.startswith("06_augment: the pools cohort") for n in notes)
    assert any("the generator is unconditional" in n for n in notes)
    no_pools = _resolve(healthy, tmp_path, pools_cohort="")
    assert "parameter 'pools_cohort' is empty" in augment.cannot_run(no_pools)


def test_chapter_6_conditions_on_the_pools_groups_on_a_healthy_only_cohort(healthy, tmp_path):
    """The cohort healthy-only, the pools with both groups: chapter 6 runs on its pools, and its
    run's key says its generators are conditioned on their groups."""
    pools = _table_only(tmp_path / "pools", ["control", "patient"])
    params = _resolve(healthy, tmp_path, pools_cohort=str(pools))
    assert params.groups == () and augment.cannot_run(params) is None
    assert augment.pools_params(params).groups == ("control", "patient")
    experiment = augment.experiment_params(params)
    assert experiment.groups == ("control", "patient")
    assert runs.stage_key(experiment, "augment") != runs.stage_key(params, "augment")
    both = _resolve(pools, tmp_path, pools_cohort=str(pools))
    assert augment.experiment_params(both) is both  # the demo's case: the same key as ever


# --- the whole study -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_whole_study_runs_on_a_healthy_only_cohort(healthy, tmp_path) -> None:
    """`neurodiff run --profile smoke -p cohort=FOLDER` on a healthy-only folder (the pools too):
    every chapter runs, chapter 6 explains why it has no live run, and the book builds."""
    import nbformat
    from conftest import _study_book

    project, report, index = _study_book("smoke", tmp_path, healthy, healthy)
    assert len(report.notebooks) == 6 and index.is_file()
    record = json.loads((project / "book" / "executed" / "run.json").read_text())
    assert record["params"]["groups"] == []
    executed = project / "book" / "executed"
    injected = next(
        c
        for c in nbformat.read(executed / "03_train.ipynb", as_version=4).cells
        if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert not re.search(r"^groups\b", injected.source, re.M)  # read from the cohort there
    chapter6 = (executed / "06_augment.ipynb").read_text()
    assert "No live run on these pools" in chapter6 and "has no 'group' column" in chapter6
    assert "live version cannot run" in (executed / "augment.md").read_text()
    (train_run,) = (project / "derived" / "smoke" / "train").iterdir()
    assert json.loads((train_run / runs.RECORD).read_text())["params"]["groups"] == []
