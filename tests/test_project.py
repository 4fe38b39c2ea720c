"""Promises the repository makes about itself: environment, notebooks, ignore rules, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = {r.replace(" ", "") for r in pip_section if not r.startswith("-e")}
    py_reqs = {r.replace(" ", "") for r in project["dependencies"]}
    assert env_reqs == py_reqs, (
        f"only in environment.yml: {env_reqs - py_reqs}; only in pyproject: {py_reqs - env_reqs}"
    )
    assert "python=3.11" in env["dependencies"]
    assert "conda-forge" in env["channels"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_requirement_within_its_range():
    """requirements.lock (make lock) is in step with pyproject.toml and environment.yml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    assert pins["torch"] == "2.13.0"  # the CPU wheel of this machine, no local label
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req.specifier}: "
            "run `make lock`"
        )
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9_.\-]+==[^ ]+", line), line


def test_jupyter_book_is_pinned_to_1x():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    jb = [r for r in project["dependencies"] if _name(r) == "jupyter-book"]
    assert jb == ["jupyter-book>=1.0.4,<2"]


def test_torchvision_is_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torchvision" not in {_name(r) for r in project["dependencies"]}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_clean(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has a count"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_are_known_with_demo_defaults(path):
    """Each parameters cell declares known names whose values are the demo defaults."""
    from neurodiff import config

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)  # noqa: S102 - our own notebook's literals
    declared = {k: v for k, v in namespace.items() if not k.startswith("__")}
    specs = config.parameter_specs()
    unknown = set(declared) - set(specs)
    assert not unknown, f"{path.name} declares unknown parameters {unknown}"
    demo = config.resolve("demo")
    for name, value in declared.items():
        assert config.Params({name: value})[name] == demo[name], f"{path.name}: {name}"


def test_generated_paths_are_ignored():
    for path in (
        ".venv/x",
        "_build/x",
        "book/executed/x.ipynb",
        "data/derived/x",
        "data/raw/demo/x.nii.gz",
        "data/raw/ixi/x",
    ):
        res = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert res.returncode == 0, f"{path} is not git-ignored"


def test_cli_lists_every_stage():
    out = subprocess.run(
        [sys.executable, "-m", "neurodiff", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in (
        "demo-data",
        "cohort",
        "fetch-ixi",
        "run",
        "book",
        "preprocess",
        "train",
        "sample",
        "metrics",
        "params",
    ):
        assert cmd in out


def test_cli_reports_bad_parameters_without_traceback():
    res = subprocess.run(
        [sys.executable, "-m", "neurodiff", "params", "-p", "batch_size=0"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "'batch_size' must be >= 1; got 0" in res.stderr
    assert "Traceback" not in res.stderr


def test_readme_opens_with_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make report" in head and "make test" in head


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_slurm_example_is_valid_bash_and_trains_the_paper_profile():
    import shlex
    import subprocess

    script = ROOT / "book" / "slurm" / "train_paper.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "--rdzv-backend=c10d" in text
    command = shlex.split(text[text.index("srun ") :].replace("\\\n", " "))
    assert command[command.index("-m") + 1 : command.index("-m") + 5] == [
        "neurodiff",
        "train",
        "--profile",
        "paper",
    ]
    assert "slurm/train_paper.sbatch" in (ROOT / "book" / "discussion.md").read_text()


def test_the_makefile_writes_the_default_cohorts_as_the_notebooks_would():
    """`make data` writes each simulated cohort where its parameter points by default, with the
    same `neurodiff demo-data` options as a chapter that finds it missing."""
    from neurodiff.config import parameter_specs
    from neurodiff.notebook import DEMO_OPTIONS

    makefile = (ROOT / "Makefile").read_text()
    for name, options in DEMO_OPTIONS.items():
        out = parameter_specs()[name].default
        command = " ".join(["neurodiff demo-data", *options, "--out", out])
        assert command in makefile, command
