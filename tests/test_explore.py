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


@pytest.fixture(scope="module")
def table(tiny_cohort: Path):
    params = config.resolve("smoke", {"cohort": str(tiny_cohort)})
    return explore.open_cohort(params)


def test_tables(table) -> None:
    demo = explore.demographics_table(table)
    assert demo["subjects"].to_dict() == {"A": 2, "B": 2, "C": 2}
    assert {"age mean", "age range", "women %"} <= set(demo.columns)
    acq = explore.acquisition_table(table)
    assert acq.loc["B", "orientation"] == "LPS"
    assert acq.loc["C", "dtype"] == "float32"
    assert acq.loc["A", "voxel size (mm)"] == "2.4 x 2.4 x 2.4"
    assert acq.loc["A", "median p99"] > 100 * acq.loc["C", "median p99"]
    text = explore.describe_source(table)
    assert "These images are simulated" in text and "6 scans from 3 site(s)" in text


def test_site_summary_and_figures(table) -> None:
    summary = explore.summarise_sites(table)
    assert summary.sites == ["A", "B", "C"]
    assert summary.count == {"A": 2, "B": 2, "C": 2}
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
    for fig in (
        explore.plot_demographics(table),
        explore.plot_intensity_histograms(summary),
        explore.plot_site_examples(table, seed=1),
        explore.plot_site_means(summary),
    ):
        assert isinstance(fig, Figure) and fig.axes


def test_missing_cohort_is_an_error(tmp_path: Path) -> None:
    params = config.resolve("smoke", {"cohort": str(tmp_path / "nothing")})
    with pytest.raises(CohortError, match="does not exist .*neurodiff demo-data"):
        explore.open_cohort(params)
