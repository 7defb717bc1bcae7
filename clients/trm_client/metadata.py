"""Per-call metadata: the request id every call sends, merged with the client's own metadata."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

REQUEST_ID_KEY = "x-request-id"


def new_request_id() -> str:
    """A fresh random request id."""
    return uuid.uuid4().hex


def call_metadata(base: Sequence[tuple[str, str]], request_id: str) -> tuple[tuple[str, str], ...]:
    """The client's metadata plus ``x-request-id``; the same id goes with every retry of one call."""
    return (*((k, v) for k, v in base if k.lower() != REQUEST_ID_KEY), (REQUEST_ID_KEY, request_id))
