"""A user's own sequence data: .csv (columns source,target) or .jsonl (objects with source,target).

Each row is one example: the model reads `source` and writes `target`, character by character. Every
limit is checked here, before any training, and a problem names the file and line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from trainer.data.files import DataError, iter_json_objects, read_nonempty_text, string_field
from trainer.sequence.vocab import unknown_characters

SOURCE_COLUMN = "source"
TARGET_COLUMN = "target"


@dataclass(frozen=True)
class Pair:
    """One example and the 1-based line of its file it came from."""

    source: str
    target: str
    line: int


def load_pairs(path: Path, max_source_chars: int, max_target_chars: int) -> list[Pair]:
    """The rows of a .csv (a header with source,target; other columns ignored) or .jsonl file.

    Both fields must be non-empty printable ASCII within the length limits (``--max-source-chars``,
    ``--max-target-chars``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise DataError(path, None, f"unknown file extension '{path.suffix}': expected .csv or .jsonl")
    content = read_nonempty_text(path)
    rows = _csv_rows(path, content) if suffix == ".csv" else _jsonl_rows(path, content)
    if not rows:
        raise DataError(path, None, "no data rows")
    return [_checked(path, line, source, target, max_source_chars, max_target_chars) for line, source, target in rows]


def _csv_rows(path: Path, content: str) -> list[tuple[int, str, str]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    rows = []
    try:
        header = [name.strip() for name in next(reader)]
        for column in (SOURCE_COLUMN, TARGET_COLUMN):
            if column not in header:
                raise DataError(path, 1, f"missing column '{column}' (the header has: {', '.join(header)})")
        source_at, target_at = header.index(SOURCE_COLUMN), header.index(TARGET_COLUMN)
        end_of_previous = reader.line_num
        for fields in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(path, line, f"row has {len(fields)} fields but the header has {len(header)}")
            rows.append((line, fields[source_at], fields[target_at]))
    except csv.Error as exc:
        raise DataError(path, reader.line_num, f"malformed CSV: {exc}") from exc
    return rows


def _jsonl_rows(path: Path, content: str) -> list[tuple[int, str, str]]:
    return [
        (line, string_field(path, line, obj, SOURCE_COLUMN), string_field(path, line, obj, TARGET_COLUMN))
        for line, obj in iter_json_objects(path, content)
    ]


def _checked(path: Path, line: int, source: str, target: str, max_source: int, max_target: int) -> Pair:
    for name, value, limit, flag in (
        (SOURCE_COLUMN, source, max_source, "--max-source-chars"),
        (TARGET_COLUMN, target, max_target, "--max-target-chars"),
    ):
        if not value.strip():
            raise DataError(path, line, f"empty {name}")
        unknown = unknown_characters(value)
        if unknown:
            raise DataError(path, line, f"{name} has characters outside printable ASCII: {''.join(unknown)!r}")
        if len(value) > limit:
            raise DataError(path, line, f"{name} has {len(value)} characters, more than {limit} (raise {flag})")
    return Pair(source, target, line)
