"""The teaching guide runs as written: every command of ``book/teaching.md`` is executed here, on
the ``smoke`` profile in place of ``course``, and each exercise's output is checked to have
changed the way the guide says (where a 6-step smoke model can show it) or at least to have
changed. The claims the guide makes about the noise schedules are checked on the real ones."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from neurodiff import artifacts, cli, config, runs

ROOT = Path(__file__).resolve().parents[1]


def _guide_commands() -> list[str]:
    spec = importlib.util.spec_from_file_location(
        "teaching_guide", ROOT / "benchmarks" / "teaching_guide.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.guide_commands()


SETUP = [
    "make install",
    ".venv/bin/neurodiff demo-data",
    ".venv/bin/neurodiff run --profile course",
    "make book",
    ".venv/bin/neurodiff runs --profile course",
]
EXERCISES = {
    "schedule": "-p schedule=linear_beta",
    "steps": "-p steps=10",
    "subjects": "-p train_subjects=8",
    "target": "-p prediction_type=v_prediction",
    "harmonisation": "-p register=none -p normalise=minmax",
    "augmentation": "-p augment_n='[1, 2]' -p primary_n=2 -p augment_draws='[3]'",
}


def test_the_guide_holds_exactly_the_commands_this_test_runs():
    commands = _guide_commands()
    assert commands[: len(SETUP)] == SETUP
    exercises = commands[len(SETUP) :]
    assert len(exercises) == len(EXERCISES)
    for command, change in zip(exercises, EXERCISES.values(), strict=True):
        assert command.startswith(".venv/bin/neurodiff run --profile course --only ")
        assert command.endswith(change), command


def test_what_the_guide_says_about_the_schedules():
    """Exercise 1's teacher notes, on the schedules neurodiff builds for T = 250: alpha-bar a third
    of the way is about 0.32 (linear) against 0.74 (cosine), half-way about 0.08 against 0.49, and
    both end at pure noise."""
    from neurodiff.model import build_scheduler

    def abar(kind):
        return build_scheduler(
            {"process": "ddpm", "timesteps": 250, "schedule": kind}
        ).alphas_cumprod.numpy()

    lin, cos = abar("linear_beta"), abar("cosine")
    assert abs(lin[250 // 3 - 1] - 0.32) < 0.01 and abs(cos[250 // 3 - 1] - 0.74) < 0.01
    assert abs(lin[250 // 2 - 1] - 0.08) < 0.01 and abs(cos[250 // 2 - 1] - 0.49) < 0.01
    assert lin[-1] < 1e-3 and cos[-1] < 1e-3


# --------------------------------------------------------------------------------------------
# Executing the guide (slow: every chapter command runs its notebooks through papermill)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(smoke_book, tiny_cohort, tiny_pools):
    """The guide's class, on the smoke book's project: ``run(command)`` executes one command of
    the guide with ``--profile smoke`` and that project's cohort and output folder."""
    project, report, _ = smoke_book
    extra = [  # in the project
        *("-p", f"cohort={tiny_cohort}", "-p", f"pools_cohort={tiny_pools}"),
        *("-p", "derived_dir=derived"),
    ]
    base = config.resolve(
        "smoke",
        {
            "cohort": str(tiny_cohort),
            "pools_cohort": str(tiny_pools),
            "derived_dir": "derived",
        },
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("NEURODIFF_ROOT", str(project))

    def run(command: str) -> int:
        argv = shlex.split(command.replace("--profile course", "--profile smoke"))[1:]
        return cli.main([*argv, *extra])

    yield project, report, base, run
    mp.undo()


def _runs(params, stage):
    found, _ = runs.list_runs(params.profile_dir())
    return {r.key: r for r in found if r.stage == stage}


def _preprocessed_cohorts(params):
    """The preprocessing runs of the cohort (chapter 6's pools cohort has its own)."""
    found = _runs(params, "preprocessed").values()
    return [r for r in found if r.params.get("cohort") == params.cohort]


def _metrics(params):
    return json.loads((artifacts.metrics_dir(params) / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_setting_up_a_class(course, tmp_path, capsys):
    project, report, base, run = course
    env = {**os.environ, "NEURODIFF_ROOT": str(project)}
    # make install: done already by `make test`, so nothing left to do
    proc = subprocess.run(["make", "-C", str(ROOT), "install"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # neurodiff demo-data (into a scratch folder: the smoke book uses the small test cohort)
    assert cli.main(["demo-data", "--out", str(tmp_path / "demo")]) == 0
    subjects = list((tmp_path / "demo").glob("sub-*"))
    assert len(subjects) == 48 + 24  # controls and patients
    # neurodiff run --profile course: the smoke book fixture ran the same, on smoke
    assert [n.name[:2] for n in report.notebooks] == ["01", "02", "03", "04", "05", "06"]
    # make book
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "book"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (project / "_build" / "html" / "book" / "teaching.html").is_file()
    # neurodiff runs --profile course: one run per stage so far and the pools' preprocessing,
    # all of these parameters
    capsys.readouterr()
    assert run(".venv/bin/neurodiff runs --profile course") == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"\b[0-9a-f]{12} \*", out)) == 5 + 1 and "complete" in out


@pytest.mark.slow
def test_exercise_1_the_noise_schedule(course, capsys):
    _, _, base, run = course
    before = _runs(base, "train")
    assert run(_guide_commands()[len(SETUP)]) == 0
    new = config.Params({**base.to_dict(), "schedule": "linear_beta"})
    after = _runs(base, "train")
    assert set(before) < set(after) and runs.stage_key(new, "train") in after
    assert len(_preprocessed_cohorts(base)) == 1  # the preprocessing is shared
    assert _metrics(new)["fid"]["value"] != _metrics(base)["fid"]["value"]
    assert run(".venv/bin/neurodiff runs --profile course") == 0
    out = capsys.readouterr().out
    assert "schedule=linear_beta" in out and "schedule=cosine" in out


@pytest.mark.slow
def test_exercise_2_sampler_steps_reuse_the_model(course):
    _, _, base, run = course
    trained = set(_runs(base, "train"))
    assert run(_guide_commands()[len(SETUP) + 1]) == 0
    new = config.Params({**base.to_dict(), "steps": 10})
    assert set(_runs(base, "train")) == trained  # no training
    gen = artifacts.provenance(artifacts.synthetic_dir(new))
    assert gen["Steps"] == 10 != artifacts.provenance(artifacts.synthetic_dir(base))["Steps"]
    assert _metrics(new)["mmd_rbf"]["value"] != _metrics(base)["mmd_rbf"]["value"]


@pytest.mark.slow
def test_exercise_3_fewer_training_subjects(course):
    project, _, base, run = course
    assert run(_guide_commands()[len(SETUP) + 2]) == 0
    new = config.Params({**base.to_dict(), "train_subjects": 8})
    record = runs.read_run(artifacts.train_dir(new))
    assert record.complete and record.params["train_subjects"] == 8
    assert artifacts.train_dir(new) != artifacts.train_dir(base)
    # the chapter shown in the book is now this run's
    shown = json.loads((project / "book" / "executed" / "run.json").read_text())
    assert shown["params"]["train_subjects"] == 8


@pytest.mark.slow
def test_exercise_4_prediction_target(course):
    _, _, base, run = course
    assert run(_guide_commands()[len(SETUP) + 3]) == 0
    new = config.Params({**base.to_dict(), "prediction_type": "v_prediction"})
    a = artifacts.read_loss_log(new)["loss"].to_numpy()
    b = artifacts.read_loss_log(base)["loss"].to_numpy()
    assert len(a) == len(b) and (a != b).any()  # another target: other loss values


@pytest.mark.slow
def test_exercise_5_harmonisation(course):
    _, _, base, run = course
    assert run(_guide_commands()[len(SETUP) + 4]) == 0
    new = config.Params({**base.to_dict(), "register": "none", "normalise": "minmax"})
    assert len(_preprocessed_cohorts(base)) == 2  # the whole chain is recomputed
    assert artifacts.load_manifest(new)["params"]["normalise"] == "minmax"
    after_new = pd.DataFrame(artifacts.load_histograms(new)["after"]).median(axis=1)
    after_base = pd.DataFrame(artifacts.load_histograms(base)["after"]).median(axis=1)
    assert not after_new.equals(after_base)
    assert runs.read_run(artifacts.metrics_dir(new)).complete


@pytest.mark.slow
def test_exercise_6_augmentation_reuses_chapter_3(course):
    _, _, base, run = course
    trained = set(_runs(base, "train"))
    sampled = set(_runs(base, "synthetic"))
    assert run(_guide_commands()[len(SETUP) + 5]) == 0
    new = config.Params(
        {**base.to_dict(), "augment_n": [1, 2], "primary_n": 2, "augment_draws": [3]}
    )
    assert set(_runs(base, "train")) == trained and set(_runs(base, "synthetic")) == sampled
    folder = artifacts.augment_dir(new)
    assert runs.read_run(folder).complete
    if list(base["augment_n"]) == [1, 2]:  # only the draws changed: the same run, continued
        assert folder == artifacts.augment_dir(base)
    table = pd.read_csv(folder / "table.tsv", sep="\t")
    assert sorted(set(table.loc[table["arm"] == "A", "n"])) == [1, 2]
    assert json.loads((folder / "augment.json").read_text())["draws"] == {"1": 3, "2": 3}
