"""The ``neurodiff`` command line: one subcommand per pipeline stage, plus the runner and the book.

Errors from bad input (:class:`~neurodiff.errors.NeurodiffError`) are printed as one clear message
without a Python traceback, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, config, registry
from .config import DEMO_COHORT, DEMO_POOLS, IXI_DIR, ConfigError
from .errors import CohortError, NeurodiffError

if TYPE_CHECKING:
    import pandas as pd

    from .config import Params


def stage_commands() -> dict[str, registry.Stage]:
    """The stages with a subcommand of their own (those that write run folders), by name."""
    return {s.name: s for s in registry.keyed_stages()}


def _add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        default="demo",
        help="profile name (smoke, demo, paper, course) or path to a YAML file",
    )
    p.add_argument(
        "-p",
        "--param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter (repeatable)",
    )


def _add_run_folder_commands(sub) -> None:
    """``neurodiff runs`` and ``neurodiff clean``: the run folders of a profile."""
    p = sub.add_parser(
        "runs", help="list the runs of a profile: their differing parameters and key metrics"
    )
    _add_profile_args(p)

    p = sub.add_parser(
        "clean",
        help="delete run folders of a profile: files of an older layout and runs whose upstream "
        "run is gone, and (with an option) more",
    )
    _add_profile_args(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="KEY",
        help="also this run (key or stage/key) and every run made from it (repeatable)",
    )
    what.add_argument(
        "--keep-current",
        action="store_true",
        help="also every run except those of the parameters given (--profile, -p)",
    )
    what.add_argument("--incomplete", action="store_true", help="also the runs that did not finish")
    what.add_argument("--all", action="store_true", help="every run of the profile")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurodiff", description="Augmenting scarce neuroimaging data with a diffusion model."
    )
    parser.add_argument("--version", action="version", version=f"neurodiff {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-data", help="write the simulated multi-site BIDS cohort")
    p.add_argument(
        "--out", default=None, type=Path, help=f"default {DEMO_COHORT} ({DEMO_POOLS} with --pools)"
    )
    p.add_argument("--subjects", type=int, default=48, help="healthy subjects")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--patients",
        type=int,
        default=24,
        help="extra subjects with a bvFTD-like atrophy pattern (a 'group' column; 0 = none)",
    )
    p.add_argument(
        "--new-subjects",
        action="store_true",
        help="other random streams, subjects named sub-new*: new subjects of the same "
        "distribution, in no cohort of the same seed",
    )

    p.add_argument(
        "--pools",
        default=None,
        metavar="PRETRAIN,TRAIN,VALIDATION,TEST,OOD",
        help="write chapter 6's pools instead (subjects per class of each pool; PRETRAIN: "
        "healthy controls only; OOD: site D, which no other pool has), with a 'pool' column, "
        f"e.g. 24,12,6,24,6 ({DEMO_POOLS}); --subjects, --patients and --sites do not apply",
    )
    p.add_argument(
        "--resolution", type=int, default=1, choices=(1, 2), help="template resolution in mm"
    )

    p = sub.add_parser("cohort", help="list the scans of a cohort (BIDS, IXI-style or flat folder)")
    p.add_argument("path", type=Path)
    p.add_argument("--table", type=Path, default=None, help="CSV/TSV of demographics")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="continue with the good files and list the skipped ones",
    )
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")

    p = sub.add_parser("fetch-ixi", help="download the IXI T1 archive and demographics")
    p.add_argument("--out", default=IXI_DIR, type=Path)
    p.add_argument("--url", default=None, help="base URL (default: the IXI site)")
    p.add_argument("--timeout", type=float, default=20.0, help="network timeout in seconds")

    p = sub.add_parser("params", help="list every parameter with its value in a profile")
    _add_profile_args(p)
    p.add_argument("--json", action="store_true", help="print the resolved values as JSON")

    p = sub.add_parser("run", help="execute the notebooks with papermill into book/executed/")
    _add_profile_args(p)
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NOTEBOOK",
        help="run only this notebook, e.g. 01_explore (repeatable)",
    )
    p.add_argument("--output-dir", type=Path, default=None, help="default: book/executed")

    _add_run_folder_commands(sub)

    _add_book_commands(sub)

    for name, spec in stage_commands().items():
        p = sub.add_parser(name, help=spec.help)
        _add_profile_args(p)
        if name == registry.SAMPLE.name:
            _add_weights_args(p)
    return parser


def _add_book_commands(sub) -> None:
    """``neurodiff book`` and ``neurodiff check-links``: the built book."""
    p = sub.add_parser("book", help="build the Jupyter Book into _build/html")
    p.add_argument("--strict", action="store_true", help="Sphinx warnings are errors")

    p = sub.add_parser(
        "check-links",
        help="check every internal link and anchor of the built book (external links: "
        "jupyter-book build --builder linkcheck)",
    )
    p.add_argument("html", nargs="?", default=Path("_build/html"), type=Path)


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    """``neurodiff sample --weights FILE``: sample a downloaded generator, without training."""
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="sample this weights file (e.g. the book's neurodiff-generator.safetensors) instead "
        "of the profile's trained run; its recorded sampler is used unless -p sampler=..., "
        "steps, eta, churn or guidance_scale is given",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --weights: the folder of the synthetic cohort (default <FILE name>-samples)",
    )


def _print_problems(exc: CohortError) -> None:
    for path, problem in exc.problems:
        print(f"{path}: {problem}", file=sys.stderr)


def _demo_data(args: argparse.Namespace) -> int:
    from .demo_data import make_demo_cohort, make_pools_cohort

    if args.pools is not None:
        try:
            sizes = tuple(int(v) for v in args.pools.split(","))
        except ValueError:
            raise ConfigError(
                f"--pools must be five integers separated by commas; got {args.pools!r}",
                parameter="pools",
            ) from None
        out = make_pools_cohort(
            args.out or Path(DEMO_POOLS),
            sizes,
            seed=args.seed,
            resolution=args.resolution,
            progress=sys.stderr.isatty(),
        )
        print(f"wrote simulated pools to {out}")
        return 0
    out = make_demo_cohort(
        args.out or Path(DEMO_COHORT),
        subjects=args.subjects,
        sites=args.sites,
        seed=args.seed,
        patients=args.patients,
        new_subjects=args.new_subjects,
        resolution=args.resolution,
        progress=sys.stderr.isatty(),  # a bar on a terminal, not hundreds of lines in a log
    )
    print(f"wrote simulated cohort to {out}")
    return 0


def _cohort(args: argparse.Namespace) -> int:
    import pandas as pd

    from .cohort import load_cohort

    table = load_cohort(args.path, table=args.table, skip_bad=args.skip_bad)
    with pd.option_context(
        "display.max_rows", None, "display.width", 200, "display.max_columns", None
    ):
        print(table.drop(columns=["path"], errors="ignore").to_string(index=False))
    skipped = table.attrs.get("skipped", [])
    for path, problem in skipped:
        print(f"skipped {path}: {problem}", file=sys.stderr)
    print(
        f"{len(table)} scans, {table['site'].nunique()} sites"
        + (f", {len(skipped)} skipped" if skipped else ""),
        file=sys.stderr,
    )
    if args.csv:
        from .io import atomic_path

        with atomic_path(args.csv) as tmp:
            table.to_csv(tmp, index=False)
    return 0


def _fetch_ixi(args: argparse.Namespace) -> int:
    from .cohort import fetch_ixi

    kwargs = {"timeout": args.timeout}
    if args.url:
        kwargs["base_url"] = args.url
    out = fetch_ixi(args.out, **kwargs)
    print(f"IXI T1 scans and demographics in {out}")
    return 0


def _params(args: argparse.Namespace) -> int:
    from . import config

    params = config.resolve(args.profile, args.overrides)
    if args.json:
        print(json.dumps(params.to_dict(), indent=2))
        return 0
    for name, spec in config.parameter_specs().items():
        value = params[name]
        flag = "" if value == spec.default else "  *"
        print(f"{name:24s} {json.dumps(value):28s} {spec.help} [{', '.join(spec.stages)}]{flag}")
    return 0


def _run_notebooks(args: argparse.Namespace) -> int:
    from .runner import run_notebooks

    run_notebooks(args.profile, args.overrides, only=args.only or None, output_dir=args.output_dir)
    return 0


#: The metrics ``neurodiff runs`` shows per metrics run (value and real-vs-real baseline).
RUN_METRICS = ("fid", "kid", "mmd_rbf", "precision", "recall", "coverage")


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _metric_cell(m: dict | None) -> str:
    if not m:
        return ""
    verdict = {"inside": " in", "outside": " out"}.get(m.get("verdict", ""), "")
    return f"{m['value']:.3g} ({m['baseline']:.3g}){verdict}"


def runs_table(profile_dir: str | Path, current: Params | None = None) -> pd.DataFrame:
    """One row per run folder of a profile: stage, key, the run it was made from, state, the
    parameters in which the runs of that stage differ, and (metrics runs) the key metrics as
    ``value (real-vs-real median) in|out`` (inside or outside the real-vs-real range).
    ``current`` marks the runs of those parameters with ``*``.
    ``table.attrs["strays"]`` lists the entries that are not run folders (an older layout).
    """
    import pandas as pd

    from .artifacts import load_metrics_json
    from .runs import current_labels, list_runs

    runs, strays = list_runs(profile_dir)
    mine = current_labels(current) if current is not None else set()
    rows = []
    for stage in {r.stage: None for r in runs}:
        group = [r for r in runs if r.stage == stage]
        names = sorted({k for r in group for k in r.params})
        varying = [k for k in names if len({json.dumps(r.params.get(k)) for r in group}) > 1]
        for r in group:
            row = {
                "stage": stage,
                "run": r.key + (" *" if r.label in mine else ""),
                "from": " ".join(r.upstream),
                "state": "complete" if r.complete else "incomplete",
                "updated": r.updated.replace("T", " ")[:16],
                "differs": " ".join(f"{k}={_show(r.params.get(k))}" for k in varying),
            }
            if stage == registry.METRICS.folder:
                try:
                    found = load_metrics_json(r.path) or {"metrics": {}}
                except NeurodiffError:  # of an older format: listed without metrics
                    found = {"metrics": {}}
                for name in RUN_METRICS:
                    m = found["metrics"].get(name)
                    row[name] = _metric_cell(m)
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["strays"] = strays
    return table


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import config

    params = config.resolve(args.profile, args.overrides)
    folder = params.profile_dir()
    table = runs_table(folder, current=params)
    strays = table.attrs["strays"]
    if strays:
        print(
            f"{len(strays)} entries under {folder} are not run folders (an older layout?): "
            "`neurodiff clean` removes them"
        )
    if table.empty:
        print(f"no runs of profile {params.profile!r} in {folder} yet")
        return 0
    with pd.option_context(
        "display.max_rows", None, "display.width", 250, "display.max_columns", None
    ):
        print(table.fillna("").to_string(index=False))
    print(
        f"\n{len(table)} run folders in {folder}; * = the runs of the parameters given; "
        f"metrics: value (real-vs-real baseline) for {', '.join(RUN_METRICS)}"
    )
    return 0


def _clean(args: argparse.Namespace) -> int:
    from . import config
    from .runs import remove_runs

    params = config.resolve(args.profile, args.overrides)
    folder = params.profile_dir()
    try:
        doomed = remove_runs(
            folder,
            keep=params if args.keep_current else None,
            keys=args.run,
            incomplete=args.incomplete,
            everything=args.all,
            dry_run=args.dry_run,
        )
    except ValueError as exc:
        raise config.ConfigError(str(exc), parameter="run") from None
    verb = "would delete" if args.dry_run else "deleted"
    for path in doomed:
        print(f"{verb} {path}")
    print(f"{verb} {len(doomed)} entries under {folder}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from .runner import build_book

    out = build_book(strict=args.strict)
    print(f"book built: {out}")
    return 0


def _check_links(args: argparse.Namespace) -> int:
    from .links import check_links

    if not args.html.is_dir():
        raise NeurodiffError(
            f"no built book in {str(args.html)!r}; build it first (`neurodiff book`)",
            path=args.html,
        )
    report = check_links(args.html)
    print(report)
    return 1 if report.broken else 0


def _sample_weights(args: argparse.Namespace, params: Params) -> int:
    from .sample import run_from_weights

    given = [config.parse_override(o)[0] for o in args.overrides]
    print(run_from_weights(params, args.weights, args.out, given=given))
    return 0


def _stage(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `neurodiff params` and `--help` stay instant.
    from .dispatch import run_stage
    from .notebook import prepare_cohorts

    params = config.resolve(args.profile, args.overrides)
    if getattr(args, "weights", None) is not None:
        return _sample_weights(args, params)
    if getattr(args, "out", None) is not None:
        raise ConfigError("--out goes with --weights FILE", parameter="out")
    prepare_cohorts(params, args.command)  # further cohorts it reads, preprocessed like the cohort
    result = run_stage(args.command, params)
    if result is not None:
        print(result)
    return 0


_COMMANDS = {
    "demo-data": _demo_data,
    "cohort": _cohort,
    "fetch-ixi": _fetch_ixi,
    "params": _params,
    "run": _run_notebooks,
    "runs": _runs,
    "clean": _clean,
    "book": _book,
    "check-links": _check_links,
}


def _run(args: argparse.Namespace) -> int:
    """Dispatch a parsed command line to its handler."""
    if args.command in stage_commands():
        return _stage(args)
    return _COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurodiff`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except CohortError as exc:
        _print_problems(exc)
        print(f"neurodiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except NeurodiffError as exc:
        print(f"neurodiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurodiff {args.command}: interrupted", file=sys.stderr)
        return 130
