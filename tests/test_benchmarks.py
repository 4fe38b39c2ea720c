"""Every script of ``benchmarks/`` runs: each one's default code path at toy size (the smoke
profile, a tiny cohort, small counts; seconds, not the hour some take), writing into ``tmp_path``
and never into ``benchmarks/results/`` or the book. Each one's results file keeps the format of
the committed one. The GPU benchmark of the paper's model is kept ready to run: every option it
times works on the CPU at toy size (smoke3d), torch.compile and scaled-dot-product attention
included."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from neurodiff import config

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"

pytestmark = pytest.mark.usefixtures("one_thread")


def _module(name: str, monkeypatch: pytest.MonkeyPatch):
    """Load ``benchmarks/<name>.py`` as a module (its folder importable, as when it is run)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state(paths) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in paths if p.is_file()}


@pytest.fixture(autouse=True)
def _committed_results_untouched():
    """No benchmark run by a test writes into benchmarks/results/ or the book's timings."""
    import torch

    watched = [*RESULTS.rglob("*"), ROOT / "book" / "teaching_timings.md"]
    before = _state(watched)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # some scripts set the thread count
    assert _state([*RESULTS.rglob("*"), ROOT / "book" / "teaching_timings.md"]) == before


def _same_keys(toy: dict, committed: Path, *nested: str) -> None:
    """``toy`` has the keys of the committed results file (and so has each entry of its
    ``nested`` mappings)."""
    ref = json.loads(committed.read_text())
    assert sorted(toy) == sorted(ref)
    for key in nested:
        keys = {tuple(sorted(entry)) for entry in ref[key].values()}
        assert {tuple(sorted(entry)) for entry in toy[key].values()} <= keys, key


# --------------------------------------------------------------------------------------------
# sampling: the samplers fit the profile's process
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", config.available_profiles())
def test_the_sampling_benchmarks_pick_samplers_that_fit_every_profile(profile, monkeypatch):
    """With their defaults (few-step sampler, 50 steps, T = 1000 and the profile's own T)."""
    speed = _module("sampling_speed", monkeypatch)
    throughput = _module("train_throughput", monkeypatch)
    base = config.resolve(profile).stage(config.ModelConfig)
    fast = config.default_fast_sampler(base.process)
    cfgs = {T: dataclasses.replace(base, timesteps=T) for T in (1000, 250)}
    rows = speed.plan(cfgs, fast, 50)
    ref, few = {"ddpm": ("ddpm", "ddim"), "rflow": ("euler", "euler")}[base.process]
    assert few == fast
    assert [label for label, *_ in rows[1000]] == [f"{ref}-1000", f"{few}-50"]
    T = base.timesteps
    assert list(throughput.sampling_rows(base)) == list(
        dict.fromkeys([f"{ref}-{T}", f"{few}-{min(50, T)}"])
    )


@pytest.mark.parametrize(
    ("overrides", "last_line"),
    [
        ([], "ddim-4 speedup vs ddpm-20: "),  # smoke: a DDPM model
        (["-p", "process=rflow", "-p", "sampler=heun"], "euler-4 speedup vs euler-20: "),
    ],
)
def test_sampling_speed_runs_at_toy_size(overrides, last_line, monkeypatch, capsys):
    bench = _module("sampling_speed", monkeypatch)
    bench.main(
        [
            *("--profile", "smoke", *overrides, "-p", "timesteps=20"),
            *("--reference-T", "20", "--steps", "4", "--repeats", "1", "--threads", "1"),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith(last_line)


def test_sampling_speed_runs_on_the_default_profile_at_toy_size(monkeypatch, capsys):
    """The demo profile (rectified flow), its image and T made small: Euler against Euler."""
    bench = _module("sampling_speed", monkeypatch)
    bench.main(
        [
            *("-p", "image_size=16", "-p", "timesteps=20"),
            *("--reference-T", "20", "--steps", "4", "--repeats", "1", "--threads", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert "profile demo (process=rflow)" in out
    assert out.strip().splitlines()[-1].startswith("euler-4 speedup vs euler-20: ")


def test_train_throughput_times_the_samplers_of_a_flow_model(monkeypatch):
    bench = _module("train_throughput", monkeypatch)
    params = config.resolve("smoke", {"process": "rflow", "sampler": "euler", "timesteps": 60})
    import torch

    seconds = bench.time_sampling(params, torch.device("cpu"))
    assert list(seconds) == ["euler-60", "euler-50"] and all(s > 0 for s in seconds.values())


# --------------------------------------------------------------------------------------------
# metrics, preprocessing, the teaching guide
# --------------------------------------------------------------------------------------------


def test_metrics_speed_runs_at_toy_size(monkeypatch, capsys):
    bench = _module("metrics_speed", monkeypatch)
    bench.main(
        [
            *("--profile", "smoke", "--size", "32", "--counts", "8,12,24"),
            *("--naive-resamples", "2", "--threads", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert "all metrics, smoke profile (8 synthetic vs 12 test, 24 train, 32^2" in out
    assert out.strip().splitlines()[-1].startswith("vectorised bootstrap speedup vs naive loop")


@pytest.mark.skipif(
    not Path("/usr/share/mricron/templates/ch2.nii.gz").is_file(),
    reason="Colin27 not installed: Debian's mricron-data (.ci/run installs it)",
)
def test_skull_strip_runs_at_toy_size(tmp_path, monkeypatch):
    bench = _module("skull_strip", monkeypatch)
    out = tmp_path / "strip.json"
    assert bench.main(["--toy", "--repeats", "1", "--out", str(out)]) == 0
    toy = json.loads(out.read_text())
    _same_keys(toy, RESULTS / "skull_strip.json")
    assert toy["tools"][0]["tool"] == "deepbet, 192^3 grid" and toy["tools"][0]["dice"] > 0.9
    assert toy["pipeline"]["auto"]["r_volume"] > 0.95


def test_preprocess_steps_runs_at_toy_size(tiny_cohort, monkeypatch, capsys):
    bench = _module("preprocess_steps", monkeypatch)
    bench.main(["--cohort", str(tiny_cohort), "--profile", "smoke", "--workers", "1"])
    out = capsys.readouterr().out
    assert "profile smoke: 12 subjects" in out
    assert out.strip().splitlines()[-1].startswith("cache speed-up (cold / cached): ")


def test_teaching_guide_times_its_commands_at_toy_size(tmp_path, monkeypatch):
    bench = _module("teaching_guide", monkeypatch)
    # every command of the real guide can be run here (outputs in the scratch folder)
    for command in bench.guide_commands():
        argv = bench._localise(command, tmp_path, "smoke")
        assert argv is None or (Path(argv[0]).is_file() and "course" not in argv), command
    out = tmp_path / "timings.md"
    assert bench.main(["--profile", "smoke", "--select", "neurodiff runs", "--out", str(out)]) == 0
    table = out.read_text()
    assert "| `neurodiff runs --profile smoke` |" in table and "min |" in table
    assert "| `make install` | not timed |" in table and "| **total** |" in table


# --------------------------------------------------------------------------------------------
# whole runs: the longer run, the DDIM background, the recipe study
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def longer_run(tiny_cohort, tmp_path_factory):
    """``benchmarks/longer_run.py`` on the smoke profile and the tiny cohort: ``(params, the
    results file's content)``; its trained DDPM model serves the DDIM-background test."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("longer")
    overrides = [f"cohort={tiny_cohort}", f"derived_dir={tmp / 'derived'}"]
    try:
        bench = _module("longer_run", mp)
        argv = ["--profile", "smoke", *(a for o in overrides for a in ("-p", o))]
        assert bench.main([*argv, "--out", str(tmp / "longer.json")]) == 0
    finally:
        mp.undo()
    return config.resolve("smoke", overrides), json.loads((tmp / "longer.json").read_text())


def test_longer_run_runs_at_toy_size(longer_run):
    params, result = longer_run
    _same_keys(result, RESULTS / "longer.json", "recipes")
    (row,) = result["recipes"].values()
    assert row["steps"] == params.train_steps and row["sampler"] == "ddim-5"
    assert "fid" in row["metrics"]


def test_ddim_background_runs_at_toy_size(longer_run, tmp_path, monkeypatch, capsys):
    from neurodiff import artifacts

    params, _ = longer_run
    bench = _module("ddim_background", monkeypatch)
    out = tmp_path / "ddim_background.json"
    where = ["-p", f"cohort={params.cohort}", "-p", f"derived_dir={params.derived_dir}"]
    argv = [str(artifacts.train_dir(params)), "--profile", "smoke", *where, "-n", "4"]
    assert bench.main([*argv, "--steps", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    _same_keys(result, RESULTS / "ddim_background.json")
    assert [r["variant"] for r in result["rows"]] == [
        "real test images",
        "ddpm-50",
        "ddim-5, clip x0 only",
        "ddim-50, clip x0 only",
        "ddim-50, re-derived eps",
        "ddim-50, no clipping",
        "ddim-5, re-derived eps",
    ]
    # a rectified-flow model (the demo's) has no DDIM: refused before any sampling
    rflow = config.resolve("demo").stage(config.ModelConfig)
    with pytest.raises(config.ConfigError, match="does not fit process='rflow'"):
        bench.variants(rflow, 50)


def test_recipes_runs_at_toy_size(tiny_cohort, tmp_path, monkeypatch):
    bench = _module("recipes", monkeypatch)
    out = tmp_path / "recipes.json"
    argv = [
        *("--toy", "--budget", "1", "--slice", "0.5", "--recipes", "authors,rflow"),
        *("-p", f"cohort={tiny_cohort}", "-p", f"derived_dir={tmp_path / 'derived'}"),
        *("--models", str(tmp_path / "models"), "--out", str(out)),
    ]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    _same_keys(result, RESULTS / "recipes.json", "recipes")
    assert list(result["recipes"]) == ["authors", "rflow"]
    assert result["recipes"]["authors"]["sampler"] == "ddim-5"
    assert result["recipes"]["rflow"]["sampler"] == "euler-5"
    assert (tmp_path / "models" / "_pilot" / "rflow").is_dir()


# --------------------------------------------------------------------------------------------
# the GPU benchmark, on the CPU at toy size
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_throughput_runs_every_variant_in_3d(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no preprocessed data here: random volumes of the right shape
    bench = _module("train_throughput", monkeypatch)
    speedup = bench.main(
        [
            *("--profile", "smoke3d", "-p", f"derived_dir={tmp_path}"),
            *("-p", "device=cpu", "-p", "grad_accum=2", "-p", "batch_size=1"),
            *("--steps", "1", "--warmup", "1", "--rounds", "1"),
            *("--variants", "--sampling"),
        ]
    )
    out = capsys.readouterr().out
    assert speedup > 0
    for row in (
        "neurodiff fp32",
        "neurodiff + channels_last",
        "neurodiff + compile",
        "neurodiff, plain attention",
        "neurodiff, per-tensor optimiser",
        "neurodiff, micro-batch 2 x 1",
    ):
        assert row in out, row
    assert "3D 16^3" in out and "sampling one volume, ddpm-20" in out
    assert "sampling one volume, ddim-20" in out


# --------------------------------------------------------------------------------------------
# chapter 6's full experiment
# --------------------------------------------------------------------------------------------


def test_augment_fair_runs_at_toy_size_and_resumes(tiny_pools, tmp_path, monkeypatch, capsys):
    """``benchmarks/augment_fair.py --smoke``: a first sitting stopped by its time budget writes
    nothing final, the second continues and writes the results file with the committed keys."""
    import shutil

    bench = _module("augment_fair", monkeypatch)
    pools = tmp_path / "pools"
    shutil.copytree(tiny_pools, pools)
    out = tmp_path / "augment_fair.json"
    argv = ["--smoke", "--pools-dir", str(pools), "-p", f"derived_dir={tmp_path / 'd'}"]
    assert bench.main([*argv, "--hours", "0", "--out", str(out)]) == 0
    assert "not summarised yet" in capsys.readouterr().out and not out.exists()
    assert bench.main([*argv, "--out", str(out)]) == 0
    assert "primary endpoint" in capsys.readouterr().out
    result = json.loads(out.read_text())
    if (RESULTS / "augment_fair.json").is_file():
        _same_keys(result, RESULTS / "augment_fair.json")
    assert result["complete"] and len(result["sittings"]) == 1
    assert result["command"].startswith("python benchmarks/augment_fair.py --smoke")
    needed = result["draws_needed_for_target"]
    assert needed is None or needed >= result["info"]["primary"]["draws"]
    assert set(result["tables"]) >= {"table", "gains", "worth", "pools", "memorisation"}
    with pytest.raises(config.ConfigError, match="holds pools of sizes"):
        bench.main([*argv, "--pools", "5,4,2,3,2", "--out", str(out)])


# --------------------------------------------------------------------------------------------
# the diversity study: its levers, budget, rule and seeds, at toy size
# --------------------------------------------------------------------------------------------


def test_diversity_study_runs_at_toy_size_resumes_and_summarises_seeds(
    tiny_cohort, tmp_path, monkeypatch
):
    bench = _module("diversity", monkeypatch)
    out, seeds_out = tmp_path / "diversity.json", tmp_path / "seeds.json"
    argv = [
        *("--toy", "--variants", "base,churn_0.3", "--seeds", "0,1"),
        *("-p", f"cohort={tiny_cohort}", "-p", f"derived_dir={tmp_path / 'derived'}"),
        *("--out", str(out), "--seeds-out", str(seeds_out)),
    ]
    assert bench.main(argv) == 0
    study = json.loads(out.read_text())
    assert set(study["variants"]) >= {"base@0", "churn_0.3@0", "base@1"}
    base, churned = study["variants"]["base@0"], study["variants"]["churn_0.3@0"]
    assert base["steps"] == bench.TOY_STEPS and base["train_seconds"] > 0
    assert base["params"]["train_steps"] == bench.TOY_STEPS  # the recipe, for the book to match
    assert churned["train_seconds"] is None  # a sampling lever reuses the base model
    assert base["metrics"]["fid"]["value"] != churned["metrics"]["fid"]["value"]
    assert {r["group"] for r in base["groups"]} == {"control", "patient"}
    assert study["cpu"]["model"] and "choice" in study
    seeds = json.loads(seeds_out.read_text())
    fid = seeds["recipes"]["base"]["metrics"]["fid"]
    assert len(fid["values"]) == 2 and fid["min"] <= fid["median"] <= fid["max"]
    # resumed: the finished entries are kept as they are (with the seconds they took)
    before = out.read_text()
    assert bench.main(argv) == 0
    assert json.loads(out.read_text())["variants"] == json.loads(before)["variants"]


def test_diversity_rule_keeps_the_guards_then_counts_diversity(monkeypatch):
    bench = _module("diversity", monkeypatch)

    def entry(inside: set[str], nfe: int = 19, far: float = 1.0) -> dict:
        metrics = {}
        for k in (*bench.GUARDS, *bench.DIVERSITY):
            ok = k in inside
            metrics[k] = {
                "value": 0.5 if ok else 1.0 + far,
                "baseline_ci": [0.0, 1.0],
                "verdict": "inside" if ok else "outside",
            }
        return {"metrics": metrics, "groups": [], "network_evaluations": nfe}

    guards = set(bench.GUARDS)
    variants = {
        "base": entry(guards | {"recall"}),
        "diverse_but_unfaithful": entry({"recall", "density", "nn_ssim"}),
        "better": entry(guards | {"recall", "density"}, nfe=39),
        "better_cheaper": entry(guards | {"recall", "density"}, nfe=9),
        "better_closer": entry(guards | {"recall", "density"}, nfe=39, far=0.1),
    }
    choice = bench.choose(variants)
    assert "diverse_but_unfaithful" not in choice["eligible"]
    assert choice["chosen"] == "better_closer"  # closer outside beats cheaper
    del variants["better_closer"]
    assert bench.choose(variants)["chosen"] == "better_cheaper"
    assert bench.choose({"x": entry({"recall"})})["chosen"] is None
    # the recipe the demo trains after the study, and so the one replicated over seeds
    assert bench.demo_recipe({"chosen": "churn_0.3"}, {}) == "churn_0.3"
    assert (
        bench.demo_recipe({"chosen": None, "cost": {"variant": "steps_1400"}}, {}) == "steps_1400"
    )
    assert bench.demo_recipe({"chosen": None}, {"steps_1929@0": {}}) == "steps_1929"
    assert bench.demo_recipe({}, {}) == "base"
    # over the budget, the guards' price is the fewest training FLOPs, not steps: a narrower UNet
    # for as many steps costs less than the base UNet for fewer
    over = {
        "steps_1400": {**entry(guards), "steps": 1400, "train_tflop": 55.4},
        "unet_16_1929": {**entry(guards), "steps": 1929, "train_tflop": 21.6},
        "unet_24_1929": {**entry({"recall"}), "steps": 1929, "train_tflop": 42.9},
    }
    assert {"unet_16_1929", "unet_24_1929"} <= set(bench.OVER_BUDGET)
    assert bench.choose(over)["cost"]["variant"] == "unet_16_1929"


def test_report_time_runs_what_make_report_runs_and_prices_the_budget(monkeypatch):
    bench = _module("report_time", monkeypatch)
    # the commands of the report target and of its cohort prerequisite, in the Makefile's order
    makefile = (ROOT / "Makefile").read_text().splitlines()
    commands = []
    for target in ("$(DEMO):", "report:"):
        start = next(i for i, line in enumerate(makefile) if line.startswith(target))
        for line in makefile[start + 1 :]:
            if not line.startswith("\t"):
                break
            if "/neurodiff " in line:
                words = line.split("/neurodiff ", 1)[1].replace("$(ARGS)", "").split()
                commands.append(tuple(words))
    phases = [tuple(a.replace("{profile}", "$(PROFILE)") for a in args) for _, args in bench.PHASES]
    assert phases == commands
    entry = {
        "total_seconds": 1000.0,
        "notebooks": {bench.TRAIN_NOTEBOOK: {"seconds": 400.0}},
        "training": {"steps": 2000, "tflop_per_step": 0.04},
    }
    ten = bench.ten_minutes(entry)
    # 600 s of budget minus the 600 s besides training leave nothing; at 5 steps/s
    assert ten["seconds_besides_training"] == 600.0 and ten["steps"] == 0
    entry["total_seconds"] = 700.0
    ten = bench.ten_minutes(entry)
    assert ten["seconds_left_for_training"] == 300.0 and ten["steps"] == 1500
    assert ten["tflop"] == 60.0


def test_report_time_clones_runs_and_appends_a_run(monkeypatch, tmp_path):
    bench = _module("report_time", monkeypatch)
    # the code path at toy size: one cheap command instead of the report's
    monkeypatch.setattr(bench, "PHASES", (("version", ("--version",)),))
    out = tmp_path / "report_time.json"
    assert bench.main(["--profile", "smoke", "--out", str(out)]) == 0
    assert bench.main(["--profile", "smoke", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 2  # appended, not replaced
    run = runs[0]
    assert run["phases"]["version"] > 0 and run["total_seconds"] == run["phases"]["version"]
    assert run["cpu"]["model"] and run["commit"] and run["profile"] == "smoke"
    assert 1 <= run["cpus_available"] <= run["cpu"]["cores"]
    assert run["training"]["steps"] > 0 and run["training"]["tflop"] > 0
    assert "ten_minutes" not in run and "metrics" not in run  # no notebook ran


def _seed_summary(bench, inside: set[str]) -> dict:
    """A seed summary of the diversity study whose medians are inside their range for ``inside``."""
    return {
        "metrics": {
            k: {"median": m, "min": m, "max": m, "baseline_ci": [0.0, 1.0]}
            for k in (*bench.GUARDS, *bench.DIVERSITY)
            for m in [0.5 if k in inside else 2.0]
        }
    }


def test_a_cheaper_recipe_replaces_the_demos_only_when_no_worse_over_seeds(monkeypatch):
    bench = _module("diversity", monkeypatch)

    def summary(inside: set[str]) -> dict:
        return _seed_summary(bench, inside)

    kept = {"fid", "precision", "memorised_fraction", "density"}
    summaries = {
        "steps_1929": summary(kept),
        "unet_24_1929": summary(kept | {"recall"}),  # no worse, and better on recall
        "unet_16_1929": summary(kept - {"density"}),  # cheapest, but loses density
    }
    found = {
        "steps_1929@0": {"train_tflop": 76.3},
        "unet_24_1929@0": {"train_tflop": 42.9, "overrides": {"channels": 1, "train_steps": 2}},
        "unet_16_1929@0": {"train_tflop": 19.1},
        "churn_unet_24@0": {"train_tflop": 42.9, "overrides": {"churn": 0, "channels": 1, "t": 2}},
    }
    summaries["churn_unet_24"] = summaries["unet_24_1929"]
    final, compared = bench.cheaper_recipe("steps_1929", summaries, found)
    assert final == "unet_24_1929"  # as cheap and as good as churn_unet_24, one change fewer
    assert compared["churn_unet_24"]["no_worse"]
    assert compared["unet_16_1929"] == {
        "tflop": 19.1,
        "tflop_ratio": 19.1 / 76.3,
        "seconds_ratio": None,
        "no_worse": False,
        "lost": ["density"],
    }
    assert compared["unet_24_1929"]["no_worse"] and not compared["unet_24_1929"]["lost"]
    assert compared["unet_24_1929"]["seconds_ratio"] is None  # no seconds recorded here
    # outside for both: worse only by more than the incumbent's own spread over seeds
    ref, cand = summary(kept), summary(kept)
    ref["metrics"]["recall"].update(median=2.0, min=1.95, max=2.05)  # 1.0 outside, spread 0.1
    cand["metrics"]["recall"]["median"] = 2.08
    assert bench.no_worse(cand, ref) == []
    cand["metrics"]["recall"]["median"] = 2.2
    assert bench.no_worse(cand, ref) == ["recall"]
    del summaries["churn_unet_24"]
    summaries["unet_24_1929"] = summary(kept - {"fid"})  # a guard lost: not adopted
    assert bench.cheaper_recipe("steps_1929", summaries, found)[0] == "steps_1929"
    # a dearer recipe is never compared; an incumbent without seeds stays
    assert "steps_1929" not in bench.cheaper_recipe("unet_16_1929", summaries, found)[1]
    assert bench.cheaper_recipe("base", summaries, found) == ("base", {})


def test_a_pick_made_on_one_seed_is_confirmed_over_the_seeds_or_set_aside(monkeypatch):
    bench = _module("diversity", monkeypatch)

    def summary(outside: set[str]) -> dict:
        return _seed_summary(bench, set(bench.GUARDS + bench.DIVERSITY) - outside)

    pick, before = "churn_0.1_unet_24_1929", f"steps_{bench.LONG_STEPS}"
    summaries = {before: summary({"coverage"}), pick: summary({"coverage", "recall"})}
    unkept = bench.guards_lost(summaries[pick])
    assert unkept == ["coverage"]
    assert bench.reference_recipe(pick, unkept, summaries) == before  # not confirmed
    assert bench.reference_recipe(pick, [], summaries) == pick  # confirmed
    # not confirmed and the recipe before the study not replicated: that recipe stays
    assert bench.reference_recipe(pick, unkept, {pick: summaries[pick]}) == before
    assert bench.reference_recipe(before, ["coverage"], summaries) == before
