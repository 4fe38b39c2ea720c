"""Time every command of the teaching guide on the ``course`` profile, as a class would run them.

    python benchmarks/teaching_guide.py            # writes book/teaching_timings.md

The commands are read from ``book/teaching.md`` (its ``bash`` blocks) and run in order, from a
fresh scratch folder: outputs go to a temporary ``derived_dir`` and executed notebooks to a
temporary folder, so the project's own runs and book are left alone. ``make install`` (once per
machine) and ``make book`` (the book build, seconds) are not timed. The table is written to
``book/teaching_timings.md``, which the guide includes, with the machine and the date.

The whole guide takes about an hour. The same code at toy size, in seconds
(``tests/test_benchmarks.py``): ``--profile smoke`` runs every command on the smoke profile in
place of ``course`` (as ``tests/test_teaching.py`` does), ``--select REGEX`` times only the
commands matching it (the untimed ``make`` lines stay in the table), ``-p key=value`` is passed to
every ``neurodiff`` command but ``demo-data``, and ``--out`` writes the table elsewhere::

    python benchmarks/teaching_guide.py --profile smoke --select "neurodiff runs" --out /tmp/t.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "book" / "teaching.md"
OUT = ROOT / "book" / "teaching_timings.md"


def guide_commands(path: Path = GUIDE) -> list[str]:
    """Every command line of the guide's ``bash`` blocks, in order."""
    text = path.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(line)
    return commands


def _localise(
    command: str, scratch: Path, profile: str | None = None, overrides: tuple[str, ...] = ()
) -> list[str] | None:
    """The command as run here (outputs in ``scratch``; on ``profile`` in place of the guide's,
    with ``-p`` ``overrides``), or None for an untimed one."""
    argv = shlex.split(command)
    if argv[0] == "make":
        return None
    argv[0] = str(Path(sys.executable).with_name("neurodiff"))
    if argv[1] == "demo-data":
        return [*argv, "--out", str(scratch / "demo")]
    if profile and "--profile" in argv:
        argv[argv.index("--profile") + 1] = profile
    for o in overrides:
        argv += ["-p", o]
    argv += ["-p", f"derived_dir={scratch / 'derived'}"]
    if argv[1] == "run":
        argv += ["--output-dir", str(scratch / "executed")]
    return argv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guide", type=Path, default=GUIDE, help="the guide whose commands are run")
    ap.add_argument("--out", type=Path, default=OUT, help="where the table goes")
    ap.add_argument("--profile", default=None, help="run on this profile in place of the guide's")
    ap.add_argument("--select", default=None, help="time only the commands matching this regex")
    ap.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="neurodiff-course-") as tmp:
        scratch = Path(tmp)
        for command in guide_commands(args.guide):
            run = _localise(command, scratch, args.profile, tuple(args.overrides))
            if run is None:
                rows.append((command, None))
                continue
            if args.select and not re.search(args.select, command):
                continue
            if args.profile:  # the table shows what ran
                command = re.sub(r"(--profile )\S+", rf"\g<1>{args.profile}", command)
            print(f"$ {command}", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            print(f"  {seconds:.0f} s", flush=True)
            rows.append((command, seconds))
    when = _dt.date.today().isoformat()
    lines = [
        f"Measured on {when} by `python benchmarks/teaching_guide.py` on {os.cpu_count()} CPU "
        f"cores ({platform.machine()}), no GPU, every command in the order of this guide, from "
        "nothing computed."
        + (f" On the {args.profile} profile." if args.profile else "")
        + (f" Only the commands matching `{args.select}`." if args.select else ""),
        "",
        "| command | wall time |",
        "|---|---:|",
    ]
    for command, seconds in rows:
        shown = command.replace(".venv/bin/", "")
        took = "not timed" if seconds is None else f"{seconds / 60:.1f} min"
        lines.append(f"| `{shown}` | {took} |")
    total = sum(s for _, s in rows if s is not None)
    lines += [f"| **total** | **{total / 60:.1f} min** |", ""]
    tmp_out = args.out.with_suffix(".md.tmp")
    tmp_out.write_text("\n".join(lines))
    tmp_out.replace(args.out)
    out = args.out.resolve()
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
