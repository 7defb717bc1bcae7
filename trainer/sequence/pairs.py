"""A user's own sequence data: .csv or .tsv (columns source,target) or .jsonl or .json (objects with
source,target).

Each row is one example: the model reads `source` and writes `target`, character by character. Every
limit is checked here, before any training, and a problem names the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.data.files import DataError, read_records
from trainer.sequence.vocab import unknown_characters

SOURCE_COLUMN = "source"
TARGET_COLUMN = "target"
SEQUENCE_COLUMNS = (SOURCE_COLUMN, TARGET_COLUMN)
MAX_SOURCE_CHARS = 512
MAX_TARGET_CHARS = 127  # the answer's tokens, its end mark included, stay within 128


@dataclass(frozen=True)
class Pair:
    """One example and the 1-based line of its file it came from."""

    source: str
    target: str
    line: int


_COLUMNS_HINT = (f"; a sequence model reads and writes text: its file's rows are {SOURCE_COLUMN},{TARGET_COLUMN} "
                 "pairs (the words said, the text written)")


def load_pairs(path: Path, max_source_chars: int, max_target_chars: int) -> list[Pair]:
    """The rows of a .csv or .tsv (a header with source,target; other columns ignored) or .jsonl or .json file (a
    JSON target may be a whole number, read as its decimal text, as spoken numbers' digits are often written).

    Both fields must be non-empty printable ASCII within the caller's length limits."""
    records = read_records(path, SEQUENCE_COLUMNS, integer_columns=(TARGET_COLUMN,),  # "target": 20250303 too
                           missing_hint=_COLUMNS_HINT)
    return [
        _checked(Path(path), line, source, target, max_source_chars, max_target_chars)
        for line, (source, target) in records
    ]


def _checked(path: Path, line: int, source: str, target: str, max_source: int, max_target: int) -> Pair:
    for name, value, limit in ((SOURCE_COLUMN, source, max_source), (TARGET_COLUMN, target, max_target)):
        if not value.strip():
            raise DataError(path, line, f"empty {name}")
        unknown = unknown_characters(value)
        if unknown:
            raise DataError(path, line, f"{name} has characters outside printable ASCII: {''.join(unknown)!r}")
        if len(value) > limit:
            does = "reads" if name == SOURCE_COLUMN else "writes"
            raise DataError(path, line, f"{name} has {len(value)} characters, more than the {limit} a sequence "
                                        f"model {does}: shorten the row or split it into several")
    return Pair(source, target, line)
