"""The groups of a cohort, and the groups a generator is conditioned on.

A cohort's groups are the values of the ``group`` column of its demographics table
(``participants.tsv`` of a BIDS dataset, the table of an IXI-style or flat folder). The model
parameter ``groups`` lists the groups a class-conditional generator is conditioned on, in order.
:func:`conditioning_groups` is the one rule that joins the two, used wherever parameters are
resolved (:class:`neurodiff.config.Params`, for the cohort and for chapter 6's pools):

- a table with two or more groups: conditional on the configured list, which must name exactly
  the table's groups;
- no table, no ``group`` column or a single group (a healthy-only cohort such as IXI):
  unconditional, unless ``groups`` was set explicitly, which is then an error naming it.

:func:`read_groups` reads only the table (no scan is opened), so the rule is applied before any
long work starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CohortError, ConfigError
from ..io import shown_path
from .load import _IXI_TABLES, _read_table, detect_layout
from .scans import _TABLE_SUFFIXES

__all__ = ["CohortGroups", "conditioning_groups", "read_groups"]

#: Values of a ``group`` column that mean "not given" (BIDS writes ``n/a``).
_MISSING = ("", "n/a", "nan", "none")


@dataclass(frozen=True)
class CohortGroups:
    """What a cohort's table says about groups.

    Attributes
    ----------
    groups : tuple of str or None
        The distinct values of its ``group`` column, sorted; ``()`` when it has no table or the
        table no ``group`` column; None when the folder does not exist (yet) or its table cannot
        be told or read (the stage that reads the cohort reports why).
    where : str
        The table (or folder) they come from, for messages.
    """

    groups: tuple[str, ...] | None
    where: str

    @property
    def known(self) -> bool:
        return self.groups is not None


def _table_of(root: Path, table: Path | None) -> Path | None:
    """The demographics table :func:`~neurodiff.cohort.load_cohort` would read (None: none)."""
    if table is not None:
        return table
    layout = detect_layout(root)
    if layout == "bids":
        candidates = [root / "participants.tsv"]
    elif layout == "ixi":
        candidates = [root / name for name in _IXI_TABLES]
    else:
        candidates = sorted(
            p
            for p in root.iterdir()
            if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES and not p.name.startswith(".")
        )
        if len(candidates) > 1:  # ambiguous: load_cohort asks which one
            raise CohortError(f"{root} holds several tables", path=root)
    return next((p for p in candidates if p.is_file()), None)


def read_groups(cohort: str | Path, table: str | Path | None = None) -> CohortGroups:
    """The groups of the cohort folder ``cohort`` (its ``group`` column), reading only its table.

    ``table`` is the optional demographics table (parameter ``cohort_table``), as for
    :func:`~neurodiff.cohort.load_cohort`. Never raises: a folder that is missing or a table that
    cannot be read gives ``groups=None``.
    """
    root = Path(cohort).expanduser()
    if not root.is_dir():
        return CohortGroups(None, shown_path(root))
    chosen = Path(table).expanduser() if table not in (None, "") else None
    try:
        path = _table_of(root, chosen)
        if path is None:
            return CohortGroups((), f"{shown_path(root)} has no demographics table")
        df = _read_table(path)
    except (CohortError, OSError):
        return CohortGroups(None, shown_path(root))
    # An IXI table with IXI_ID is read for sex and age only (as load_cohort does)
    if "group" not in df.columns or (detect_layout(root) == "ixi" and "IXI_ID" in df.columns):
        return CohortGroups((), shown_path(path))
    values = df["group"].dropna().astype(str).str.strip()
    found = sorted({v for v in values if v.lower() not in _MISSING})
    return CohortGroups(tuple(found), shown_path(path))


def conditioning_groups(
    found: CohortGroups, configured: Sequence[str], explicit: bool
) -> tuple[str, ...]:
    """The groups to condition on: the configured list checked against the cohort's groups.

    Parameters
    ----------
    found : CohortGroups
        The cohort's groups (:func:`read_groups`).
    configured : sequence of str
        Parameter ``groups``: its default, or what a profile or the user set.
    explicit : bool
        Whether ``configured`` was set (by a profile or an override) rather than left at its
        default.

    Returns
    -------
    tuple of str
        ``()`` (unconditional) when ``configured`` is empty, or when the cohort has fewer than two
        groups and ``groups`` was not set; ``configured`` when the cohort cannot be read yet or
        its groups are exactly those of ``configured``.

    Raises
    ------
    ConfigError
        Naming parameter ``groups``: the table's groups are not those of ``configured`` (for a
        set list, also when the table has none).
    """
    configured = tuple(configured)
    if not configured or found.groups is None:
        return configured
    if len(found.groups) < 2 and not explicit:
        return ()
    if not found.groups:
        raise ConfigError(
            f"parameter 'groups' is {list(configured)}, but the cohort has no 'group' column "
            f"({found.where}): a class-conditional generator needs each subject's group. Leave "
            "'groups' unset (or set groups=[]) to train an unconditional model on this cohort, "
            "or add a 'group' column to its table",
            parameter="groups",
        )
    missing = [g for g in configured if g not in found.groups]
    unknown = [g for g in found.groups if g not in configured]
    if missing or unknown:
        told = "is" if explicit else "defaults to"
        problems = []
        if missing:
            problems.append(f"no subject of {found.where} is in group(s) {missing}")
        if unknown:
            problems.append(f"its group(s) {unknown} are not in the list")
        raise ConfigError(
            f"parameter 'groups' {told} {list(configured)}, but {' and '.join(problems)} "
            f"(the table's groups: {list(found.groups)}); list the table's groups, in order, "
            f"e.g. -p groups='[{', '.join(found.groups)}]' (the healthy group first), or "
            "groups=[] for an unconditional model",
            parameter="groups",
        )
    return configured
