"""The stage registry is the one place a stage is declared: every reader agrees with it, and no
stage folder or output format is spelled anywhere else in the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from neurodiff import cli, config, registry, runs
from neurodiff.config import ConfigError

PACKAGE = Path(__file__).resolve().parents[1] / "neurodiff"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

#: Functions whose argument names a stage (a literal there spells a stage outside the registry).
STAGE_ARGUMENT = {"run_dir", "record_run", "stage_key", "shaping_params", "stage_dir", "get"}


def _constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def spelled_outside(path: Path) -> list[str]:
    """Places in ``path`` that spell a stage's folder or output format by hand."""
    folders = {s.folder for s in registry.keyed_stages()}
    names = {s.name for s in registry.STAGES} | folders
    fmt = re.compile(r"neurodiff-(\w+)/\d+")
    tree = ast.parse(path.read_text())
    found = [
        f"{path.name}:{n.lineno} format {n.value!r}"
        for n in _constants(tree)
        if (m := fmt.search(n.value)) and m.group(1) in folders
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in STAGE_ARGUMENT:
                found += [
                    f"{path.name}:{a.lineno} {name}({a.value!r})"
                    for a in node.args[1:] + node.args[:1]
                    if isinstance(a, ast.Constant) and a.value in names
                ]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in folders:
                found.append(f"{path.name}:{right.lineno} path / {right.value!r}")
    return found


def test_the_check_finds_a_stage_spelled_by_hand(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "FORMAT = 'neurodiff-augment/2'\n"
        "run_dir(params, 'synthetic')\n"
        "folder = params.profile_dir() / 'train'\n"
        "ok = images['train']\n"
    )
    assert spelled_outside(bad) == [
        "bad.py:1 format 'neurodiff-augment/2'",
        "bad.py:2 run_dir('synthetic')",
        "bad.py:3 path / 'train'",
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "registry.py"],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_stage_is_spelled_outside_the_registry(path: Path) -> None:
    assert spelled_outside(path) == []


def test_every_stage_is_declared_completely() -> None:
    names = [s.name for s in registry.STAGES]
    assert len(set(names)) == len(names)
    chapters = [s.chapter for s in registry.STAGES]
    assert chapters == sorted(chapters) and len(set(chapters)) == len(chapters)
    for stage in registry.STAGES:
        assert (NOTEBOOKS / f"{stage.notebook}.ipynb").is_file(), stage.notebook
        assert (PACKAGE / Path(*stage.module.split(".")[1:])).with_suffix(".py").is_file() or (
            PACKAGE / Path(*stage.module.split(".")[1:]) / "__init__.py"
        ).is_file(), stage.module
        assert all(issubclass(c, config.StageConfig) for c in stage.configs)
        for upstream in stage.upstream:  # declared before it: keys are computed in order
            assert names.index(upstream) < names.index(stage.name)
        for name in stage.cohorts:
            assert name in config.parameter_specs(), name
    keyed = registry.keyed_stages()
    assert all(s.format.startswith(f"neurodiff-{s.folder}/") for s in keyed)
    assert runs.stage_names() == [s.folder for s in keyed]


def test_every_keyed_stage_has_a_command_that_imports_its_module() -> None:
    assert sorted(cli.stage_commands()) == sorted(s.name for s in registry.keyed_stages())
    source = (PACKAGE / "cli.py").read_text()
    tree = ast.parse(source)
    imported = {
        f"neurodiff.{a.name}"
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level == 1 and not n.module
        for a in n.names
    }
    assert {s.module for s in registry.keyed_stages()} <= imported


def test_lookups_by_name_folder_and_chapter() -> None:
    assert registry.get("sample") is registry.get("synthetic") is registry.SAMPLE
    assert registry.chapter_stage("05_metrics") is registry.METRICS
    assert [s.name for s in registry.needs("augment")] == ["preprocess", "train", "sample"]
    assert registry.needs("preprocess") == ()
    with pytest.raises(ConfigError, match="unknown stage 'sampling'; expected one of"):
        registry.get("sampling")
    with pytest.raises(ConfigError, match="unknown chapter '09'"):
        registry.chapter_stage("09")
    with pytest.raises(ValueError, match="writes no run folder"):
        runs.stage_key(config.resolve("smoke"), "explore")


def test_a_new_stage_is_one_declaration(monkeypatch) -> None:
    """A stage added to the registry gets a key, a folder and a place in the listing."""
    extra = registry.Stage(
        "extra",
        "extra",
        (config.MetricsConfig,),
        "neurodiff-extra/1",
        "neurodiff.metrics",
        "07",
        upstream=("sample",),
    )
    monkeypatch.setattr(registry, "STAGES", (*registry.STAGES, extra))
    params = config.resolve("smoke")
    keys = runs.chain_keys(params)
    assert set(keys) == {"preprocessed", "train", "synthetic", "metrics", "augment", "extra"}
    assert runs.run_dir(params, "extra").parent.name == "extra"
    assert "extra" in cli.stage_commands()
