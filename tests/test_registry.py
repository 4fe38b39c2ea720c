"""The stage registry is the one place a stage is declared: every reader agrees with it, and no
stage folder or output format is spelled anywhere else in the package."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from neurodiff import cli, config, dispatch, registry, runs
from neurodiff.config import ConfigError

PACKAGE = Path(__file__).resolve().parents[1] / "neurodiff"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

#: Functions whose argument names a stage (a literal there spells a stage outside the registry).
STAGE_ARGUMENT = {"run_dir", "record_run", "stage_key", "shaping_params", "stage_dir", "get"}


def _constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def spelled_outside(path: Path, source: str | None = None) -> list[str]:
    """Places in ``path`` (or in ``source``, code read from ``path``) that spell a stage's folder
    or output format by hand: a format string; a stage name or folder given to a function that
    takes a stage (by position or keyword) or to ``Path(...)``/``.joinpath(...)``; a folder
    joined with ``/``; a path string or f-string part with ``/<folder>/`` in it; a comparison of
    ``.stage`` with a stage name."""
    folders = {s.folder for s in registry.keyed_stages()}
    names = {s.name for s in registry.STAGES} | folders
    fmt = re.compile(r"neurodiff-(\w+)/\d+")
    inside = re.compile(r"(^|/)(" + "|".join(sorted(folders)) + r")(/|$)")
    tree = ast.parse(source if source is not None else path.read_text())
    found = []
    for n in _constants(tree):
        m = fmt.search(n.value)
        if m and m.group(1) in folders:
            found.append(f"{path.name}:{n.lineno} format {n.value!r}")
        elif "/" in n.value and " " not in n.value and inside.search(n.value):
            found.append(f"{path.name}:{n.lineno} path {n.value!r}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            args = list(node.args) + [k.value for k in node.keywords]
            if name in STAGE_ARGUMENT | {"Path", "joinpath"}:
                found += [
                    f"{path.name}:{a.lineno} {name}({a.value!r})"
                    for a in args
                    if isinstance(a, ast.Constant) and a.value in names
                ]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in folders:
                found.append(f"{path.name}:{right.lineno} path / {right.value!r}")
        elif isinstance(node, ast.Compare) and getattr(node.left, "attr", "") == "stage":
            found += [
                f"{path.name}:{c.lineno} .stage == {c.value!r}"
                for c in node.comparators
                if isinstance(c, ast.Constant) and c.value in names
            ]
    return found


def test_the_check_finds_a_stage_spelled_by_hand(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "FORMAT = 'neurodiff-augment/2'\n"
        "run_dir(params, 'synthetic')\n"
        "folder = params.profile_dir() / 'train'\n"
        "ok = images['train']\n"
        "run_dir(params, stage='metrics')\n"
        "root.joinpath('augment')\n"
        "p = f'{root}/preprocessed/{key}'\n"
        "q = Path('data/derived/demo/synthetic')\n"
        "same = run.stage == 'metrics'\n"
        "text = 'the train split of the metrics'\n"
    )
    assert spelled_outside(bad) == [
        "bad.py:1 format 'neurodiff-augment/2'",
        "bad.py:7 path '/preprocessed/'",
        "bad.py:8 path 'data/derived/demo/synthetic'",
        "bad.py:2 run_dir('synthetic')",
        "bad.py:3 path / 'train'",
        "bad.py:5 run_dir('metrics')",
        "bad.py:6 joinpath('augment')",
        "bad.py:9 .stage == 'metrics'",
    ]


def _code_cells(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    lines = [line for c in code for line in c.splitlines()]
    # IPython magics (``%pip``) are not Python: each becomes ``pass`` at its indentation
    return "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass"
        if line.lstrip().startswith(("%", "!"))
        else line
        for line in lines
    )


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "registry.py"]
    + sorted(BENCHMARKS.glob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE.parent)),
)
def test_no_stage_is_spelled_outside_the_registry(path: Path) -> None:
    assert spelled_outside(path) == []


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_notebook_spells_a_stage_folder(notebook: Path) -> None:
    assert spelled_outside(notebook, _code_cells(notebook)) == []


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


def test_every_stage_is_dispatched_and_every_keyed_stage_has_a_command() -> None:
    assert sorted(cli.stage_commands()) == sorted(s.name for s in registry.keyed_stages())
    assert set(dispatch.MODULES) == {s.module for s in registry.STAGES}
    for stage in registry.keyed_stages():
        assert callable(dispatch.module_of(stage).run), stage.name


def test_lookups_by_name_folder_and_chapter() -> None:
    assert registry.get("sample") is registry.get("synthetic") is registry.SAMPLE
    assert registry.chapter_stage("05_metrics") is registry.METRICS
    assert registry.needs("augment") == ()  # its own pools and generators
    assert [s.name for s in registry.needs("metrics")] == ["preprocess", "train", "sample"]
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


def test_the_documented_layout_names_registry_folders() -> None:
    """Wherever the prose shows a run folder (``<derived_dir>/<profile>/<folder>/<key>/``), the
    folder is one the registry declares and the key is shown."""
    root = PACKAGE.parent
    pages = [root / "README.md", root / "CONTRIBUTING.md", *sorted(NOTEBOOKS.glob("*.ipynb"))]
    pages += sorted((root / "book").glob("*.md"))
    folders = {s.folder for s in registry.keyed_stages()}
    pattern = re.compile(r"<derived(?:_dir)?>/<profile>/([\w<>]+)/(\S*)")
    shown = [
        (p.name, m.group(1), m.group(2)) for p in pages for m in pattern.finditer(p.read_text())
    ]
    assert shown, "no run folder is documented"
    assert [s for s in shown if s[1] not in folders | {"<stage>", "<folder>"}] == []
    assert [s for s in shown if not s[2].startswith("<key>")] == []
