"""Preprocessing speed: seconds per subject for each step, the wall time, and the cache.

1. A cold build of the demo cohort (48 subjects, 3 sites) with a profile (default ``demo``: 2D
   64^2 slices, rigid registration). Goal: <= 3 min on 2 cores. Prints the seconds per subject
   spent in each step (summed over the worker processes), so the slow one is visible, and the CPU
   time of this process and its workers next to the wall time (on a shared machine the wall time
   also counts the others' load).
2. The same call again, which must reuse the cache (same parameters, same source checksums).

The last line is the ratio cold / cached (goal >= 10x).

    python benchmarks/preprocess_steps.py [--cohort data/raw/demo] [--profile demo]
        [--workers N] [-p key=value ...]

Without ``--cohort`` it uses ``data/raw/demo`` if present, else writes the demo cohort to a
temporary folder first (about a minute, not counted). Outputs always go to a temporary
``derived_dir``. Toy size (``tests/test_benchmarks.py``, seconds): a small cohort and the smoke
profile, ``--cohort <12 subjects> --profile smoke --workers 1``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from neurodiff import config, preprocess


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", type=Path, default=None)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="neurodiff-bench-") as tmp:
        cohort = args.cohort or config.project_root() / config.DEMO_COHORT
        if not (cohort / "participants.tsv").is_file():
            from neurodiff.notebook import write_demo_cohort

            print(f"writing the demo cohort to {tmp}/demo (not timed) ...", file=sys.stderr)
            cohort = write_demo_cohort(Path(tmp) / "demo")
        overrides = dict(config.parse_override(o) for o in args.overrides)
        params = config.resolve(
            args.profile,
            {**overrides, "cohort": str(cohort), "derived_dir": str(Path(tmp) / "derived")},
        )
        cfg = params.stage(config.PreprocessConfig)

        cpu0, t0 = cpu_seconds(), time.perf_counter()
        cold = preprocess.run(params, workers=args.workers)
        cold_s, cold_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        t0 = time.perf_counter()
        warm = preprocess.run(params, workers=args.workers)
        warm_s = time.perf_counter() - t0
        if not warm.cached:
            raise SystemExit("the second run did not reuse the cache")

        timing = preprocess.load_manifest(params)["timing"]
        per = timing["seconds_per_subject"]
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:
            cpus = os.cpu_count() or 1
        print(
            f"profile {params.profile}: {cold.n_subjects} subjects from {cohort}, "
            f"register={cfg.register}, {cfg.spatial_dims}D at {cfg.image_size}, "
            f"{cfg.target_spacing:g} mm; {timing['workers']} worker(s) on {cpus} CPU(s); "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'step':<10} {'s/subject':>10} {'share':>7}")
        total = sum(per.values())
        for step in preprocess.STEPS:
            print(f"{step:<10} {per[step]:>10.3f} {per[step] / total:>7.1%}")
        print(f"{'all steps':<10} {total:>10.3f}")
        print(
            f"cold build: {cold_s:.1f} s wall, {cold_cpu:.1f} s CPU "
            f"({cold_s / cold.n_subjects:.2f} s wall per subject); goal <= 180 s on 2 cores"
        )
        print(f"cached: {warm_s * 1000:.1f} ms")
        print(f"cache speed-up (cold / cached): {cold_s / warm_s:.0f}x")


if __name__ == "__main__":
    main()
