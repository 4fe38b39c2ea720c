"""Tables and figures of notebook 01 on the tiny simulated cohort."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from neurodiff import config, explore  # noqa: E402
from neurodiff.errors import CohortError  # noqa: E402
from neurodiff.viz import explore as plots  # noqa: E402


@pytest.fixture(scope="module")
def table(tiny_cohort: Path):
    params = config.resolve("smoke", {"cohort": str(tiny_cohort)})
    return explore.open_cohort(params)


def test_tables(table) -> None:
    demo = explore.demographics_table(table)
    assert demo["subjects"].to_dict() == {"A": 4, "B": 4, "C": 4}
    assert {"age mean", "age range", "women %"} <= set(demo.columns)
    acq = explore.acquisition_table(table)
    assert acq.loc["B", "orientation"] == "LPS"
    assert acq.loc["C", "dtype"] == "float32"
    assert acq.loc["A", "voxel size (mm)"] == "2.4 x 2.4 x 2.4"
    assert acq.loc["A", "median p99"] > 100 * acq.loc["C", "median p99"]
    text = explore.describe_source(table)
    assert "These images are simulated" in text and "12 scans from 3 site(s)" in text


def test_site_summary_and_figures(table) -> None:
    summary = explore.summarise_sites(table)
    assert summary.sites == ["A", "B", "C"]
    assert summary.count == {"A": 4, "B": 4, "C": 4}
    shape = summary.template.shape
    for site in summary.sites:
        mean = summary.mean[site]
        assert mean.shape == shape and np.isfinite(mean).all()
        # scaled by each scan's 99th percentile: brain tissue around 0.3-1
        assert 0.5 < np.percentile(mean, 99.5) < 1.5
        for h in summary.brain_hist[site]:
            assert np.isclose((h * np.diff(summary.brain_edges)).sum(), 1.0)
    # the sites differ in contrast: their mean brain histograms are not the same
    a, c = (np.mean(summary.brain_hist[s], axis=0) for s in ("A", "C"))
    assert np.abs(a - c).sum() * np.diff(summary.brain_edges)[0] > 0.1


def test_figures_show_each_site(table) -> None:
    summary = explore.summarise_sites(table)
    demo = plots.plot_demographics(table)
    assert isinstance(demo, Figure)
    assert [ax.get_title() for ax in demo.axes] == ["Subjects per site", "Age per site"]
    hist = plots.plot_site_intensity_histograms(summary)
    titles = [ax.get_title() for ax in hist.axes]
    assert titles[:3] == ["site A: raw", "site B: raw", "site C: raw"]
    assert len(hist.axes) == 4  # one raw panel per site, one shared brain-tissue panel
    examples = explore.site_examples(table, seed=1)
    assert [site for site, _row, _img in examples] == ["A", "B", "C"]
    assert all(row["site"] == site for site, row, _img in examples)
    shown = plots.plot_site_examples(examples)
    text = " ".join(t.get_text() for ax in shown.axes for t in ax.texts)
    assert all(f"site {s} - " in text for s in "ABC"), text
    means = plots.plot_site_means(summary)
    images = [ax for ax in means.axes if ax.images]
    assert len(images) == 3 * 4  # sagittal, coronal, axial for 3 sites and the spread row
    assert images[0].images[0].get_array().shape == summary.mean["A"][0].T.shape


def test_missing_cohort_is_an_error(tmp_path: Path) -> None:
    params = config.resolve("smoke", {"cohort": str(tmp_path / "nothing")})
    with pytest.raises(CohortError, match="does not exist .*neurodiff demo-data"):
        explore.open_cohort(params)
