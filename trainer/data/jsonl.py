"""JSON Lines parsing with errors located by file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainer.data.errors import DataError


def iter_json_objects(path: Path, content: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line; anything but a JSON object is an error."""
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(path, number, f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(value, dict):
            raise DataError(path, number, f"expected a JSON object, got {type(value).__name__}")
        yield number, value


def string_field(path: Path, line: int, obj: dict[str, Any], key: str) -> str:
    """obj[key], which must be present and a string."""
    if key not in obj:
        raise DataError(path, line, f"missing field '{key}'")
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(path, line, f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def first_json_object(path: Path) -> dict[str, Any] | None:
    """The object on the first non-blank line of a JSON Lines file, or None if it is not an object."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    value = json.loads(line)
                    return value if isinstance(value, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None
