"""Chapter 6's full experiment: leak-free generators per draw, a large test pool, tuned arms.

The same code as the live chapter (``neurodiff.augment``) at full size: simulated pools (a
healthy pretraining cohort, a training pool of 100 subjects per class, a validation pool, a test
pool of 250 per class and 40 per class at a site no other pool has), n = 2, 4, 8 and 16 real
subjects per class, one generator per draw fine-tuned on exactly that draw, every arm with two
learners tuned on the validation pool. The draws are spent where the primary endpoint needs them
(``--draws``: most at n = 4).

It is **resumable**: every finished draw is kept in the run folder (``work/``), so a sitting that
is stopped -- by ``--hours`` or by a kill -- continues where it stopped when the same command runs
again. After each sitting it writes the results file (default
``benchmarks/results/augment_fair.json``, committed; chapter 6 reads it) with the CPU model, the
command, the pool subject lists, every draw's record, all arms and endpoints, whether the run is
complete and, when the primary endpoint's interval is wider than +-0.05, how many draws would
narrow it enough (its spread split into the draws' share, which more draws shrink, and the test
subjects', which they do not; none when the test subjects alone are too wide).

    python benchmarks/augment_fair.py                     # all sittings: run until complete
    python benchmarks/augment_fair.py --hours 1.5         # one sitting of at most 1.5 h

The same code at toy size, in seconds (``tests/test_benchmarks.py``)::

    python benchmarks/augment_fair.py --smoke --pools-dir <folder> -p derived_dir=<folder> \
        --out /tmp/augment_fair.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from recipes import cpu_model  # same folder

from neurodiff import augment, config, registry, runs
from neurodiff.errors import ConfigError, DataError
from neurodiff.io import atomic_write_json
from neurodiff.notebook import prepare_cohorts, write_demo_cohort

#: The committed results file (chapter 6 reads it: parameter ``augment_results``).
RESULTS = Path(__file__).parent / "results" / "augment_fair.json"
#: The pools (per class; pretrain: healthy controls) and the experiment at full size.
POOLS = "100,100,25,250,40"
FULL = {
    "augment_n": [2, 4, 8, 16],
    "augment_draws": [6, 24, 6, 6],
    "primary_n": 4,
    "augment_synthetic": [16, 32, 64],
    "augment_real_k": [1, 2, 4, 8, 16],
    "generator_channels": [16, 32, 64],
    "pretrain_steps": 1500,
    "finetune_steps": 150,
    "pool_finetune_steps": 600,
    "cnn_steps": 240,
    "augment_bootstrap": 1000,
}
#: The toy size of the tests.
SMOKE_POOLS = "4,4,2,3,2"
#: The acceptance's half-width of the primary endpoint's 95 % interval.
TARGET_HALF_WIDTH = 0.05

log = logging.getLogger("augment_fair")


def _params(args: argparse.Namespace, pools_dir: Path) -> config.Params:
    base = {} if args.smoke else {k: v for k, v in FULL.items()}
    overrides = {**base, "pools_cohort": str(pools_dir)}
    return config.resolve(
        "smoke" if args.smoke else "demo",
        [f"{k}={json.dumps(v)}" for k, v in overrides.items()] + list(args.param),
    )


def _check_sizes(folder: Path, sizes: str) -> None:
    """``--pools`` must match the simulated pools already in ``folder``."""
    try:
        desc = json.loads((folder / "dataset_description.json").read_text())
        have = desc["SimulationParameters"]["pools"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(
            f"--pools {sizes}: {folder} exists and is not a simulated pools cohort; give another "
            "--pools-dir, or leave --pools out to use that folder as it is",
            parameter="pools",
        ) from None
    if ",".join(str(v) for v in have.values()) != sizes:
        raise ConfigError(
            f"--pools {sizes}: {folder} holds pools of sizes {list(have.values())}; delete it or "
            "give another --pools-dir",
            parameter="pools",
        )


def write_results(params: config.Params, out: Path, command: str, sitting: dict) -> dict:
    """Summarise the draws finished so far and write ``out`` (sittings accumulate)."""
    key = runs.stage_key(params, registry.AUGMENT)  # the draws' count is not part of it
    old = json.loads(out.read_text()) if out.is_file() else {}
    sittings = old.get("sittings", []) if old.get("run_key") == key else []
    summary = augment.summarise(params)
    info = summary.pop("info")
    primary = summary.pop("primary")
    acfg = params.stage(config.AugmentConfig)
    planned = {str(n): acfg.draws_of(n) for n in acfg.augment_n}
    result = {
        "format": info["format"],
        "run_key": key,
        "cpu": cpu_model(),
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "complete": info["draws"] == planned,
        "draws_planned": planned,
        "sittings": [*sittings, sitting],
        "parameters": params.to_dict(),
        "target_half_width": TARGET_HALF_WIDTH,
        "draws_needed_for_target": primary["draws_for_half_width_0.05"],
        "info": info,
        "tables": {k: json.loads(v.to_json(orient="records")) for k, v in summary.items()},
    }
    atomic_write_json(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pools", default=None, help=f"pool sizes (default {POOLS})")
    ap.add_argument("--pools-dir", type=Path, default=Path("data/raw/augment-fair-pools"))
    ap.add_argument("--hours", type=float, default=None, help="stop starting draws after this")
    ap.add_argument("--smoke", action="store_true", help="toy size (the tests)")
    ap.add_argument("-p", "--param", action="append", default=[], help="name=value override")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    sizes = args.pools or (SMOKE_POOLS if args.smoke else POOLS)
    if not args.pools_dir.is_dir():
        options = ["--pools", sizes] + (["--resolution", "2"] if args.smoke else [])
        write_demo_cohort(args.pools_dir, options)
    elif args.pools:
        _check_sizes(args.pools_dir, args.pools)
    params = _params(args, args.pools_dir)
    prepare_cohorts(params, registry.AUGMENT)  # the pools, preprocessed like the demo cohort
    budget = None if args.hours is None else args.hours * 3600 - (time.perf_counter() - t0)
    result = augment.run(params, budget_seconds=budget)
    command = "python benchmarks/augment_fair.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    sitting = {"seconds": round(time.perf_counter() - t0, 1), "cpu": cpu_model()}
    try:
        written = write_results(params, args.out, command, sitting)
    except DataError as exc:  # fewer than two draws per n so far
        print(f"not summarised yet: {exc}")
        return 0
    p = written["info"]["primary"]
    print(
        f"primary endpoint: {p['gain']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], "
        f"half-width {p['half_width']:.3f} with {p['draws']} draws "
        f"({'complete' if result is not None else 'partial'}; "
        f"draws at n = {written['info']['primary_n']} for +-{TARGET_HALF_WIDTH}: "
        f"{written['draws_needed_for_target'] or 'more test subjects needed'}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
