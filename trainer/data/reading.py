"""Reading a data file's text, with decoding problems reported as DataError."""

from __future__ import annotations

from pathlib import Path

from trainer.data.errors import DataError


def read_text(path: Path) -> str:
    """The file's content decoded as UTF-8 (a leading byte-order mark is dropped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, line, "not valid UTF-8 text") from exc


def read_nonempty_text(path: Path) -> str:
    """Like read_text, but an empty (or whitespace-only) file is a DataError."""
    text = read_text(path)
    if not text.strip():
        raise DataError(path, None, "file is empty")
    return text
