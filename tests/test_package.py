"""Installable as a package: ``python -m build`` makes a wheel and an sdist that install in a
fresh environment and run ``neurodiff --help`` and ``neurodiff demo-data`` there, offline.

The fresh environment is a new virtual environment that holds neurodiff alone; its
dependencies (torch and the rest, far too large to install again in a test) come from this
environment's site-packages through a path file, whose own path files (such as the editable
install of this checkout) are not read, so the installed package is the only neurodiff there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = pytest.mark.slow


def _run(*cmd: str | Path, cwd: Path, env: dict | None = None) -> str:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, f"{' '.join(map(str, cmd))}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The wheel and sdist, built offline (no build isolation: setuptools, which torch requires,
    is already installed) from a copy of what the package is made of."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(
        ROOT / "neurodiff", src / "neurodiff", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = src / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ".", cwd=src)
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A new virtual environment whose dependencies are this one's (see the module docstring)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    # no pip nor setuptools of its own (a new 3.11 environment's setuptools is too old for the
    # licence field): this environment's pip installs into it, and builds the sdist with the
    # setuptools it finds there, ours
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent)
    python = venv / "bin" / "python"
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv)
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site.strip()) / "neurodiff-test-dependencies.pth").write_text("\n".join(sorted(paths)))
    return venv


def _env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEURODIFF_ROOT")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _install(venv: Path, target: Path) -> None:
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        "--force-reinstall",
        target,
        cwd=venv,
        env=_env(venv),
    )


def test_build_makes_a_wheel_and_an_sdist_with_the_profiles(dist):
    import tarfile
    import zipfile

    wheel = dist / f"neurodiff-{VERSION}-py3-none-any.whl"
    sdist = dist / f"neurodiff-{VERSION}.tar.gz"
    assert wheel.is_file() and sdist.is_file()
    profiles = {p.name for p in (ROOT / "neurodiff" / "profiles").glob("*.yaml")}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {f"neurodiff/profiles/{p}" for p in profiles} <= names
    assert "neurodiff/weights.py" in names and "neurodiff/sample/generator.py" in names
    with tarfile.open(sdist) as tf:
        members = set(tf.getnames())
    assert {f"neurodiff-{VERSION}/neurodiff/profiles/{p}" for p in profiles} <= members
    assert f"neurodiff-{VERSION}/LICENSE" in members


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_package_installs_and_runs_in_a_fresh_environment(kind, dist, fresh, tmp_path):
    target = dist / (
        f"neurodiff-{VERSION}-py3-none-any.whl"
        if kind == "wheel"
        else f"neurodiff-{VERSION}.tar.gz"
    )
    _install(fresh, target)
    env = _env(fresh)
    where = _run(
        fresh / "bin" / "python",
        "-c",
        "import neurodiff; print(neurodiff.__file__)",
        cwd=tmp_path,
        env=env,
    )
    assert Path(where.strip()).is_relative_to(fresh), where  # the installed copy, not the clone
    neurodiff = fresh / "bin" / "neurodiff"
    assert "demo-data" in _run(neurodiff, "--help", cwd=tmp_path, env=env)
    assert f"neurodiff {VERSION}" in _run(neurodiff, "--version", cwd=tmp_path, env=env)
    assert '"profile": "smoke"' in _run(
        neurodiff, "params", "--profile", "smoke", "--json", cwd=tmp_path, env=env
    )
    out = tmp_path / "demo"
    _run(
        neurodiff,
        "demo-data",
        "--subjects",
        "1",
        "--patients",
        "0",
        "--sites",
        "1",
        "--resolution",
        "2",
        "--out",
        out,
        cwd=tmp_path,
        env=env,
    )
    assert len(list(out.glob("sub-*/anat/sub-*_T1w.nii.gz"))) == 1
    assert (out / "participants.tsv").is_file()
