"""Run folders keyed by the parameters that made them; listing and pruning them."""

from __future__ import annotations

import json

import pytest

from neurodiff import artifacts, cli, config, registry, runs
from neurodiff.errors import DataError


def _params(tmp_path, **overrides):
    return config.resolve("smoke", {"derived_dir": str(tmp_path), **overrides})


def test_a_key_changes_with_its_own_and_upstream_parameters_only(tmp_path):
    base = runs.chain_keys(_params(tmp_path))
    assert all(len(k) == 12 for k in base.values()) and len(set(base.values())) == 5
    # a training parameter: training and everything after it, not preprocessing
    lr = runs.chain_keys(_params(tmp_path, lr=3e-4))
    assert lr["preprocessed"] == base["preprocessed"]
    assert all(lr[s] != base[s] for s in ("train", "synthetic", "metrics", "augment"))
    # a preprocessing parameter changes every key
    norm = runs.chain_keys(_params(tmp_path, normalise="minmax"))
    assert all(norm[s] != base[s] for s in base)
    # a sampler parameter: sampling, metrics and chapter 6 (its generators sample the same way)
    steps = runs.chain_keys(_params(tmp_path, steps=10))
    assert [steps[s] == base[s] for s in base] == [True, True, False, False, False]
    # an experiment parameter: the augmentation experiment only
    boot = runs.chain_keys(_params(tmp_path, augment_bootstrap=500))
    assert [boot[s] == base[s] for s in base] == [True, True, True, True, False]
    # the number of draws is not in the key: more draws continue the same run
    assert runs.chain_keys(_params(tmp_path, augment_draws=[5])) == base


def test_where_and_how_do_not_enter_a_key(tmp_path):
    base = _params(tmp_path)
    for change in (
        {"derived_dir": str(tmp_path / "other")},
        {"profile": "renamed"},
        {"resume": False},
        {"checkpoint_every": 2},
        {"keep_checkpoints": 5},
        {"num_workers": 1},
        {"sampler_table_samples": 3},
    ):
        assert runs.chain_keys(_params(tmp_path, **change)) == runs.chain_keys(base), change
    assert _params(tmp_path / "x").hash() == base.hash()
    assert _params(tmp_path, lr=3e-4).hash() != base.hash()


def test_every_shaping_parameter_is_recorded(tmp_path):
    params = _params(tmp_path, lr=3e-4)
    path = runs.record_run(params, "train", complete=False)
    rec = json.loads(path.read_text())
    assert rec["key"] == runs.stage_key(params, "train") == path.parent.name
    assert rec["upstream"] == [
        {"stage": "preprocessed", "key": runs.stage_key(params, "preprocessed")}
    ]
    assert rec["params"]["lr"] == 3e-4 and rec["params"]["normalise"] == "percentile"
    assert "derived_dir" not in rec["params"] and "resume" not in rec["params"]
    assert rec["complete"] is False


def test_a_stage_is_keyed_by_the_stages_it_reads_only(tmp_path):
    """Augment reads the synthetic cohort (and through it the preprocessing and the model), not
    the metrics: a metrics parameter leaves its key alone, a sampling parameter does not."""
    base = runs.chain_keys(_params(tmp_path))
    other_metrics = runs.chain_keys(_params(tmp_path, nn_k=3))
    assert other_metrics["metrics"] != base["metrics"]
    assert other_metrics["augment"] == base["augment"]
    assert runs.chain_keys(_params(tmp_path, n_samples=40))["augment"] != base["augment"]


def test_run_json_lists_the_outputs_and_a_late_output_is_added(tmp_path):
    params = _params(tmp_path)
    folder = artifacts.metrics_dir(params)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"format": registry.METRICS.format}))
    (folder / "stray.txt").write_text("not an output")
    runs.record_run(params, "metrics")
    assert runs.read_run(folder).outputs == ("metrics.json",)
    artifacts.write_by_group(params, {"params_hash": params.hash(), "rows": []})
    assert runs.read_run(folder).outputs == ("by_group.json", "metrics.json")
    assert artifacts.load_by_group(params)["rows"] == []


def test_a_record_of_the_older_single_upstream_form_is_read(tmp_path):
    folder = tmp_path / "train" / "0123456789ab"
    folder.mkdir(parents=True)
    record = {"upstream": {"stage": "preprocessed", "key": "aaaaaaaaaaaa"}, "complete": True}
    (folder / "run.json").write_text(json.dumps(record))
    assert runs.read_run(folder).upstream == ("preprocessed/aaaaaaaaaaaa",)


def _fake_chain(params):
    for stage in runs.stage_names():
        runs.record_run(params, stage)
    metrics = {
        "format": registry.METRICS.format,
        "metrics": {"fid": {"value": 2.0, "baseline": 0.5}},
    }
    (artifacts.metrics_dir(params) / "metrics.json").write_text(json.dumps(metrics))


def test_runs_table_lists_differing_parameters_and_metrics(tmp_path):
    a, b = _params(tmp_path), _params(tmp_path, schedule="linear_beta")
    _fake_chain(a)
    _fake_chain(b)
    table = cli.runs_table(a.profile_dir(), current=b)
    assert table["stage"].tolist().count("preprocessed") == 1
    train = table[table["stage"] == "train"]
    assert sorted(train["differs"]) == ["schedule=cosine", "schedule=linear_beta"]
    assert table[table["run"].str.endswith("*")]["stage"].tolist() == runs.stage_names()
    assert set(table[table["stage"] == "metrics"]["fid"]) == {"2 (0.5)"}


def test_clean_prunes_safely_by_default_and_more_on_request(tmp_path, capsys):
    a, b = _params(tmp_path), _params(tmp_path, lr=3e-4)
    _fake_chain(a)
    _fake_chain(b)
    stray = a.profile_dir() / "train" / "checkpoints"  # an older layout
    stray.mkdir()
    # by default: only the strays (and orphans, none yet)
    assert runs.remove_runs(a.profile_dir(), dry_run=True) == [stray]
    # --keep-current: every run but the chain of the given parameters
    dry = runs.remove_runs(a.profile_dir(), keep=a, dry_run=True)
    assert stray in dry and artifacts.train_dir(b) in dry and stray.exists()
    assert artifacts.train_dir(a) not in dry and artifacts.preprocessed_dir(b) not in dry
    # --run: b's training run and what was made from it, not its upstream (chapter 6 trains its
    # own generators: it reads the preprocessing, not the training run)
    gone = runs.remove_runs(a.profile_dir(), keys=[runs.stage_key(b, "train")])
    assert sorted(p.parent.name for p in gone) == [
        "metrics",
        "synthetic",
        "train",
        "train",
    ]
    assert stray in gone  # the strays go with every clean
    assert artifacts.preprocessed_dir(b).exists() and artifacts.metrics_dir(a).exists()
    with pytest.raises(ValueError, match="no run 'abcdef' under"):
        runs.remove_runs(a.profile_dir(), keys=["abcdef"])
    # orphans: a run whose upstream folder was deleted by hand goes with the default prune
    c = _params(tmp_path, steps=3)
    _fake_chain(c)
    import shutil

    shutil.rmtree(artifacts.train_dir(a))
    orphans = runs.remove_runs(a.profile_dir(), dry_run=True)
    assert set(orphans) == {  # chapter 6 is made from the preprocessing: not an orphan
        artifacts.synthetic_dir(a),
        artifacts.metrics_dir(a),
        artifacts.synthetic_dir(c),
        artifacts.metrics_dir(c),
    }
    # --incomplete: an interrupted training and what was made from it
    d = _params(tmp_path, lr=1e-4)
    _fake_chain(d)
    runs.record_run(d, "train", complete=False)
    dry = runs.remove_runs(a.profile_dir(), incomplete=True, dry_run=True)
    assert artifacts.train_dir(d) in dry and artifacts.metrics_dir(d) in dry
    assert artifacts.preprocessed_dir(d) not in dry
    # the command line
    argv = ["--profile", "smoke", "-p", f"derived_dir={tmp_path}"]
    assert cli.main(["clean", *argv, "--all"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert runs.list_runs(a.profile_dir()) == ([], [])
    assert cli.main(["runs", *argv]) == 0
    assert "no runs of profile 'smoke'" in capsys.readouterr().out
    assert cli.main(["clean", *argv, "--run", "abcdef"]) == 2


def test_a_metrics_file_of_another_format_is_refused_and_listed_without_metrics(tmp_path):
    params = _params(tmp_path)
    _fake_chain(params)
    path = artifacts.metrics_dir(params) / "metrics.json"
    path.write_text(json.dumps({"format": "neurodiff-metrics/0", "metrics": {}}))
    with pytest.raises(DataError, match="holds format 'neurodiff-metrics/0', expected"):
        artifacts.load_metrics_json(params)
    table = cli.runs_table(params.profile_dir(), current=params)
    assert table.loc[table["stage"] == "metrics", "fid"].tolist() == [""]


def test_clean_keeps_the_pools_preprocessing_of_the_current_parameters(tmp_path):
    params = _params(tmp_path, pools_cohort=str(tmp_path / "new"))
    _fake_chain(params)
    oracle = params.for_cohort("pools_cohort")
    runs.record_run(oracle, "preprocessed")
    kept = runs.current_labels(params)
    assert f"preprocessed/{runs.stage_key(oracle, 'preprocessed')}" in kept
    doomed = runs.remove_runs(params.profile_dir(), keep=params)
    assert doomed == []
    table = cli.runs_table(params.profile_dir(), current=params)
    assert table["run"].str.endswith(" *").all()
    assert table.loc[table["stage"] == "train", "from"].tolist() == [
        f"preprocessed/{runs.stage_key(params, 'preprocessed')}"
    ]


def test_clean_run_takes_a_stage_name_or_folder(tmp_path):
    params = _params(tmp_path)
    _fake_chain(params)
    key = runs.stage_key(params, "synthetic")
    by_name = runs.remove_runs(params.profile_dir(), keys=[f"sample/{key}"], dry_run=True)
    by_folder = runs.remove_runs(params.profile_dir(), keys=[f"synthetic/{key}"], dry_run=True)
    assert by_name == by_folder and {p.parent.name for p in by_name} == {
        "synthetic",
        "metrics",
    }
