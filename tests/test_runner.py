"""The papermill runner on small throw-away notebooks in a temporary project."""

from __future__ import annotations

import json

import nbformat
import pytest

from neurodiff import artifacts, record, registry, runner
from neurodiff.errors import ConfigError, DataError
from neurodiff.runner import NotebookError


def _notebook(path, body: str, params: str = "profile = 'demo'\nimage_size = 64\n") -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cells = []
    if params is not None:
        p = nbformat.v4.new_code_cell(params)
        p.metadata["tags"] = ["parameters"]
        cells.append(p)
    cells.append(nbformat.v4.new_code_cell(body))
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODIFF_ROOT", str(tmp_path))
    _notebook(
        tmp_path / "notebooks" / "01_first.ipynb",
        "import sys\nprint('image_size', image_size, 'profile', profile)\n"
        "print('progress', file=sys.stderr)\nopen('side_effect.txt', 'w').write('x')",
    )
    _notebook(tmp_path / "notebooks" / "02_second.ipynb", "print('lr', lr)")
    return tmp_path


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return nb, "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )


def test_runs_in_order_and_injects_the_profile(project):
    report = runner.run_notebooks("smoke", ["image_size=32"])
    assert [n.name for n in report.notebooks] == ["01_first", "02_second"]
    nb, text = _outputs(project / "book" / "executed" / "01_first.ipynb")
    assert "image_size 32 profile smoke" in text
    assert "progress" not in text  # stderr goes to the log, not the page
    assert "progress" in (project / "book" / "executed" / "logs" / "01_first.log").read_text()
    assert (project / "side_effect.txt").exists()  # cwd is the project root
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert any("injected-parameters" in t and "hide-input" in t for t in tags)
    assert any("parameters" in t and "remove-cell" in t for t in tags)
    assert not any("neurodiff-probe" in t for t in tags)
    record = json.loads((project / "book" / "executed" / "run.json").read_text())
    assert record["profile"] == "smoke" and record["params"]["image_size"] == 32
    assert set(record["notebooks"]) == {"01_first", "02_second"}
    assert record["notebooks"]["01_first"]["peak_rss_mb"] > 10
    assert "torch" in record["versions"]
    appendix = (project / "book" / "executed" / "reproducibility.md").read_text()
    assert "01_first" in appendix and record["params_hash"] in appendix


def test_only_runs_the_named_notebook(project):
    report = runner.run_notebooks("demo", only=["02"])
    assert [n.name for n in report.notebooks] == ["02_second"]
    assert not (project / "book" / "executed" / "01_first.ipynb").exists()


def test_bad_parameters_are_refused_before_any_notebook(project):
    with pytest.raises(ConfigError, match="unknown parameter 'imagesize'"):
        runner.run_notebooks("demo", ["imagesize=3"])
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        runner.run_notebooks("nope")
    with pytest.raises(ConfigError, match="--only '07' is not a notebook"):
        runner.run_notebooks("demo", only=["07"])
    assert not (project / "side_effect.txt").exists()


def test_a_failing_notebook_stops_the_run_and_is_kept(project):
    _notebook(project / "notebooks" / "01_first.ipynb", "x = 1\nraise RuntimeError('boom here')")
    with pytest.raises(NotebookError, match=r"notebook 01_first failed in cell .*boom here") as e:
        runner.run_notebooks("demo")
    assert e.value.path == project / "_build" / "failed" / "01_first.ipynb"
    assert e.value.path.exists()
    assert not (project / "book" / "executed" / "01_first.ipynb").exists()
    assert not (project / "book" / "executed" / "02_second.ipynb").exists()


def test_a_notebook_without_parameters_cell_is_refused(project):
    _notebook(project / "notebooks" / "02_second.ipynb", "print(1)", params=None)
    with pytest.raises(DataError, match="02_second.ipynb has no cell tagged 'parameters'"):
        runner.run_notebooks("demo")
    assert not (project / "side_effect.txt").exists()


def test_book_needs_the_executed_chapters(project):
    (project / "book").mkdir(exist_ok=True)
    (project / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/executed/01_first\n"
    )
    (project / "book" / "intro.md").write_text("# Intro\n")
    with pytest.raises(DataError, match="book/executed/01_first.*run `neurodiff run"):
        runner.build_book(root=project)


def _metrics_json(params_hash: str) -> dict:
    metric = {
        "label": "FID (features)",
        "value": 0.3,
        "ci": [0.2, 0.4],
        "baseline": 0.1,
        "baseline_ci": [0.05, 0.15],
        "better": "lower",
        "verdict": "outside",
    }
    return {
        "format": registry.METRICS.format,
        "params_hash": params_hash,
        "extractor": "random",
        "n_synthetic": 8,
        "n_real": 8,
        "n_train": 16,
        "bootstrap": {"n": 20},
        "metrics": {"fid": metric},
    }


def test_results_summary_flags_metrics_of_other_parameters(project):
    from neurodiff import config

    params = config.resolve("smoke")
    assert "No metrics have been computed" in record._results_markdown(params)
    path = artifacts.metrics_dir(params) / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_metrics_json(params.hash())))
    text = record._results_markdown(params)
    assert "| FID (features) | 0.3 [0.2, 0.4] | 0.1 [0.05, 0.15] | outside | lower |" in text
    assert "**0 of 1 metrics** are inside the real-vs-real range" in text
    assert "other parameters" not in text
    path.write_text(json.dumps(_metrics_json("0123456789ab")))
    assert "computed with other parameters** (hash `0123456789ab`)" in (
        record._results_markdown(params)
    )
