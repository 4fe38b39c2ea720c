"""The one family of exceptions neurodiff raises for bad input.

Every error says what was expected, what was found, and which file or parameter it concerns.
All are :class:`ValueError` subclasses, so callers that already catch ``ValueError`` keep working;
the command line catches :class:`NeurodiffError` and prints the message without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class NeurodiffError(ValueError):
    """Base class of every user-facing error.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    path : str or Path, optional
        The file or folder concerned, if any; kept on ``.path``.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(message)


class ConfigError(NeurodiffError):
    """A parameter, profile or override is unknown, of the wrong type or out of range.

    The offending parameter name is kept on ``.parameter``.
    """

    def __init__(self, message: str, parameter: str | None = None, path: str | Path | None = None):
        self.parameter = parameter
        super().__init__(message, path)


class CohortError(NeurodiffError):
    """A scan or table of a cohort cannot be used.

    ``.path`` names the file; ``.problems`` lists ``(path, problem)`` pairs when several files
    are bad at once (the cohort loader reports all of them together).
    """

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        problems: list[tuple[Path, str]] | None = None,
    ) -> None:
        self.problems = list(problems or [])
        super().__init__(message, path)


class DataError(NeurodiffError):
    """A derived dataset (preprocessed, synthetic) is missing, incomplete or inconsistent."""


class CheckpointError(NeurodiffError):
    """A checkpoint is missing, corrupt or was written for another model configuration."""


class FetchError(NeurodiffError):
    """A download failed (offline, wrong checksum, server error)."""


class MetricError(NeurodiffError):
    """Inputs to a metric do not fit (shapes, too few samples, NaNs, unknown extractor)."""


class NotebookError(NeurodiffError):
    """A notebook failed while executing; ``.notebook`` names it, ``.path`` is the partial copy."""

    def __init__(self, message: str, notebook: str, path: str | Path | None = None) -> None:
        self.notebook = notebook
        super().__init__(message, path)
