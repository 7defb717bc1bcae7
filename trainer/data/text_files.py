"""The user's own labelled texts: .csv (columns text,label) or .jsonl (objects with text,label)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from trainer.data.containers import TextSplit
from trainer.data.errors import DataError
from trainer.data.jsonl import iter_json_objects, string_field
from trainer.data.reading import read_nonempty_text

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"


def load_text_file(path: Path) -> TextSplit:
    """Load labelled texts from a .csv (header with text,label; other columns ignored) or .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise DataError(path, None, f"unknown file extension '{path.suffix}': expected .csv or .jsonl")
    content = read_nonempty_text(path)
    rows = _csv_rows(path, content) if suffix == ".csv" else _jsonl_rows(path, content)
    if not rows:
        raise DataError(path, None, "no data rows")
    lines, texts, labels = (list(column) for column in zip(*rows, strict=True))
    return TextSplit(texts, labels, lines)


def check_label_coverage(train: TextSplit, test: TextSplit, test_path: str | Path) -> None:
    """Raise DataError at the first test row whose label never appears in the training data."""
    known = set(train.labels)
    for index, label in enumerate(test.labels):
        if label not in known:
            line = None if test.lines is None else test.lines[index]
            row = f" (test row {index + 1})" if line is None else ""
            raise DataError(test_path, line, f"label '{label}'{row} never appears in the training data")


def _csv_rows(path: Path, content: str) -> list[tuple[int, str, str]]:
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
        for column in (TEXT_COLUMN, LABEL_COLUMN):
            if column not in header:
                raise DataError(path, 1, f"missing column '{column}' (the header has: {', '.join(header)})")
        text_at, label_at = header.index(TEXT_COLUMN), header.index(LABEL_COLUMN)
        rows = []
        end_of_previous = reader.line_num
        for fields in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(path, line, f"row has {len(fields)} fields but the header has {len(header)}")
            rows.append(_checked_row(path, line, fields[text_at], fields[label_at]))
    except csv.Error as exc:
        raise DataError(path, reader.line_num, f"malformed CSV: {exc}") from exc
    return rows


def _jsonl_rows(path: Path, content: str) -> list[tuple[int, str, str]]:
    return [
        _checked_row(
            path,
            line,
            string_field(path, line, obj, TEXT_COLUMN),
            string_field(path, line, obj, LABEL_COLUMN),
        )
        for line, obj in iter_json_objects(path, content)
    ]


def _checked_row(path: Path, line: int, text: str, label: str) -> tuple[int, str, str]:
    if not text.strip():
        raise DataError(path, line, "empty text")
    if not label.strip():
        raise DataError(path, line, "empty label")
    return line, text, label
