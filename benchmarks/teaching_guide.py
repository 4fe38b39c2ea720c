"""Time every command of the teaching guide on the ``course`` profile, as a class would run them.

    python benchmarks/teaching_guide.py            # writes book/teaching_timings.md

The commands are read from ``book/teaching.md`` (its ``bash`` blocks) and run in order, from a
fresh scratch folder: outputs go to a temporary ``derived_dir`` and executed notebooks to a
temporary folder, so the project's own runs and book are left alone. ``make install`` (once per
machine) and ``make book`` (the book build, seconds) are not timed. The table is written to
``book/teaching_timings.md``, which the guide includes, with the machine and the date.
"""

from __future__ import annotations

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


def _localise(command: str, scratch: Path) -> list[str] | None:
    """The command as run here (outputs in ``scratch``), or None for an untimed one."""
    argv = shlex.split(command)
    if argv[0] == "make":
        return None
    argv[0] = str(Path(sys.executable).with_name("neurodiff"))
    if argv[1] == "demo-data":
        return [*argv, "--out", str(scratch / "demo")]
    argv += ["-p", f"derived_dir={scratch / 'derived'}"]
    if argv[1] == "run":
        argv += ["--output-dir", str(scratch / "executed")]
    return argv


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="neurodiff-course-") as tmp:
        scratch = Path(tmp)
        for command in guide_commands():
            argv = _localise(command, scratch)
            if argv is None:
                rows.append((command, None))
                continue
            print(f"$ {command}", flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
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
        "nothing computed.",
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
    tmp_out = OUT.with_suffix(".md.tmp")
    tmp_out.write_text("\n".join(lines))
    tmp_out.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
