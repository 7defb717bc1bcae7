"""The one error type raised for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with a data file, located by file path and (when known) 1-based line number."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")
