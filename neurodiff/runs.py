"""Run folders keyed by the parameters that made them.

Every stage writes into its own folder of the profile, named by a short key::

    <derived_dir>/<profile>/<stage>/<key>/        e.g. data/derived/demo/train/5c1e0a9b7d2f/
                                   <key>/run.json  the parameters that made it, and its upstream

A stage's key is a hash of the parameters that shape its outputs -- its own and, through the key
of the stage before it, every upstream stage's -- and of the stage's output format. So:

- the same parameters give the same folder: an interrupted run resumes, a finished one is reused;
- any change (``lr``, ``schedule``, ``train_subjects`` ...) gives a new folder and leaves the
  earlier runs in place, to compare; a notebook or command can only ever find the outputs of its
  own parameters, never a stale model;
- where outputs go (``profile``, ``derived_dir``) and how a stage works without changing what it
  writes (``resume``, ``checkpoint_every`` ..., declared with ``param(..., shapes=False)``) are
  not part of any key.

:func:`list_runs` and :func:`remove_runs` are what ``neurodiff runs`` and ``neurodiff clean`` use.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import (
    AugmentConfig,
    CohortConfig,
    MetricsConfig,
    ModelConfig,
    Params,
    PreprocessConfig,
    SampleConfig,
    TrainConfig,
)
from .io import atomic_write_json

__all__ = [
    "RECORD",
    "STAGE_CHAIN",
    "Run",
    "chain_keys",
    "list_runs",
    "read_run",
    "record_run",
    "remove_runs",
    "run_dir",
    "shaping_params",
    "stage_key",
    "stage_names",
]

#: The stages in order: folder name, the configs whose fields shape its outputs, output format.
#: Bump a format when a stage's outputs change meaning, so that old folders are not reused.
STAGE_CHAIN: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("preprocessed", (CohortConfig, PreprocessConfig), "neurodiff-preprocessed/2"),
    ("train", (ModelConfig, TrainConfig), "neurodiff-train/1"),
    ("synthetic", (SampleConfig,), "neurodiff-synthetic/1"),
    ("metrics", (MetricsConfig,), "neurodiff-metrics/1"),
    ("augment", (AugmentConfig,), "neurodiff-augment/1"),
)
#: The record written into every run folder.
RECORD = "run.json"


def stage_names() -> list[str]:
    return [name for name, _, _ in STAGE_CHAIN]


def _position(stage: str) -> int:
    names = stage_names()
    if stage not in names:
        raise ValueError(f"unknown stage {stage!r}; expected one of {names}")
    return names.index(stage)


def _own_params(params: Params, classes: Iterable[type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        values = params.stage(cls).to_dict()
        out.update({f.name: values[f.name] for f in fields(cls) if f.metadata["shapes"]})
    return out


def shaping_params(params: Params, stage: str) -> dict[str, Any]:
    """Every parameter that shapes ``stage``'s outputs: its own and its upstream stages'."""
    out: dict[str, Any] = {}
    for _, classes, _ in STAGE_CHAIN[: _position(stage) + 1]:
        out.update(_own_params(params, classes))
    return dict(sorted(out.items()))


def chain_keys(params: Params) -> dict[str, str]:
    """The key of every stage for ``params``: ``{"preprocessed": ..., "train": ..., ...}``."""
    keys: dict[str, str] = {}
    upstream = ""
    for name, classes, fmt in STAGE_CHAIN:
        blob = {"stage": name, "format": fmt, "upstream": upstream}
        blob["params"] = _own_params(params, classes)
        upstream = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:12]
        keys[name] = upstream
    return keys


def stage_key(params: Params, stage: str) -> str:
    """The 12-hex-digit key naming ``stage``'s folder for ``params``."""
    _position(stage)
    return chain_keys(params)[stage]


def run_dir(params: Params, stage: str) -> Path:
    """``<derived_dir>/<profile>/<stage>/<key>``: where ``stage`` writes for ``params``."""
    return params.profile_dir() / stage / stage_key(params, stage)


def record_run(params: Params, stage: str, complete: bool = True) -> Path:
    """Write ``run.json`` (key, upstream key, shaping parameters, state) into the run folder.

    Stages call it when they finish (and training also when it starts, so that an interrupted
    run is listed as such). Returns the record's path.
    """
    keys = chain_keys(params)
    pos = _position(stage)
    upstream = stage_names()[pos - 1] if pos else None
    folder = run_dir(params, stage)
    record = {
        "stage": stage,
        "key": keys[stage],
        "upstream": {"stage": upstream, "key": keys[upstream]} if upstream else None,
        "profile": params.profile,
        "complete": complete,
        "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "params": shaping_params(params, stage),
    }
    path = folder / RECORD
    atomic_write_json(path, record)
    return path


@dataclass
class Run:
    """One run folder of a profile, as :func:`list_runs` finds it."""

    stage: str
    key: str
    path: Path
    upstream: str | None = None
    complete: bool = False
    updated: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.key}"


def read_run(path: str | Path) -> Run:
    """The run in folder ``path`` (``complete`` is False when it has no readable record)."""
    path = Path(path)
    return _read(path, path.parent.name)


def _read(path: Path, stage: str) -> Run:
    try:
        rec = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return Run(stage, path.name, path)  # no (readable) record: an interrupted first write
    up = rec.get("upstream") or {}
    return Run(
        stage,
        path.name,
        path,
        upstream=up.get("key"),
        complete=bool(rec.get("complete")),
        updated=str(rec.get("updated", "")),
        params=dict(rec.get("params", {})),
    )


def list_runs(profile_dir: str | Path) -> tuple[list[Run], list[Path]]:
    """The runs under ``<derived_dir>/<profile>``, oldest first per stage, and the *strays*:
    entries of a stage folder that are not run folders (e.g. files of an older layout)."""
    root = Path(profile_dir)
    runs: list[Run] = []
    strays: list[Path] = []
    for stage in stage_names():
        folder = root / stage
        if not folder.is_dir():
            continue
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue  # a temporary folder of a write in progress
            is_key = len(entry.name) == 12 and all(c in "0123456789abcdef" for c in entry.name)
            if entry.is_dir() and is_key:
                found.append(_read(entry, stage))
            else:
                strays.append(entry)
        runs += sorted(found, key=lambda r: (r.updated, r.key))
    return runs, strays


def _downstream(runs: list[Run], chosen: set[str]) -> set[str]:
    """``chosen`` (labels) and every run made from one of them, transitively."""
    by_key = {r.label: r for r in runs}
    out = set(chosen)
    changed = True
    while changed:
        changed = False
        for r in runs:
            if r.label in out or r.upstream is None:
                continue
            up_stage = stage_names()[_position(r.stage) - 1]
            if f"{up_stage}/{r.upstream}" in out and r.label in by_key:
                out.add(r.label)
                changed = True
    return out


def _orphans(runs: list[Run]) -> set[str]:
    """Runs made from a run that no longer exists (and what was made from them)."""
    labels = {r.label for r in runs}
    direct = set()
    for r in runs:
        if r.upstream is None:
            continue
        up_stage = stage_names()[_position(r.stage) - 1]
        if f"{up_stage}/{r.upstream}" not in labels:
            direct.add(r.label)
    return _downstream(runs, direct)


def remove_runs(
    profile_dir: str | Path,
    *,
    keep: Params | None = None,
    keys: Iterable[str] = (),
    incomplete: bool = False,
    everything: bool = False,
    dry_run: bool = False,
) -> list[Path]:
    """Delete run folders of a profile; return what was (or, with ``dry_run``, would be) removed.

    Always: the *strays* (files of an older layout) and the orphans (runs made from a run that
    was deleted). Besides, at most one of:

    - ``keys``: these runs (a key, or ``stage/key``) and every run made from them;
    - ``keep``: every run except the chain of these parameters;
    - ``incomplete``: the runs that did not finish (an interrupted training: it would resume) and
      what was made from them;
    - ``everything``: all runs of the profile.
    """
    runs, strays = list_runs(profile_dir)
    keys = list(keys)
    chosen: set[str] = set()
    if keys:
        unknown = [k for k in keys if not any(k in (r.key, r.label) for r in runs)]
        if unknown:
            raise ValueError(
                f"no run {unknown[0]!r} under {profile_dir}; `neurodiff runs` lists them"
            )
        chosen = {r.label for r in runs if r.key in keys or r.label in keys}
    elif everything:
        chosen = {r.label for r in runs}
    elif keep is not None:
        kept = {f"{s}/{k}" for s, k in chain_keys(keep).items()}
        chosen = {r.label for r in runs if r.label not in kept}
    elif incomplete:
        chosen = {r.label for r in runs if not r.complete}
    chosen = _downstream(runs, chosen) | _orphans(runs)
    doomed = [r.path for r in runs if r.label in chosen] + strays
    if not dry_run:
        for path in doomed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return doomed
