"""Run folders keyed by the parameters that made them.

Every stage writes into its own folder of the profile, named by a short key::

    <derived_dir>/<profile>/<stage>/<key>/        e.g. data/derived/demo/train/5c1e0a9b7d2f/
                                   <key>/run.json  the parameters that made it, and its upstream

A stage's key is a hash of the parameters that shape its outputs -- its own and, through the keys
of the stages it reads (:mod:`neurodiff.registry`), every upstream stage's -- and of the stage's
output format. So:

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

from . import registry
from .config import ConfigError, Params
from .io import atomic_write_json
from .registry import Stage

__all__ = [
    "RECORD",
    "Run",
    "chain_keys",
    "current_labels",
    "list_runs",
    "note_outputs",
    "read_run",
    "record_run",
    "remove_runs",
    "run_dir",
    "shaping_params",
    "stage_key",
    "stage_names",
]

#: The record written into every run folder.
RECORD = "run.json"


def stage_names() -> list[str]:
    """The folder names of the stages that write run folders, upstream first."""
    return [s.folder for s in registry.keyed_stages()]


def _keyed(stage: str | Stage) -> Stage:
    spec = registry.get(stage)
    if spec.folder is None:
        raise ValueError(
            f"stage {spec.name!r} writes no run folder; expected one of {stage_names()}"
        )
    return spec


def _own_params(params: Params, classes: Iterable[type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        values = params.stage(cls).to_dict()
        out.update({f.name: values[f.name] for f in fields(cls) if f.metadata["shapes"]})
    return out


def shaping_params(params: Params, stage: str | Stage) -> dict[str, Any]:
    """Every parameter that shapes ``stage``'s outputs: its own and its upstream stages'."""
    spec = _keyed(stage)
    out: dict[str, Any] = {}
    for s in (*registry.needs(spec), spec):
        out.update(_own_params(params, s.configs))
    return dict(sorted(out.items()))


def chain_keys(params: Params) -> dict[str, str]:
    """The key of every stage for ``params``, by folder: ``{"preprocessed": ..., ...}``.

    A key hashes the stage's folder name, output format, own shaping parameters and the keys of
    the stages it reads (so every upstream parameter too).
    """
    keys: dict[str, str] = {}
    for spec in registry.keyed_stages():
        upstream = "+".join(keys[registry.get(u).folder] for u in spec.upstream)
        blob = {"stage": spec.folder, "format": spec.format, "upstream": upstream}
        blob["params"] = _own_params(params, spec.configs)
        keys[spec.folder] = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[
            :12
        ]
    return keys


def stage_key(params: Params, stage: str | Stage) -> str:
    """The 12-hex-digit key naming ``stage``'s folder for ``params``."""
    return chain_keys(params)[_keyed(stage).folder]


def run_dir(params: Params, stage: str | Stage) -> Path:
    """``<derived_dir>/<profile>/<folder>/<key>``: where ``stage`` writes for ``params``."""
    spec = _keyed(stage)
    return params.profile_dir() / spec.folder / stage_key(params, spec)


def _outputs(folder: Path, spec: Stage) -> list[str]:
    """The files of ``folder`` that match the stage's declared outputs, relative and sorted."""
    found = {
        p.relative_to(folder).as_posix()
        for pattern in spec.outputs
        for p in folder.glob(pattern)
        if p.is_file()
    }
    return sorted(found)


def record_run(params: Params, stage: str | Stage, complete: bool = True) -> Path:
    """Write ``run.json`` (key, upstream keys, shaping parameters, state, the outputs written)
    into the run folder.

    Stages call it when they finish (and training also when it starts, so that an interrupted
    run is listed as such). Returns the record's path.
    """
    spec = _keyed(stage)
    keys = chain_keys(params)
    folder = run_dir(params, spec)
    record = {
        "stage": spec.folder,
        "key": keys[spec.folder],
        "upstream": [
            {"stage": registry.get(u).folder, "key": keys[registry.get(u).folder]}
            for u in spec.upstream
        ],
        "profile": params.profile,
        "complete": complete,
        "updated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "params": shaping_params(params, spec),
        "outputs": _outputs(folder, spec),
    }
    path = folder / RECORD
    atomic_write_json(path, record)
    return path


def note_outputs(folder: str | Path) -> None:
    """Refresh the list of outputs in ``folder``'s ``run.json`` (after a file was added to a
    finished run, e.g. the per-group view beside ``metrics.json``); nothing without a record."""
    folder = Path(folder)
    path = folder / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    record["outputs"] = _outputs(folder, registry.get(folder.parent.name))
    atomic_write_json(path, record)


@dataclass
class Run:
    """One run folder of a profile, as :func:`list_runs` finds it."""

    stage: str
    key: str
    path: Path
    upstream: tuple[str, ...] = ()
    complete: bool = False
    updated: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()

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
    up = rec.get("upstream") or []
    if isinstance(up, dict):  # a record of one upstream stage, before the registry
        up = [up]
    return Run(
        stage,
        path.name,
        path,
        upstream=tuple(
            f"{u.get('stage')}/{u.get('key')}" for u in up if isinstance(u, dict) and u.get("key")
        ),
        complete=bool(rec.get("complete")),
        updated=str(rec.get("updated", "")),
        params=dict(rec.get("params", {})),
        outputs=tuple(rec.get("outputs", ())),
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
            if r.label in out:
                continue
            if any(u in out for u in r.upstream) and r.label in by_key:
                out.add(r.label)
                changed = True
    return out


def _orphans(runs: list[Run]) -> set[str]:
    """Runs made from a run that no longer exists (and what was made from them)."""
    labels = {r.label for r in runs}
    direct = {r.label for r in runs if any(u not in labels for u in r.upstream)}
    return _downstream(runs, direct)


def _label(key: str) -> str:
    """A key, or ``stage/key`` with the stage by name or folder (``sample/...`` is
    ``synthetic/...``)."""
    stage, sep, rest = key.partition("/")
    if not sep:
        return key
    try:
        return f"{_keyed(stage).folder}/{rest}"
    except (ValueError, ConfigError):
        return key


def current_labels(params: Params) -> set[str]:
    """The runs (``folder/key``) of ``params``: its chain of stages, and the preprocessing of each
    further cohort a stage reads (chapter 6's pools, ``Params.for_cohort``)."""
    labels = {f"{s}/{k}" for s, k in chain_keys(params).items()}
    for spec in registry.keyed_stages():
        for name in spec.cohorts:
            other = params.for_cohort(name)
            if other is not None:
                folder = registry.PREPROCESS.folder
                labels.add(f"{folder}/{stage_key(other, registry.PREPROCESS)}")
    return labels


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
    - ``keep``: every run except those of these parameters (:func:`current_labels`);
    - ``incomplete``: the runs that did not finish (an interrupted training: it would resume) and
      what was made from them;
    - ``everything``: all runs of the profile.
    """
    runs, strays = list_runs(profile_dir)
    keys = [_label(k) for k in keys]
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
        kept = current_labels(keep)
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
