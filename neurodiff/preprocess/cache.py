"""The preprocessing cache: its key (parameters + pipeline) and whether a build is still valid.

A build is reused only when its manifest has the same key and every source file (scans and
tables) has the same size and either the same modification time or the same SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..artifacts import PREPROCESSED_FORMAT, load_manifest
from ..config import LOCATION_PARAMS, PreprocessConfig
from ..errors import DataError
from ..io import file_sha256
from .pipeline import registration_settings
from .strip import strip_settings

__all__ = ["cache_key", "cached_manifest", "file_stat", "source_files"]

#: Files of a cohort folder that fingerprint it for the cache (scans and tables).
_SOURCE_SUFFIXES = (".nii", ".nii.gz", ".tsv", ".csv", ".xls", ".xlsx", ".json")


def cache_key(cfg: PreprocessConfig) -> str:
    """Hash of everything that decides the content of the outputs (parameters + pipeline)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in LOCATION_PARAMS}
    d["_format"] = PREPROCESSED_FORMAT
    d["_registration"] = registration_settings()
    d["_strip"] = strip_settings()
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def source_files(root: Path, table: Path | None) -> dict[str, Path]:
    """Files whose change invalidates the cache: the cohort's scans and tables, and the table."""
    files: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.name.lower().endswith(_SOURCE_SUFFIXES):
            files[rel.as_posix()] = p
    if table is not None and table.resolve() not in {p.resolve() for p in files.values()}:
        files[str(table.resolve())] = table
    return files


def file_stat(p: Path) -> dict[str, int]:
    """Size and modification time of a source file, as the manifest records them."""
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_manifest(out_dir: Path, key: str, files: dict[str, Path]) -> dict | None:
    """The manifest if ``out_dir`` holds a complete build for ``key`` and unchanged sources."""
    try:
        manifest = load_manifest(out_dir)  # a complete build of this format, or DataError
    except DataError:
        return None
    if manifest.get("params_hash") != key:
        return None
    sources = manifest.get("sources", {})
    if set(sources) != set(files):
        return None
    for rel, p in files.items():
        rec, now = sources[rel], file_stat(p)
        if rec["size"] != now["size"]:
            return None
        if rec["mtime_ns"] != now["mtime_ns"] and rec["sha256"] != file_sha256(p):
            return None
    for rel, size in manifest.get("outputs", {}).items():
        f = out_dir / rel
        if not f.is_file() or f.stat().st_size != size:
            return None
    return manifest
