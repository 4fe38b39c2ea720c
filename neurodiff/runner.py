"""Execute the study's notebooks with papermill and build the Jupyter Book.

``neurodiff run --profile demo [-p key=value ...] [--only 01_explore]``:

1. resolves the profile and overrides into a validated :class:`~neurodiff.config.Params`
   (unknown names, wrong types, a missing profile and a ``groups`` list the cohort's table does not
   have are refused before any notebook starts), and says what the cohort decides: an
   unconditional generator on a healthy-only cohort, a chapter that cannot compute its own run
   (chapter 6 on a pools cohort without two groups: it shows the reason instead);
2. executes ``notebooks/NN_*.ipynb`` in order with papermill, injecting the whole parameter
   namespace (but the values each notebook reads from the cohort itself,
   :attr:`~neurodiff.config.Params.from_cohort`), the working directory being the project root;
3. writes each executed copy to ``book/executed/`` (atomically), with the injected parameters in a
   collapsed cell and progress-bar/log output (stderr) moved to ``book/executed/logs/``;
4. records the run (git commit, parameters and their hash, package versions, device, wall time and
   peak memory per notebook) in ``book/executed/run.json`` and ``book/executed/reproducibility.md``;
5. exports the trained generator with its model card to ``book/executed/downloads/``
   (:func:`neurodiff.release.book_downloads`), which chapter 3 offers as downloads.

A failing notebook stops the run with the notebook's name and the failing cell's error; the
partially executed copy is kept for inspection in ``_build/failed/`` (outside the book).

``neurodiff book`` builds ``_build/html`` with Jupyter Book 1 (``execute_notebooks: off``: the
notebooks were already executed by papermill).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .errors import ConfigError, DataError, NeurodiffError, NotebookError
from .io import atomic_path, atomic_write_text, shown_path
from .record import write_record
from .release import book_downloads

__all__ = [
    "NotebookError",
    "RunReport",
    "build_book",
    "notebook_paths",
    "preflight_notes",
    "run_notebooks",
]

log = logging.getLogger(__name__)

#: The cell appended to every notebook before execution (removed from the book): it reports the
#: kernel's peak resident memory, which the runner records per notebook.
_PROBE_SOURCE = (
    "import json as _json, resource as _resource, sys as _sys\n"
    "_peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss\n"
    "print('NEURODIFF_PEAK_RSS_MB=' + str(_peak / (1024 * 1024 if _sys.platform == 'darwin' "
    "else 1024)))"
)
_PROBE_MARK = "NEURODIFF_PEAK_RSS_MB="


@dataclass
class NotebookRun:
    name: str
    seconds: float
    peak_rss_mb: float | None
    output: Path


@dataclass
class RunReport:
    """What ``run_notebooks`` did: the parameters and one entry per executed notebook."""

    params: config.Params
    notebooks: list[NotebookRun] = field(default_factory=list)
    seconds: float = 0.0
    record: Path | None = None

    def __str__(self) -> str:
        lines = [f"profile {self.params.profile!r} (parameters {self.params.hash()}):"]
        for nb in self.notebooks:
            mem = f"{nb.peak_rss_mb:7.0f} MB" if nb.peak_rss_mb is not None else "      ? MB"
            lines.append(f"  {nb.name:16s} {nb.seconds:7.1f} s  {mem}  -> {nb.output}")
        lines.append(f"  {'total':16s} {self.seconds:7.1f} s")
        return "\n".join(lines)


def _quiet_kernel_manager(log_path: Path) -> type:
    """A Jupyter kernel manager whose kernel process writes its own stderr (transport and
    start-up warnings of ipykernel) to ``log_path`` instead of the console. What the notebook's
    code prints still reaches the notebook. Written by hand: neither papermill nor nbclient
    offers a setting for the kernel's standard streams."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "wb") as stream:
                kw["stderr"] = stream
                kw.setdefault("stdout", stream)
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


def notebooks_dir() -> Path:
    return config.project_root() / "notebooks"


def notebook_paths(only: Iterable[str] | None = None) -> list[Path]:
    """The study's notebooks in execution order (``notebooks/NN_*.ipynb``), optionally a subset.

    ``only`` takes names with or without ``.ipynb`` (``01_explore``) or just their number (``01``).
    """
    found = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise DataError(
            f"no notebooks found in {notebooks_dir()}; expected NN_name.ipynb files",
            path=notebooks_dir(),
        )
    if not only:
        return found
    by_key: dict[str, Path] = {}
    for p in found:
        by_key[p.stem] = p
        by_key[p.name] = p
        by_key[p.stem[:2]] = p
    chosen = []
    for name in only:
        if name not in by_key:
            raise ConfigError(
                f"--only {name!r} is not a notebook; expected one of {[p.stem for p in found]}",
                parameter="only",
            )
        if by_key[name] not in chosen:
            chosen.append(by_key[name])
    return sorted(chosen)


def _check_parameters_cell(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise DataError(
            f"notebook {path.name} has no cell tagged 'parameters'; papermill needs one "
            "to inject the profile",
            path=path,
        )


def _prepare(path: Path, dest: Path) -> None:
    """Copy the notebook with the memory probe appended (tagged so the book drops it)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell(_PROBE_SOURCE)
    probe.metadata["tags"] = ["remove-cell", "neurodiff-probe"]
    nb.cells.append(probe)
    nbformat.write(nb, dest)


def _finish(src: Path, dest: Path, log_path: Path) -> float | None:
    """Post-process an executed notebook for the book; return the kernel's peak RSS in MB.

    - the injected-parameters cell is collapsed (``hide-input``) and the defaults cell removed,
      since the injected values are the ones that ran;
    - stderr streams (progress bars, log lines) go to ``log_path`` instead of the page;
    - the memory probe cell is dropped.
    """
    import nbformat

    nb = nbformat.read(src, as_version=4)
    peak = None
    logs: list[str] = []
    cells = []
    injected = any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if "neurodiff-probe" in tags:
            for out in cell.get("outputs", []):
                text = out.get("text", "")
                if _PROBE_MARK in text:
                    peak = float(text.split(_PROBE_MARK)[1].split()[0])
            continue
        if cell.cell_type == "code":
            kept = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    logs.append(out.get("text", ""))
                else:
                    kept.append(out)
            cell.outputs = kept
        if "injected-parameters" in tags:
            if "hide-input" not in tags:
                tags.append("hide-input")
            cell.source = "\n".join(
                line for line in cell.source.splitlines() if config.RESOLVED_FLAG not in line
            )
        if "parameters" in tags and injected and "remove-cell" not in tags:
            tags.append("remove-cell")
        cell.metadata["tags"] = tags
        cells.append(cell)
    nb.cells = cells
    with atomic_path(dest) as tmp:
        nbformat.write(nb, tmp)
    atomic_write_text(log_path, "".join(logs))
    return peak


def run_notebooks(
    profile: str | Path = "demo",
    overrides: Mapping[str, Any] | Sequence[str] = (),
    only: Iterable[str] | None = None,
    output_dir: str | Path | None = None,
    kernel_name: str | None = None,
) -> RunReport:
    """Execute the notebooks with papermill; see the module docstring.

    Parameters
    ----------
    profile : str or Path
        Profile name (``smoke``, ``demo``, ``paper``, ``course``) or a YAML file.
    overrides : mapping or sequence of ``"key=value"``
        Parameters that replace the profile's.
    only : iterable of str, optional
        Notebook names (``01_explore``) or numbers (``01``) to run; default all, in order.
    output_dir : path, optional
        Where executed copies go; default ``book/executed``.
    kernel_name : str, optional
        Jupyter kernel; default the notebook's own (``python3``).
    """
    import papermill as pm

    params = config.resolve(profile, overrides)  # refuses bad parameters before any notebook
    root = config.project_root()
    paths = notebook_paths(only)
    for p in paths:
        _check_parameters_cell(p)
    notes = preflight_notes(params, paths)
    out_dir = Path(output_dir) if output_dir else root / "book" / "executed"
    out_dir = out_dir if out_dir.is_absolute() else root / out_dir
    failed_dir = root / "_build" / "failed"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RunReport(params=params)
    os.environ["NEURODIFF_ROOT"] = str(root)  # the kernels resolve relative paths against it
    logging.getLogger("papermill").setLevel(logging.ERROR)  # it logs every injected name
    start = time.perf_counter()
    print(
        f"[neurodiff run] profile {params.profile!r} (parameters {params.hash()}), "
        f"{len(paths)} notebook(s) -> {shown_path(out_dir)}/",
        file=sys.stderr,
        flush=True,
    )
    for note in notes:
        print(f"[neurodiff run] {note}", file=sys.stderr, flush=True)
    injected = {k: v for k, v in params.to_dict().items() if k not in params.from_cohort}
    for path in paths:
        name = path.stem
        print(f"[neurodiff run] {name:16s}", end="", file=sys.stderr, flush=True)
        staged = out_dir / f".{name}.input.ipynb"
        work = out_dir / f".{name}.running.ipynb"
        _prepare(path, staged)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(staged),
                str(work),
                parameters={**injected, config.RESOLVED_FLAG: True},
                cwd=str(root),
                kernel_name=kernel_name,
                progress_bar=False,
                log_output=False,
                kernel_manager_class=_quiet_kernel_manager(out_dir / "logs" / f"{name}.kernel.log"),
            )
        except pm.PapermillExecutionError as exc:
            print(" failed", file=sys.stderr, flush=True)
            failed_dir.mkdir(parents=True, exist_ok=True)
            kept = failed_dir / f"{name}.ipynb"
            shutil.move(str(work), kept)
            raise NotebookError(
                f"notebook {name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                f"(partially executed copy kept in {kept})",
                notebook=name,
                path=kept,
            ) from None
        except BaseException:
            print(" stopped", file=sys.stderr, flush=True)
            work.unlink(missing_ok=True)
            raise
        finally:
            staged.unlink(missing_ok=True)
        seconds = time.perf_counter() - t0
        dest = out_dir / path.name
        peak = _finish(work, dest, out_dir / "logs" / f"{name}.log")
        work.unlink(missing_ok=True)
        report.notebooks.append(NotebookRun(name, seconds, peak, dest))
        mem = f", peak {peak:.0f} MB" if peak is not None else ""
        print(f" {seconds:7.1f} s{mem}", file=sys.stderr, flush=True)
    report.seconds = time.perf_counter() - start
    report.record = write_record(report.params, report.notebooks, out_dir, root)
    book_downloads(report.params, out_dir)  # the generator and its card, which chapter 3 links
    print(f"[neurodiff run] {'total':16s} {report.seconds:7.1f} s", file=sys.stderr, flush=True)
    return report


def preflight_notes(params: config.Params, paths: Sequence[Path]) -> list[str]:
    """What the inputs decide before any notebook starts, one line each: an unconditional
    generator on a cohort with fewer than two groups, and each chapter among ``paths`` that
    cannot compute its own run (:func:`neurodiff.dispatch.cannot_run`), with the reason."""
    from . import registry
    from .dispatch import cannot_run

    notes = []
    if "groups" in params.from_cohort and not params.groups:
        notes.append(
            f"the cohort {params.cohort!r} has fewer than two groups in its table (a "
            "healthy-only cohort): the generator is unconditional (groups=[])"
        )
    for path in paths:
        stage = next((s for s in registry.STAGES if s.chapter == path.stem[:2]), None)
        reason = cannot_run(stage, params) if stage is not None else None
        if reason is not None:
            notes.append(f"{path.stem}: {reason}. The chapter shows this instead of its own run")
    return notes


def _toc_files(root: Path) -> list[str]:
    """The documents named in ``book/_toc.yml`` (without extensions)."""
    import yaml

    toc = yaml.safe_load((root / "book" / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(items: Iterable[Mapping[str, Any]]) -> None:
        for item in items:
            if "file" in item:
                files.append(item["file"])
            for key in ("parts", "chapters", "sections"):
                if key in item:
                    walk(item[key])

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return files


def build_book(strict: bool = False, root: str | Path | None = None) -> Path:
    """Build the Jupyter Book into ``_build/html``; return the path of ``index.html``.

    Every document in the table of contents must exist: executed chapters come from
    ``neurodiff run``. With ``strict`` Sphinx warnings are errors (``-W -n --keep-going``).
    """
    root = Path(root) if root else config.project_root()
    missing = [
        f
        for f in _toc_files(root)
        if not any((root / f"{f}{ext}").is_file() for ext in (".md", ".ipynb", ".rst"))
    ]
    if missing:
        raise DataError(
            f"the book needs {', '.join(missing)}, which do not exist yet; run "
            "`neurodiff run --profile demo` (or `make report`) first",
            path=root,
        )
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [
        str(exe) if exe.exists() else "jupyter-book",
        "build",
        str(root),
        "--toc",
        str(root / "book" / "_toc.yml"),
        "--config",
        str(root / "_config.yml"),
    ]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise NeurodiffError(
            f"the book build failed (jupyter-book exit {proc.returncode}):\n{tail}", path=root
        )
    index = root / "_build" / "html" / "index.html"
    return index
