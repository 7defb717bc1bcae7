"""Reading a data file's text, with every problem reported as DataError."""

from __future__ import annotations

from pathlib import Path

from trainer.data.errors import DataError


def read_nonempty_text(path: Path) -> str:
    """The file's content decoded as UTF-8 (a leading byte-order mark dropped); it must not be blank."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, line, "not valid UTF-8 text") from exc
    if not text.strip():
        raise DataError(path, None, "file is empty")
    return text
