"""The record of a ``neurodiff run``: what ran, where, with which versions.

``run.json`` (neurodiff's version, git commit, parameters and their hash, package versions, the
lock file's hash and whether the installed versions match it, device, wall time and peak memory
per notebook), and the pages generated from it: the reproducibility appendix and the results
summary of the Discussion.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__, augment, config, registry, studies
from .artifacts import load_metrics_json, metrics_dir
from .errors import DataError
from .io import atomic_write_json, atomic_write_text, read_results_json

__all__ = ["LOCK_FILE", "lock_status", "reproducibility_markdown", "write_record"]

LOCK_FILE = "requirements.lock"

#: Packages whose versions go into the reproducibility record.
_PACKAGES = (
    "neurodiff",
    "torch",
    "monai",
    "numpy",
    "scipy",
    "nibabel",
    "nilearn",
    "dipy",
    "torchmetrics",
    "pandas",
    "matplotlib",
    "papermill",
    "jupyter-book",
)


def lock_status(root: Path) -> dict[str, Any]:
    """The lock file's SHA-256 and the installed packages whose versions differ from it."""
    path = root / LOCK_FILE
    if not path.is_file():
        return {"file": LOCK_FILE, "sha256": None, "differences": []}
    differences = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, pinned = line.partition("==")
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found.split("+")[0] != pinned.split("+")[0]:
            differences.append(f"{name} {found} (lock: {pinned})")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"file": LOCK_FILE, "sha256": digest, "differences": differences}


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _device_description() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "unknown"
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    from .device import cpu_description

    cpu = cpu_description()
    flags = ", ".join(cpu["flags"]) or "none of the tracked flags"
    return f"CPU: {cpu['model']}, {cpu['cores']} cores (instruction sets: {flags})"


def write_record(params: config.Params, runs: Sequence[Any], out_dir: Path, root: Path) -> Path:
    """Write ``run.json``, ``reproducibility.md`` and ``results.md`` of a run into ``out_dir``.

    ``runs`` are the executed notebooks (``name``, ``seconds``, ``peak_rss_mb``); the timings of
    notebooks not run this time are kept from the previous record of the same parameters.
    """
    previous: dict[str, Any] = {}
    record_path = out_dir / "run.json"
    if record_path.is_file():
        try:
            previous = json.loads(record_path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
    notebooks = (
        dict(previous.get("notebooks", {})) if previous.get("params_hash") == params.hash() else {}
    )
    for nb in runs:
        notebooks[nb.name] = {"seconds": round(nb.seconds, 2), "peak_rss_mb": nb.peak_rss_mb}
    record = {
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(root),
        "neurodiff_version": __version__,
        "profile": params.profile,
        "params_hash": params.hash(),
        "params": params.to_dict(),
        "device": _device_description(),
        "platform": platform.platform(),
        "versions": _versions(),
        "lock": lock_status(root),
        "notebooks": notebooks,
        "total_seconds": round(sum(v["seconds"] for v in notebooks.values()), 1),
    }
    atomic_write_json(record_path, record)
    atomic_write_text(out_dir / "reproducibility.md", reproducibility_markdown(record))
    atomic_write_text(out_dir / "results.md", _results_markdown(params))
    atomic_write_text(out_dir / "augment.md", _augment_markdown(params))
    return record_path


def _augment_markdown(params: config.Params) -> str:
    """Chapter 6's answer, which the Discussion includes: the full experiment's, from its
    committed results file, and a line on this run's live version."""
    path = config.project_root() / params["augment_results"]
    try:
        full = augment.from_results_file(path)
    except DataError as exc:
        text = f"*The full experiment's results are not available: {exc}.*"
    else:
        text = (
            augment.answer(full)
            + f"\n\n*From `{params['augment_results']}`. {augment.reading.status_sentence(full)}*"
        )
    live = augment.load(params)  # read back, never recomputed
    reason = augment.cannot_run(params)
    if reason is not None:
        text += f"\n\n*The live version cannot run with these parameters: {reason}.*"
    elif live is None:
        text += (
            "\n\n*The live version has not run with these parameters: run `neurodiff run "
            f"--profile {params.profile}` through `{registry.AUGMENT.notebook}`.*"
        )
    else:
        text += (
            f"\n\n*The live version of profile `{params.profile}` (chapter "
            f"{int(registry.AUGMENT.chapter)}, `{live.out_dir.name}/augment.json`; a few draws, "
            f"illustrative only): {augment.primary_sentence(live)}.*"
        )
    return text + "\n"


def _results_markdown(params: config.Params) -> str:
    """The results summary the Discussion includes, from this profile's ``metrics.json``."""
    metrics = load_metrics_json(params)
    if metrics is None:
        return (
            "*No metrics have been computed for this run yet: run `neurodiff run "
            f"--profile {params.profile}` through `{registry.METRICS.notebook}`.*\n"
        )
    from .metrics import results_markdown

    body = results_markdown(metrics)
    source = f"*From `{metrics_dir(params).name}/metrics.json` of profile `{params.profile}`.*"
    if metrics.get("params_hash") != params.hash():
        source = (
            f"**These metrics were computed with other parameters** (hash "
            f"`{metrics.get('params_hash')}`) than this run (`{params.hash()}`): run "
            f"`neurodiff run --profile {params.profile}` through "
            f"`{registry.METRICS.notebook}` to update them."
        )
    groups = list(params.groups)
    if groups:
        source += (
            f" *The realism metrics compare the group `{groups[0]}` (healthy controls, as the "
            "paper measured healthy subjects); chapter 5 shows each group on its own.*"
        )
    return f"{body}\n{source}\n"


def _lock_line(lock: Mapping[str, Any] | None) -> str:
    if not lock or not lock.get("sha256"):
        return "no `requirements.lock` (installed from version ranges)"
    diff = lock.get("differences") or []
    state = (
        "every package at its locked version"
        if not diff
        else f"{len(diff)} package(s) differ: " + ", ".join(diff[:5]) + (" ..." if diff[5:] else "")
    )
    return f"`{lock['file']}`, SHA-256 `{lock['sha256'][:16]}`: {state}"


def _report_time_markdown() -> list[str]:
    """``make report`` from a fresh clone on each machine measured, from the committed
    ``benchmarks/results/report_time.json`` (the run above is this book's own, perhaps resumed)."""
    lines = [
        "## `make report` on the machines measured",
        "",
        "The times above are this book's run. From a fresh clone, after installation, "
        "`python benchmarks/report_time.py` times what `make report` runs -- the simulated "
        "cohorts, the notebooks, the book -- on the machine it runs on, and states the training "
        "that the 10-minute budget would leave there (the seconds left after everything else, at "
        "that run's training speed):",
        "",
    ]
    path = config.project_root() / studies.REPORT_TIME_FILE
    if not path.is_file():
        return lines + ["(Not measured in this checkout.)", ""]
    try:
        data = read_results_json(path, "report timing", "python benchmarks/report_time.py", None)
        table = studies.report_time_markdown(data)
    except DataError as exc:
        return lines + [f"(The file `{studies.REPORT_TIME_FILE}` cannot be read: {exc}.)", ""]
    return lines + table.splitlines() + [""]


def _machines_markdown() -> list[str]:
    """What changes between machines and what does not, with the seed replicates' spread (the
    yardstick for a difference between machines) when ``benchmarks/results/seeds.json`` is here."""

    lines = [
        "## What changes between machines",
        "",
        "The same commit, parameters and seed give **the same numbers, bit for bit, on the same "
        "kind of machine** (the same CPU model and instruction sets above, the same locked "
        "versions): every random draw comes from a seeded generator, and `metrics.json` of a "
        "smoke and a demo run are compared before a change meant to keep behaviour is merged.",
        "",
        "**On another CPU they do not.** The simulated cohort, the preprocessing, the split, the "
        "subjects of every redraw and the metrics' feature extractor are the same up to the last "
        "bits of floating-point rounding. Training is not: with `precision=auto` it runs under "
        "bf16 autocast on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX tiles) and in "
        "fp32 elsewhere, and bf16 kernels differ between CPUs (AMX tiles and AVX-512 "
        "instructions round and accumulate in different orders). After the first steps the "
        "weights differ, and the synthetic set is *another draw of the same recipe*: its numbers "
        "move like those of another generator seed. Even in fp32 (`precision=fp32`), kernels "
        "of other vector widths (AVX2, AVX-512) round differently, and training amplifies it.",
        "",
        "So a difference between two machines is read against the spread between generator "
        "seeds on one machine, not against zero:",
        "",
    ]
    path = config.project_root() / studies.SEEDS_FILE
    if not path.is_file():
        return lines + [
            "(No seed replicates in this checkout: `python benchmarks/diversity.py`.)",
            "",
        ]
    lines += studies.seed_markdown(studies.load_study(path, "seeds")).splitlines()
    return lines + [""]


def reproducibility_markdown(record: Mapping[str, Any]) -> str:
    """The book's reproducibility appendix, generated from ``run.json``."""
    lines = [
        "# Reproducibility appendix",
        "",
        "This page is generated by `neurodiff run` from the run that produced the chapters of "
        "this book. To reproduce it, check out the commit below, install the locked versions "
        "(`make install` reads `requirements.lock`) and run "
        f"`neurodiff run --profile {record['profile']}` with the parameters listed here.",
        "",
        "| | |",
        "|---|---|",
        f"| finished | {record['finished']} |",
        f"| neurodiff version | {record.get('neurodiff_version', 'not recorded')} |",
        f"| git commit | `{record['git_commit']}` |",
        f"| profile | `{record['profile']}` |",
        f"| parameters hash | `{record['params_hash']}` |",
        f"| device | {record['device']} |",
        f"| lock file | {_lock_line(record.get('lock'))} |",
        f"| platform | {record['platform']} |",
        "",
        "## Time and memory per notebook",
        "",
        "| notebook | wall time (s) | peak memory (MB) |",
        "|---|---:|---:|",
    ]
    for name, v in record["notebooks"].items():
        mem = f"{v['peak_rss_mb']:.0f}" if v.get("peak_rss_mb") is not None else "n/a"
        lines.append(f"| {name} | {v['seconds']:.1f} | {mem} |")
    lines += [
        f"| **total** | **{record['total_seconds']:.1f}** | |",
        "",
        *_report_time_markdown(),
        *_machines_markdown(),
        "## Package versions",
        "",
        "| package | version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in record["versions"].items()]
    lines += ["", "## Parameters", "", "```yaml"]
    import yaml

    lines += yaml.safe_dump(record["params"], sort_keys=False, default_flow_style=None).splitlines()
    lines += ["```", ""]
    return "\n".join(lines)
