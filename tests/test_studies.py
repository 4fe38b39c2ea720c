"""Reading the diversity study and the seed replicates for the book (neurodiff.studies), and their
figures: every cell comes from the file, the rule's choice is reported as the file says, a
foreign or broken file gets a clear error."""

from __future__ import annotations

import json

import pytest

from neurodiff import studies
from neurodiff.errors import DataError
from neurodiff.viz import studies as plots

GUARDS = ["fid", "precision", "coverage", "memorised_fraction"]
DIVERSITY = ["recall", "density", "ms_ssim_diversity", "nn_ssim"]


def _metric(value: float, inside: bool, label: str = "m") -> dict:
    return {
        "label": label,
        "value": value,
        "baseline": 0.5,
        "baseline_ci": [0.4, 0.6],
        "verdict": "inside" if inside else "outside",
    }


def _entry(lever: str, inside: set[str], value: float = 0.5) -> dict:
    return {
        "lever": lever,
        "description": f"{lever} change",
        "steps": 700,
        "network_evaluations": 19,
        "metrics": {
            k: _metric(value if k in inside else 0.9, k in inside) for k in GUARDS + DIVERSITY
        },
        "groups": [
            {"group": "control", "metric": "fid", "verdict": "inside"},
            {"group": "patient", "metric": "fid", "verdict": "inside"},
            {"group": "patient", "metric": "recall", "verdict": "outside"},
        ],
    }


def _study(chosen: str | None) -> dict:
    guards = set(GUARDS)
    return {
        "cpu": {"model": "Test CPU", "cores": 2, "flags": ["avx2"]},
        "budget_steps": 700,
        "budget_tflop": 27.7,
        "guards": GUARDS,
        "diversity": DIVERSITY,
        "variants": {
            "base@0": _entry("base", guards | {"recall"}),
            "churn_0.3@0": _entry("sampling", guards | {"recall", "density"}),
            "augment@0": _entry("augmentation", {"recall", "density", "nn_ssim"}),
            "base@1": _entry("base", guards),
        },
        "choice": {
            "chosen": chosen,
            "scores": {"augment": {"guards_inside": False}, "base": {"guards_inside": True}},
        },
    }


def test_the_lever_table_marks_what_is_outside_and_the_rule():
    table = studies.diversity_table(_study("churn_0.3"))
    assert list(table.index) == ["base", "churn_0.3", "augment", "real vs real (median)"]
    assert table.loc["base", "recall"] == "0.5"  # inside: plain
    assert table.loc["base", "density"] == "0.9 *"  # outside: marked
    assert table.loc["churn_0.3", "rule"] == "chosen"
    assert table.loc["augment", "rule"] == "guard outside"
    assert table.loc["base", "patients inside"] == "1/2"
    assert table.loc["real vs real (median)", "fid"] == "0.5"


def test_the_reading_follows_the_file():
    chosen = studies.reading(_study("churn_0.3"))
    assert "**churn_0.3**" in chosen and "2 of the 4 diversity metrics" in chosen
    assert "`augment`" in chosen  # more diversity at the price of a guard
    none = studies.reading(_study(None))
    assert "No variant kept every guard" in none
    assert "1 of the 4 diversity metrics" in none  # the base recipe's count
    assert "better than the base" in studies.reading(_study("base"))


def test_the_frontier_and_the_seed_table():
    frame = studies.frontier(_study(None))
    assert list(frame.index) == ["base", "churn_0.3", "augment"]
    assert frame.loc["augment", "precision"] == 0.9 and frame.loc["base", "x_lo"] == 0.4
    seeds = {
        "recipes": {
            "base": {
                "metrics": {
                    "fid": {
                        "label": "FID",
                        "values": [0.3, 0.5, 0.4],
                        "median": 0.4,
                        "min": 0.3,
                        "max": 0.5,
                        "baseline_ci": [0.2, 0.45],
                        "verdicts": ["inside", "outside", "inside"],
                    }
                }
            }
        }
    }
    table = studies.seed_table(seeds, "base")
    assert table.loc["fid", "inside"] == "2/3"
    assert table.loc["fid", "median [min, max]"] == "0.4 [0.3, 0.5]"
    with pytest.raises(DataError, match="no recipe 'other'"):
        studies.seed_table(seeds, "other")
    fig = plots.plot_seed_spread(seeds, ["fid", "not there"])
    assert len(fig.axes) == 1
    assert plots.plot_frontier(frame).axes[0].get_xlabel().startswith("recall")


def test_study_files_are_checked(tmp_path):
    with pytest.raises(DataError, match="run `python benchmarks/diversity.py`"):
        studies.load_study(tmp_path / "missing.json", "diversity")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        studies.load_study(bad, "seeds")
    other = tmp_path / "recipes.json"
    other.write_text(json.dumps({"recipes": {}}))
    with pytest.raises(DataError, match="no 'variants' mapping"):
        studies.load_study(other, "diversity")
    assert studies.cpu_line(_study(None)) == "Test CPU, 2 cores (avx2)"


def test_the_appendix_says_what_changes_between_machines(tmp_path, monkeypatch):
    from neurodiff import config, record

    monkeypatch.setattr(config, "project_root", lambda: tmp_path)
    text = "\n".join(record._machines_markdown())
    assert "What changes between machines" in text and "bf16" in text
    assert "No seed replicates in this checkout" in text
    seeds = tmp_path / studies.SEEDS_FILE
    seeds.parent.mkdir(parents=True)
    fid = {
        "label": "FID",
        "values": [0.03, 0.05],
        "median": 0.04,
        "min": 0.03,
        "max": 0.05,
        "baseline_ci": [0.02, 0.045],
        "verdicts": ["inside", "outside"],
    }
    payload = {"cpu": "Some CPU", "recipes": {"base": {"seeds": [0, 1], "metrics": {"fid": fid}}}}
    seeds.write_text(json.dumps(payload))
    text = "\n".join(record._machines_markdown())
    assert "Recipe `base`, generator seeds [0, 1], measured on Some CPU" in text
    assert "| FID | 0.03, 0.05 | 0.04 [0.03, 0.05] | [0.02, 0.045] | 1/2 |" in text


def test_over_budget_runs_are_marked_and_price_the_guards():
    study = _study(None)
    study["variants"]["steps_1929@0"] = {
        **_entry("budget", set(GUARDS) | {"recall"}),
        "steps": 1929,
        "train_tflop": 27.7 * 1929 / 700,
    }
    study["variants"]["steps_1000@0"] = {**_entry("budget", {"recall"}), "steps": 1000}
    study["variants"]["unet_16_1929@0"] = {**_entry("width, long", {"recall"}), "steps": 1929}
    study["choice"]["cost"] = {"variant": "steps_1929", "steps": 1929, "diversity_inside": 1}
    table = studies.diversity_table(study)
    assert table.loc["steps_1929", "rule"] == "cheapest over the budget with the guards"
    assert table.loc["steps_1000", "rule"] == "over the budget"
    assert table.loc["unet_16_1929", "rule"] == "over the budget"
    text = studies.reading(study)
    assert "`steps_1929` (1929 training steps, 2.8 times the budget's FLOPs)" in text
    del study["choice"]["cost"]
    assert "No run over the budget kept the guards either" in studies.reading(study)


def test_a_report_run_is_matched_to_the_study_run_of_its_recipe():
    from neurodiff import config

    demo = config.resolve("demo")
    same = config.resolve("demo", {"preview_every": 0, "checkpoint_every": 700, "profile": "x"})
    other = config.resolve("demo", {"train_steps": 700})
    study = {"variants": {"base@0": {"params": same.to_dict()}, "base@1": {}}}
    assert studies.replicate_of(study, demo.to_dict()) == "base@0"
    assert studies.replicate_of(study, other.to_dict()) is None
    assert studies.replicate_of(None, demo.to_dict()) is None


def _timing(cpu: str, total: float, measured: str = "2026-12-07T12:00:00+00:00") -> dict:
    return {
        "measured": measured,
        "commit": "abcdef0123",
        "profile": "demo",
        "cpu": {"model": cpu, "cores": 2, "flags": ["avx2"]},
        "phases": {
            "demo cohort": 40.0,
            "pools cohort": 30.0,
            "notebooks": total - 90.0,
            "book": 20.0,
        },
        "notebooks": {"03_train": {"seconds": 400.0, "peak_rss_mb": 1000.0}},
        "total_seconds": total,
        "training": {"steps": 1929, "tflop": 76.3, "tflop_per_step": 0.0396},
        "ten_minutes": {
            "seconds_besides_training": total - 400.0,
            "seconds_left_for_training": max(0.0, 600.0 - (total - 400.0)),
            "steps_per_second": 4.82,
            "steps": 0,
            "tflop": 0.0,
        },
    }


def test_the_appendix_shows_make_report_on_each_machine(tmp_path, monkeypatch):
    from neurodiff import config, record

    monkeypatch.setattr(config, "project_root", lambda: tmp_path)
    text = "\n".join(record._report_time_markdown())
    assert "Not measured in this checkout" in text
    path = tmp_path / studies.REPORT_TIME_FILE
    path.parent.mkdir(parents=True)
    runs = [_timing("Slow CPU", 1013.0), _timing("Fast CPU", 540.0)]
    # the latest run per CPU and profile is shown, by when it was measured
    runs.append(_timing("Slow CPU", 900.0, "2026-12-01T00:00:00+00:00"))
    path.write_text(json.dumps({"budget_seconds": 600, "runs": runs}))
    lines = record._report_time_markdown()
    rows = [ln for ln in lines if ln.startswith("| Slow CPU") or ln.startswith("| Fast CPU")]
    assert len(rows) == 2
    slow = next(r for r in rows if r.startswith("| Slow CPU"))
    fast = next(r for r in rows if r.startswith("| Fast CPU"))
    assert "**16 min 53 s** (over 10 min 00 s)" in slow and "2026-12-07" in slow
    assert "| 9 min 00 s |" in fast and "over" not in fast
    assert "| 70 s + 450 s + 20 s |" in fast and "1929 steps (76.3 TFLOP); 0 steps" in fast
    path.write_text(json.dumps({"budget_seconds": 600, "runs": "not a list of runs"}))
    assert "cannot be read" in "\n".join(record._report_time_markdown())
    path.write_text(json.dumps({"runs": [{"measured": "2026-12-07", "profile": "demo"}]}))
    assert "run 0 of the report timing file lacks commit" in "\n".join(
        record._report_time_markdown()
    )


def test_the_seed_replicates_say_which_recipe_the_demo_trains_and_why():
    seeds = {
        "demo_recipe": "unet_24_1929",
        "rule_recipe": "steps_1929",
        "cheaper": {
            "unet_24_1929": {
                "tflop_ratio": 0.5625,
                "seconds_ratio": 0.74,
                "no_worse": True,
                "lost": [],
            },
            "unet_16_1929": {"tflop_ratio": 0.25, "no_worse": False, "lost": ["fid"]},
        },
    }
    text = studies.cheaper_reading(seeds)
    assert text.startswith("Cheaper recipes against `steps_1929`: ")
    assert (
        "`unet_24_1929` (0.56x the training FLOPs and 0.74x the seconds of `steps_1929`) is no "
        "worse" in text
    )
    assert "`unet_16_1929` (0.25x the training FLOPs of `steps_1929`) loses fid" in text
    assert "**The demo trains `unet_24_1929`**" in text and "ties go to" not in text
    seeds["cheaper"]["churn"] = {"tflop_ratio": 0.5625, "no_worse": True, "lost": []}
    assert "`churn` costs as much and is no worse too; ties go to" in studies.cheaper_reading(seeds)
    del seeds["cheaper"]["churn"]
    seeds["demo_recipe"] = "steps_1929"
    seeds["cheaper"]["unet_24_1929"] = {"tflop_ratio": 0.5625, "no_worse": False, "lost": ["fid"]}
    assert studies.cheaper_reading(seeds).endswith("The demo trains `steps_1929`.")
    assert studies.cheaper_reading({"demo_recipe": "base"}) == "The demo trains `base`."
    # a pick the seeds do not confirm is named, with the guard it lets out, and set aside
    seeds.update(
        demo_recipe="unet_24_1929",
        rule_recipe="churn_0.1_unet_24_1929",
        confirmed=False,
        unconfirmed_guards=["coverage"],
        reference_recipe="steps_1929",
    )
    seeds["cheaper"]["unet_24_1929"] = {"tflop_ratio": 0.5625, "no_worse": True, "lost": []}
    text = studies.cheaper_reading(seeds)
    assert "The study's pick `churn_0.1_unet_24_1929` kept every guard at seed 0" in text
    assert "**not over the seeds** (coverage outside in the median)" in text
    assert "Cheaper recipes against `steps_1929`" in text
    assert "**The demo trains `unet_24_1929`**" in text
