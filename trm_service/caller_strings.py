"""Strings that error messages and log lines repeat: a caller's, quoted and capped in length, and the hosted
models' names, capped in number.

A caller can send a model name or request id of almost any size; repeating it whole would let one
request grow an error trailer past the client's limit (it then sees RESOURCE_EXHAUSTED instead of
the real status) or write a megabyte log line. Every hosted model's name in one message does the same
on a server hosting many models (gRPC clients take trailers of 8 KiB).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

ECHO_CHARS = 64
"""Characters of a caller's string that messages and logs repeat."""
LISTED_NAMES = 10
"""Hosted models' names one message lists (at most 128 characters each)."""


def quote(value: str) -> str:
    """`value` quoted (repr, so control characters show as escapes); past ECHO_CHARS characters only
    the first ECHO_CHARS, an ellipsis and the full length: 'xxxx'… (5000 characters)."""
    if len(value) <= ECHO_CHARS:
        return repr(value)
    return f"{value[:ECHO_CHARS]!r}… ({len(value)} characters)"


def listed_names(names: Iterable[str], asked: str = "", empty: str = "none") -> str:
    """At most LISTED_NAMES of `names`, comma-separated: those most like `asked` first (a typo's model), then
    in sorted order; past them the count of the rest and where to see them all; `empty` when there are none."""
    ordered = sorted(names)
    if not ordered:
        return empty
    near = difflib.get_close_matches(asked, ordered, n=3) if asked else []
    shown = (near + [name for name in ordered if name not in near])[:LISTED_NAMES]
    rest = len(ordered) - len(shown)
    return ", ".join(shown) + (f" and {rest} more (ListModels names them all)" if rest else "")
