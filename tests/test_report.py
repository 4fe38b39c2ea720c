"""The whole study with the smoke profile: every notebook through papermill, then a strict book
build (Sphinx warnings are errors, nitpicky references), in a copy of the project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_notebook_ran(smoke_book):
    project, report, _ = smoke_book
    names = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert [n.name for n in report.notebooks] == names
    for name in names:
        assert (project / "book" / "executed" / f"{name}.ipynb").is_file()
    assert (project / "book" / "executed" / "run.json").is_file()


@pytest.mark.slow
def test_book_pages_exist_with_their_figures(smoke_book):
    project, _, index = smoke_book
    assert index.is_file()
    html_dir = project / "_build" / "html"
    pages = list((html_dir / "book").rglob("*.html"))
    assert (html_dir / "book" / "intro.html") in pages
    n_images = 0
    for page in pages:
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, page.name
        # paths are shown relative to the project, not as folders of the build machine
        assert str(project) not in text, f"{page.name} shows an absolute path of the build"
        for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
            if src.startswith(("http", "data:")):
                continue
            assert (page.parent / src).resolve().is_file(), f"{page.name}: missing {src}"
            n_images += 1
    assert n_images >= 5  # every chapter draws figures
    for page in (html_dir / "book" / "executed").glob("0*.html"):
        assert "<figcaption>" in page.read_text(), f"{page.name} has no captioned figure"


@pytest.mark.slow
def test_executed_chapters_show_their_parameters_collapsed(smoke_book):
    import nbformat

    project, _, _ = smoke_book
    for path in (project / "book" / "executed").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and "hide-input" in injected[0].metadata["tags"], path.name
        assert 'profile = "smoke"' in injected[0].source or "profile = 'smoke'" in (
            injected[0].source
        )


@pytest.mark.slow
def test_reference_labels_are_author_year_like_the_citations(smoke_book):
    _, _, index = smoke_book
    html = (index.parent / "book" / "references.html").read_text()
    labels = re.findall(r'<span class="label"><span class="fn-bracket">\[</span>(.*?)<', html)
    assert len(labels) >= 5
    for label in labels:
        assert re.fullmatch(r"[A-Z].*, (\d{4}[a-z]?|n\.d\.)", label), label
        assert not re.search(r"[\\{}]|&quot;", label), f"LaTeX left in {label!r}"
    chapter = (index.parent / "book" / "executed" / "03_train.html").read_text()
    assert "Ho <em>et al.</em>, 2020" in chapter


#: The demo's recipe (rectified flow, Euler sampling) at smoke size; smoke itself keeps the
#: authors' DDPM recipe for the sampler and teaching tests.
DEMO_RECIPE = {
    "process": "rflow",
    "loss": "l2",
    "timestep_sampling": "logit_normal",
    "sampler": "euler",
    "ema_warmup": True,
}


@pytest.mark.slow
def test_the_demo_recipe_runs_through_training_sampling_and_metrics(
    smoke_book, tiny_cohort, monkeypatch
):
    """Chapters 3-5 with the demo's rectified-flow recipe: the flow figures (forward process,
    Euler and Heun reverse processes, the Euler/Heun sampler table) and the metrics run."""
    import json

    from neurodiff import runner

    project, _, _ = smoke_book
    monkeypatch.setenv("NEURODIFF_ROOT", str(project))
    out = project / "flow-executed"
    report = runner.run_notebooks(
        "smoke",
        {"cohort": str(tiny_cohort), "derived_dir": "derived", **DEMO_RECIPE},
        only=["03", "04", "05"],
        output_dir=out,
    )
    assert [n.name for n in report.notebooks] == ["03_train", "04_sample", "05_metrics"]
    chapter4 = json.loads((out / "04_sample.ipynb").read_text())
    text = json.dumps(chapter4)
    assert "euler-5" in text and "heun-5" in text  # the flow rows of the sampler table
    assert "pndm-" not in text  # no DDPM sampler rows (the DDIM study table names DDIM)
    chapter3 = (out / "03_train.ipynb").read_text()
    assert "rectified flow (logit-normal t), L2 loss, EMA warm-up" in chapter3
