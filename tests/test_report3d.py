"""The paper's 3D path end to end: every chapter and the book on the ``smoke3d`` profile."""

from __future__ import annotations

import json
import re

import nbformat

from neurodiff import config


def test_every_chapter_runs_on_volumes_and_the_book_builds(smoke3d_book):
    project, report, index = smoke3d_book
    assert [nb.name[:2] for nb in report.notebooks] == ["01", "02", "03", "04", "05", "06"]
    assert index.is_file()
    params = config.resolve("smoke3d")
    assert params.spatial_dims == 3
    run = json.loads((project / "book" / "executed" / "run.json").read_text())
    assert run["params"]["spatial_dims"] == 3 and run["profile"] == "smoke3d"
    html = project / "_build" / "html" / "book" / "executed"
    for page in sorted(html.glob("0*.html")):
        text = page.read_text()
        assert "Traceback (most recent call last)" not in text, page.name
        for src in re.findall(r'<img[^>]+src="([^"]+)"', text):
            if not src.startswith(("http", "data:")):
                assert (page.parent / src).resolve().is_file(), f"{page.name}: missing {src}"


def test_the_3d_figures_and_features(smoke3d_book):
    project, _, _ = smoke3d_book
    executed = project / "book" / "executed"
    sample = nbformat.read(executed / "04_sample.ipynb", as_version=4)
    orthogonal = [c for c in sample.cells if "plot_orthogonal" in c.source]
    assert orthogonal
    images = [o for o in orthogonal[0].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # a real volume and synthetic volumes in three orthogonal views
    metrics = nbformat.read(executed / "05_metrics.ipynb", as_version=4)
    text = "".join(str(o.get("text", "")) for c in metrics.cells for o in c.get("outputs", []))
    assert "2.5D" in text  # the random extractor reads volumes slice-wise on three axes
