"""How far does more CPU time take the demo's recipe? One run of a longer profile, judged.

Runs preprocessing (cached), training, sampling and the metrics of a profile (default
``longer``: the demo with three times its training steps) and writes the result in the recipe
study's format, so that chapter 3 shows it beside the study (``train.find_recipe_study("longer")``):
steps, training seconds, images/s, sampling seconds and every metric with its real-vs-real range.

    python benchmarks/longer_run.py                      # profile longer -> results/longer.json
    python benchmarks/longer_run.py --profile demo -p train_steps=3858 --out /tmp/2x.json

The default takes about 15 min on a 2-core CPU. The same code at toy size, in seconds
(``tests/test_benchmarks.py``): the smoke profile on a small cohort, written elsewhere::

    python benchmarks/longer_run.py --profile smoke -p cohort=<folder> -p derived_dir=<folder> \
        --out /tmp/longer.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from recipes import cpu_model  # same folder

from neurodiff import config, metrics, preprocess, sample, train
from neurodiff.io import atomic_write_json
from neurodiff.notebook import prepare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="longer")
    ap.add_argument("-p", "--param", action="append", default=[], help="name=value override")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "longer.json")
    args = ap.parse_args(argv)
    params = config.resolve(args.profile, args.param)
    prepare(params, "03")  # the demo cohort and the preprocessing, if missing
    preprocess.run(params)
    t0 = time.perf_counter()
    trained = train.run(params)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    sample.run(params)
    sample_seconds = time.perf_counter() - t0
    result = metrics.run(params)
    batch = params.batch_size * params.grad_accum
    name = f"{args.profile}: {train.describe_recipe(params)}"
    steps = config.check_sampler(  # ddpm always takes all T steps
        params.process, params.prediction_type, params.timesteps, params.sampler, params.steps
    )
    atomic_write_json(
        args.out,
        {
            "cpu": cpu_model(),
            "budget_seconds": train_seconds,
            "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/longer_run.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "recipes": {
                name: {
                    "description": f"{params.train_steps} steps of the demo's recipe",
                    "steps": params.train_steps,
                    "train_seconds": train_seconds,
                    "images_per_second": trained.step * batch / max(train_seconds, 1e-9),
                    "image_size": params.image_size,
                    "sampler": f"{params.sampler}-{steps}",
                    "sample_seconds": sample_seconds,
                    "metrics": {k: v.to_dict() for k, v in result.metrics.items()},
                }
            },
        },
    )
    print(result.verdict_line())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
