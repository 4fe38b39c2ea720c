"""What `make report` costs on this machine, step by step, and what 10 minutes would buy here.

Clones the repository's committed state (``git clone``) into a new folder and runs there, with
the Python environment this script runs in ("after installation"), the commands of the Makefile's
``report`` target, each timed: the two simulated cohorts (``neurodiff demo-data``), every notebook
(``neurodiff run --profile P``: the seconds and peak memory of each, from its run record) and the
book (``neurodiff book``). ``tests/test_benchmarks.py`` checks that :data:`PHASES` are the
Makefile's commands, so the two cannot drift apart.

Each measurement is appended to ``benchmarks/results/report_time.json`` with the CPU (model,
cores, instruction sets: :func:`neurodiff.device.cpu_description`), the commit and the profile's
training budget in steps and FLOPs (:func:`neurodiff.model.estimate_train_flops`, forward +
backward). From the measurement it also states **the training that 10 minutes would leave on
this machine**: the seconds left after everything but the training notebook, at the training
notebook's own steps per second (its set-up and figures counted against it, so the estimate errs
short). The reproducibility appendix shows every machine measured (the latest per CPU and
profile).

    python benchmarks/report_time.py                    # demo profile, ~15 min on 2 cores
    python benchmarks/report_time.py --profile smoke    # seconds: the code path, for a test
    python benchmarks/report_time.py --keep /tmp/rt     # keep the clone (its book, its data)

Run it alone on the machine: another job on the same cores slows every step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "report_time.json"

#: The budget of `make report` after installation (seconds).
BUDGET_SECONDS = 600.0

#: The report target's commands after installation, as the Makefile runs them ({profile} filled).
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("demo cohort", ("demo-data", "--out", "data/raw/demo")),
    ("pools cohort", ("demo-data", "--pools", "8,6,2,6,2", "--out", "data/raw/demo-pools")),
    ("notebooks", ("run", "--profile", "{profile}")),
    ("book", ("book",)),
)

#: The notebook whose time is the training's.
TRAIN_NOTEBOOK = "03_train"


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(dest: Path) -> str:
    """``git clone`` of this repository's HEAD into ``dest``; returns the commit."""
    if _git("status", "--porcelain", "--untracked-files=no"):
        print("note: uncommitted changes are not measured (the clone has the last commit)")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    return _git("rev-parse", "HEAD", cwd=dest)


def run_phases(where: Path, profile: str) -> dict[str, float]:
    """Run :data:`PHASES` in ``where`` with this interpreter and the clone's package first on
    the path; the wall seconds of each. A failing command stops the measurement with its output."""
    env = {**os.environ, "PYTHONPATH": str(where), "NEURODIFF_ROOT": str(where)}
    seconds: dict[str, float] = {}
    for name, args in PHASES:
        cmd = [sys.executable, "-m", "neurodiff", *(a.format(profile=profile) for a in args)]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
        seconds[name] = round(time.perf_counter() - start, 1)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"`{' '.join(cmd[1:])}` failed in {where} (exit {done.returncode})")
        print(f"{name:14s} {seconds[name]:8.1f} s", flush=True)
    return seconds


_BUDGET_SNIPPET = """
import json, sys
from neurodiff import config
from neurodiff.config import ModelConfig
from neurodiff.model import estimate_train_flops
params = config.resolve(sys.argv[1], {})
per_step = estimate_train_flops(params.stage(ModelConfig), params.batch_size) * params.grad_accum
out = {"steps": params.train_steps, "batch_size": params.batch_size,
       "tflop_per_step": per_step / 1e12, "tflop": per_step * params.train_steps / 1e12,
       "params_hash": params.hash()}
from neurodiff.artifacts import load_metrics_json
metrics = load_metrics_json(params)  # None when the run computed none
if metrics:
    out["metrics"] = {k: {"value": m["value"], "verdict": m["verdict"],
                          "baseline_ci": m["baseline_ci"]}
                      for k, m in metrics["metrics"].items()}
print(json.dumps(out))
"""


def training_budget(where: Path, profile: str) -> dict[str, Any]:
    """The profile's training, as the clone's code defines it: steps, per-step batch, FLOPs
    (forward + backward) per step and in all, the parameters' hash, and (when the run computed
    them) chapter 5's metrics of the controls with their verdicts."""
    env = {**os.environ, "PYTHONPATH": str(where), "NEURODIFF_ROOT": str(where)}
    done = subprocess.run(
        [sys.executable, "-c", _BUDGET_SNIPPET, profile],
        cwd=where,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def ten_minutes(entry: dict[str, Any]) -> dict[str, Any]:
    """What :data:`BUDGET_SECONDS` would leave for training on the machine of ``entry``."""
    train_s = entry["notebooks"][TRAIN_NOTEBOOK]["seconds"]
    rest = entry["total_seconds"] - train_s
    steps_per_s = entry["training"]["steps"] / train_s
    left = max(0.0, BUDGET_SECONDS - rest)
    steps = int(left * steps_per_s)
    return {
        "seconds_besides_training": round(rest, 1),
        "seconds_left_for_training": round(left, 1),
        "steps_per_second": round(steps_per_s, 2),
        "steps": steps,
        "tflop": round(steps * entry["training"]["tflop_per_step"], 1),
    }


def measure(profile: str, keep: Path | None) -> dict[str, Any]:
    """Clone, run, and return the entry of the results file."""
    sys.path.insert(0, str(ROOT))
    from neurodiff.device import cpu_description

    tmp = None
    if keep is None:
        tmp = tempfile.mkdtemp(prefix="report-time-")
        where = Path(tmp) / "neurodiff"
    else:
        where = keep
        if where.exists():
            raise SystemExit(f"--keep {where}: the folder exists; name a new one")
    try:
        commit = clone(where)
        phases = run_phases(where, profile)
        run_json = where / "book" / "executed" / "run.json"
        record = json.loads(run_json.read_text()) if run_json.is_file() else {"notebooks": {}}
        entry = {
            "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": commit,
            "profile": profile,
            "cpu": cpu_description(),
            "cpus_available": _cpus_available(),
            "torch_threads": _torch_threads(),
            "phases": phases,
            "notebooks": record["notebooks"],
            "total_seconds": round(sum(phases.values()), 1),
            "training": training_budget(where, profile),
        }
        if "metrics" in entry["training"]:
            entry["metrics"] = entry["training"].pop("metrics")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    entry["within_budget"] = entry["total_seconds"] <= BUDGET_SECONDS
    if TRAIN_NOTEBOOK in entry["notebooks"]:
        entry["ten_minutes"] = ten_minutes(entry)
    return entry


def _cpus_available() -> int:
    """The CPUs this process may run on (fewer than the machine's under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", type=Path, default=None, help="clone here and keep it")
    args = ap.parse_args(argv)
    entry = measure(args.profile, args.keep)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    runs = [*old.get("runs", []), entry]
    sys.path.insert(0, str(ROOT))
    from neurodiff.io import atomic_write_json

    atomic_write_json(
        args.out,
        {
            "about": "make report after installation, timed by benchmarks/report_time.py",
            "budget_seconds": BUDGET_SECONDS,
            "runs": runs,
        },
    )
    m, s = divmod(entry["total_seconds"], 60)
    print(f"total {int(m)} min {s:.0f} s ({entry['cpu']['model']}); wrote {args.out}")
    if "ten_minutes" in entry:
        t = entry["ten_minutes"]
        print(
            f"10 minutes would leave {t['seconds_left_for_training']:.0f} s for training here: "
            f"{t['steps']} steps ({t['tflop']:.1f} TFLOP) against the profile's "
            f"{entry['training']['steps']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
