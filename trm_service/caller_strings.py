"""Strings that callers send, as error messages and log lines repeat them: quoted, and capped in length.

A caller can send a model name or request id of almost any size; repeating it whole would let one
request grow an error trailer past the client's limit (it then sees RESOURCE_EXHAUSTED instead of
the real status) or write a megabyte log line.
"""

from __future__ import annotations

ECHO_CHARS = 64
"""Characters of a caller's string that messages and logs repeat."""


def quote(value: str) -> str:
    """`value` quoted (repr, so control characters show as escapes); past ECHO_CHARS characters only
    the first ECHO_CHARS, an ellipsis and the full length: 'xxxx'… (5000 characters)."""
    if len(value) <= ECHO_CHARS:
        return repr(value)
    return f"{value[:ECHO_CHARS]!r}… ({len(value)} characters)"
