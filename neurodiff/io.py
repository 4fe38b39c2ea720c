"""Atomic writes and small file helpers shared by every stage.

Nothing is ever half-written: each writer puts its bytes under a temporary name in the target's
folder and renames it into place (``os.replace`` is atomic on POSIX), so an interrupted run leaves
either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "file_sha256",
    "folder_summary",
    "read_results_json",
    "shown_path",
]


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    ``suffix`` keeps a meaningful extension on the temporary name (nibabel picks the format from
    it, e.g. ``.nii.gz``); by default it is the target's full suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would
        # give it, so that a book's downloads and a shared folder's outputs stay readable
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask: from ``/proc/self/status`` where there is one (reading it changes
    nothing); elsewhere by setting it and putting it back (there is no getter), which a thread
    creating a file at that instant could see."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically; return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (old contents removed).

    A run interrupted inside the block leaves ``path`` as it was and no folder that a later run
    could mistake for complete (the temporary one starts with a dot and is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folder is private (0700), as mkstemp's file
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def shown_path(path: str | Path) -> str:
    """A path as a reader is shown it: relative to the project root (``$NEURODIFF_ROOT``, which
    ``neurodiff run`` sets, else the working directory) when it lies inside it, so that pages
    and logs do not carry the folders of the machine that made them."""
    path = Path(path)
    root = Path(os.environ.get("NEURODIFF_ROOT") or Path.cwd())
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def folder_summary(folder: str | Path, show: int = 2, suffix: str = ".nii.gz") -> str:
    """A short listing of what a stage wrote: file count and size, the top-level files, and the
    first ``show`` files ending in ``suffix`` (e.g. the NIfTI images), for notebooks and logs."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    matching = [p for p in files if p.name.endswith(suffix)]
    lines = [
        f"{shown_path(folder)}: {len(files)} files, {size_mb:.1f} MB, {len(matching)} *{suffix}"
    ]
    listed = [p for p in files if p.parent == folder] + [
        p for p in matching[:show] if p.parent != folder
    ]
    lines += [f"   {p.relative_to(folder)}  ({p.stat().st_size / 1e6:.2f} MB)" for p in listed]
    if len(files) > len(listed):
        lines.append("   ...")
    return "\n".join(lines)


def read_results_json(path: str | Path, what: str, command: str, key: str | None = None) -> Any:
    """A committed results file (``benchmarks/results/*.json``), read with clear errors: a
    :class:`~neurodiff.errors.DataError` naming ``what`` and the file when it is missing (with
    the ``command`` that makes it), not JSON, or (``key`` given) not a mapping with a mapping
    under ``key``."""
    from .errors import DataError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"no {what} at {str(path)!r}: run `{command}` to make it") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {str(path)!r} is not valid JSON ({exc})") from None
    if key is not None and not (isinstance(data, dict) and isinstance(data.get(key), dict)):
        raise DataError(f"{what} {str(path)!r} has no {key!r} mapping; is it another file?")
    return data
