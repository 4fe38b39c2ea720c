"""Each chapter reads as a study, not as plumbing: no code cell the book shows only imports,
configures logging or display, builds the parameters or glues values for the prose.

Such cells carry ``remove-input`` (the code leaves the page, its output stays: a printed line,
a table; the cell still runs, so what it glues reaches the prose). The cells that compute the
chapter's steps stay visible. A cell counts as shown unless a tag removes it or folds it behind
a toggle (``remove-input``, ``remove-cell``, ``hide-input``, ``hide-cell``).

The ``parameters`` cell is not set-up: it holds the reader's knobs, the values the chapter is
about, and stays on the page of a notebook opened on its own. In the book, ``neurodiff run``
removes it and shows the injected values folded (``hide-input``) instead.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Tags that keep a cell's code off the page or behind a toggle.
HIDDEN = {
    f"{verb}{sep}{part}"
    for verb in ("remove", "hide")
    for sep in "-_"
    for part in ("input", "cell")
}
#: Calls that only set the notebook up or hand a value to the prose (dotted as written; a call
#: inside a chain is written with ``()``).
SETUP_CALLS = {
    "logging.basicConfig",
    "logging.getLogger().setLevel",
    "warnings.filterwarnings",
    "warnings.simplefilter",
    "pd.set_option",
    "pandas.set_option",
    "glue",
    "myst_nb.glue",
    "neurodiff.notebook.prepare",
    "notebook.prepare",
}
#: Calls whose value, assigned, is set-up: the parameters and one stage's view of them.
SETUP_VALUES = {
    "neurodiff.config.from_namespace",
    "config.from_namespace",
    "from_namespace",
    "params.stage",
    "neurodiff.notebook.prepare",
}
_MAGIC = re.compile(r"^(\s*)(%|!)")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}()"
    return "?"


def _kind(node: ast.stmt) -> bool | None:
    """True for a set-up statement, False for a step of the chapter, None for one that is
    neither (``pass``, a bare name or constant shown as the cell's value)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return True
    if isinstance(node, ast.Pass):
        return None
    if isinstance(node, ast.Expr):
        if isinstance(node.value, ast.Call):
            return _dotted(node.value.func) in SETUP_CALLS
        return None if isinstance(node.value, ast.Name | ast.Constant) else False
    if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
        return _dotted(node.value.func) in SETUP_VALUES
    if isinstance(node, ast.For | ast.If | ast.Try):
        # a loop or branch is set-up when its bodies are (what it iterates or tests is not shown)
        body = [*node.body, *node.orelse]
        if isinstance(node, ast.Try):
            body += [s for h in node.handlers for s in h.body] + node.finalbody
        return _combine(_kind(s) for s in body)
    return False


def _combine(kinds) -> bool | None:
    kinds = list(kinds)
    if False in kinds:
        return False
    return True if True in kinds else None


def only_setup(source: str) -> bool:
    """Whether a code cell's ``source`` only sets up or glues: imports, logging and display
    options, IPython magics (``%matplotlib inline``, ``%pip``), the parameters built from the
    namespace (``neurodiff.config.from_namespace``, ``params.stage``), the chapter's inputs
    prepared (``neurodiff.notebook.prepare``) and ``glue`` calls, also in loops and branches
    that do nothing else; a bare name as the cell's value shows it and changes nothing.

    A cell with anything else -- a stage run, a table, a figure, a print -- is a step."""
    lines, magic = [], False
    for line in source.splitlines():
        match = _MAGIC.match(line)
        magic |= bool(match)
        lines.append(f"{match.group(1)}pass" if match else line)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:  # a cell magic's body in another language: not ours to judge
        return False
    kind = _combine(_kind(s) for s in tree.body)
    return kind is True or (kind is None and magic)


def shown_code_cells(nb: dict) -> list[tuple[int, str]]:
    """``(index, source)`` of the code cells the book shows with their code: no tag in
    :data:`HIDDEN`, and not the ``parameters`` cell (see the module's docstring)."""
    shown = []
    for i, cell in enumerate(nb["cells"]):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & HIDDEN or "parameters" in tags:
            continue
        source = cell["source"]
        shown.append((i, source if isinstance(source, str) else "".join(source)))
    return shown


def _plumbing(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [
        f"{path.name} cell {i}: {source.strip().splitlines()[0]!r}"
        for i, source in shown_code_cells(nb)
        if only_setup(source)
    ]


# --------------------------------------------------------------------------------------------
# The classifier itself
# --------------------------------------------------------------------------------------------

SETUP = {
    "imports and logging": (
        "%matplotlib inline\nimport logging\n\nimport pandas as pd\nfrom myst_nb import glue\n\n"
        'logging.basicConfig(level=logging.INFO, format="%(message)s")\n'
        'logging.getLogger("neurodiff.sampling").setLevel(logging.WARNING)\n'
        'pd.set_option("display.max_rows", 200)\n'
    ),
    "parameters and inputs": (
        "import neurodiff.config\nimport neurodiff.notebook\n\n"
        "params = neurodiff.config.from_namespace(globals())\n"
        'neurodiff.notebook.prepare(params, "03")  # computes what is missing\n'
        "mcfg = params.stage(ModelConfig)\nparams\n"
    ),
    "glue only": (
        'glue("qc_min", f"{qc.ncc.min():.2f}", display=False)\n'
        "for name, value in bench.glue.items():\n    glue(name, value, display=False)\n"
        'if study is None:\n    glue("best", "-", display=False)\n'
        'else:\n    glue("best", study["best"], display=False)\n'
    ),
    "installing where missing": (
        "try:\n    import neurodiff\nexcept ImportError:\n"
        '    %pip install --quiet "neurodiff @ git+https://github.com/neurodiff/neurodiff"\n'
    ),
    "a magic alone": "%matplotlib inline\n",
}
STEPS = {
    "a stage run after imports": "from neurodiff import train\n\nresult = train.run(params)\n",
    "glue and a table": (
        "summary = model.summary_table(params)\n"
        'glue("n", summary.loc["parameters"], display=False)\n'
        "summary\n"
    ),
    "a print": 'import neurodiff\n\nprint(f"profile {params.profile}")\n',
    "a figure in a glue loop": (
        'for name in ("a", "b"):\n    glue(name, 1, display=False)\n    plots.plot_thing(name)\n'
    ),
    "a table alone": 'table.drop(columns="path")\n',
    "an attribute shown": "result.per_site\n",
    "a name alone": "params\n",
    "a derived value": "import numpy as np\n\nT = params.timesteps\n",
}


@pytest.mark.parametrize("name", SETUP)
def test_set_up_and_glue_cells_are_told_from_steps(name):
    assert only_setup(SETUP[name])


@pytest.mark.parametrize("name", STEPS)
def test_a_step_is_not_set_up(name):
    assert not only_setup(STEPS[name])


def test_the_check_finds_a_shown_set_up_cell():
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "seed = 0\n"},
            {"cell_type": "code", "metadata": {}, "source": SETUP["parameters and inputs"]},
            {"cell_type": "markdown", "metadata": {}, "source": "import nothing"},
            {"cell_type": "code", "metadata": {"tags": ["remove-input"]}, "source": "import x"},
            {"cell_type": "code", "metadata": {}, "source": STEPS["a stage run after imports"]},
        ]
    }
    shown = shown_code_cells(nb)
    assert [i for i, _ in shown] == [1, 4]
    assert [i for i, source in shown if only_setup(source)] == [1]


# --------------------------------------------------------------------------------------------
# The notebooks and the built book
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_chapter_shows_a_cell_that_only_sets_up_or_glues(path):
    assert _plumbing(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_set_up_cells_leave_the_page_without_a_toggle(path):
    """A set-up cell is removed (``remove-input``, or ``remove-cell`` for the installing cell),
    not folded: a toggle is plumbing on the page too. The chapter still shows its steps."""
    nb = json.loads(path.read_text())
    removed = {"remove-input", "remove_input", "remove-cell", "remove_cell"}
    for i, cell in enumerate(nb["cells"]):
        tags = set(cell["metadata"].get("tags", []))
        if cell["cell_type"] == "code" and only_setup("".join(cell["source"])):
            assert tags & removed, f"{path.name} cell {i} sets up but is not removed: {tags}"
    assert shown_code_cells(nb), f"{path.name} shows no step"


@pytest.mark.slow
def test_no_chapter_of_the_built_book_shows_a_cell_that_only_sets_up_or_glues(smoke_book):
    """The executed chapters the book is built from (tags as ``neurodiff run`` leaves them)."""
    project, _, _ = smoke_book
    executed = sorted((project / "book" / "executed").glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in executed] == [p.stem for p in NOTEBOOKS]
    assert [line for path in executed for line in _plumbing(path)] == []


_GLUE_ROLE = re.compile(r"\{glue(?::\w*)?\}`([^`]+)`")
_GLUE_DIRECTIVE = re.compile(r"^(?:```|:::)\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)


@pytest.mark.slow
def test_every_value_the_prose_reads_is_glued(smoke_book):
    """Removing set-up code keeps the cells running: each ``{glue:text}`` key of a chapter's
    prose is among the values its executed cells glued."""
    project, _, _ = smoke_book
    for path in sorted((project / "book" / "executed").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        prose = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        read = {k.split(":")[0] for k in _GLUE_ROLE.findall(prose)}
        read |= set(_GLUE_DIRECTIVE.findall(prose))
        glued = {
            out["metadata"]["scrapbook"]["name"]
            for c in nb["cells"]
            if c["cell_type"] == "code"
            for out in c.get("outputs", [])
            if "scrapbook" in out.get("metadata", {})
        }
        assert read <= glued, f"{path.name}: {sorted(read - glued)} read but not glued"
