"""The chapters run wherever people open them, not only under ``neurodiff run``: with papermill's
own command line, from the ``notebooks/`` folder as working directory (JupyterLab, VS Code), and
each computes the inputs it is missing (Binder, Colab). Binder and Colab themselves are not
reachable from the tests; their configuration is checked instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from neurodiff import artifacts, config, runs

ROOT = Path(__file__).resolve().parents[1]
PAPERMILL = str(Path(sys.executable).with_name("papermill"))


def _papermill(notebook, out, cwd, *params):
    """``papermill NOTEBOOK OUT -p k v ...`` in a fresh process, without NEURODIFF_ROOT."""
    env = {k: v for k, v in os.environ.items() if k != "NEURODIFF_ROOT"}
    args = [a for k, v in params for a in ("-p", k, str(v))]
    proc = subprocess.run(
        [PAPERMILL, str(notebook), str(out), *args, "--cwd", str(cwd), "--no-progress-bar"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return nbformat.read(out, as_version=4)


@pytest.mark.slow
def test_papermill_cli_trains_with_the_given_parameter(tiny_cohort, tmp_path):
    """``papermill notebooks/03_train.ipynb out.ipynb -p lr 0.0001`` on the smoke profile: the
    chapter builds its missing input (preprocessing) and trains a model of lr = 0.0001."""
    derived = tmp_path / "derived"
    common = [("profile", "smoke"), ("cohort", tiny_cohort), ("derived_dir", derived)]
    _papermill(
        ROOT / "notebooks" / "03_train.ipynb", tmp_path / "out.ipynb", ROOT, *common, ("lr", 0.0001)
    )
    params = config.resolve(
        "smoke", {"cohort": str(tiny_cohort), "derived_dir": str(derived), "lr": 0.0001}
    )
    rec = runs.read_run(artifacts.train_dir(params))
    assert rec.complete and rec.params["lr"] == 0.0001
    assert rec.params["image_size"] == 16  # the smoke profile, not the cell's demo values
    assert runs.read_run(artifacts.preprocessed_dir(params)).complete
    found, _ = runs.list_runs(params.profile_dir())
    assert [r.stage for r in found] == ["preprocessed", "train"]


@pytest.mark.slow
def test_a_chapter_runs_from_the_notebooks_folder(tiny_cohort, tmp_path):
    """Working directory ``notebooks/`` (JupyterLab started there, VS Code): relative paths in
    the parameters still mean the project root."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "notebooks", project / "notebooks")
    (project / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (project / "neurodiff").mkdir()  # the project-root marker (the package itself is installed)
    shutil.copytree(tiny_cohort, project / "data" / "raw" / "mine")
    nb = _papermill(
        project / "notebooks" / "02_preprocess.ipynb",
        tmp_path / "out.ipynb",
        project / "notebooks",
        ("profile", "smoke"),
        ("cohort", "data/raw/mine"),
    )
    params = config.Params({**config.resolve("smoke").to_dict(), "cohort": "data/raw/mine"})
    keyed = project / "data" / "derived" / "smoke" / "preprocessed"
    keyed /= runs.stage_key(params, "preprocessed")
    assert (keyed / "manifest.json").is_file()
    assert not (project / "notebooks" / "data").exists()
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Traceback" not in text


def test_every_chapter_installs_neurodiff_where_it_is_missing_and_prepares_its_inputs():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "except ImportError" in first_code.source and "%pip install" in first_code.source
        assert "git+https://github.com/neurodiff/neurodiff" in first_code.source
        setup = "".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f'neurodiff.notebook.prepare(params, "{path.name[:2]}")' in setup, path.name


def test_binder_installs_the_package_and_builds_the_demo_cohort():
    binder = ROOT / ".binder"
    post = (binder / "postBuild").read_text()
    assert os.access(binder / "postBuild", os.X_OK)
    assert "pip install" in post and "-e ." in post and "neurodiff demo-data" in post
    reqs = (binder / "requirements.txt").read_text()
    assert "requirements.lock" in reqs


def test_prepare_builds_what_is_missing_and_nothing_else(tiny_cohort, tmp_path, caplog):
    from neurodiff import notebook, preprocess

    params = config.resolve("smoke", {"cohort": str(tiny_cohort), "derived_dir": str(tmp_path)})
    with caplog.at_level("INFO", logger="neurodiff.notebook"):
        notebook.prepare(params, "01_explore")
        assert not caplog.records
        notebook.prepare(params, "03")
    assert "needs the preprocessed outputs" in caplog.text
    assert preprocess.load_manifest(params)
    caplog.clear()
    with caplog.at_level("INFO", logger="neurodiff.notebook"):
        notebook.prepare(params, "03")
    assert not caplog.records
    with pytest.raises(config.ConfigError, match="unknown chapter '07'"):
        notebook.prepare(params, "07")
    missing = config.resolve("smoke", {"cohort": str(tmp_path / "nope")})
    with pytest.raises(config.ConfigError, match="parameter 'cohort'.*nope.*does not exist"):
        notebook.prepare(missing, "01")
