"""Per-call metadata: the request id every call sends, merged with the client's own metadata."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
"""The server's limit on a caller's request id (docs/API.md)."""


_METADATA_KEY = re.compile(r"[0-9a-z_.-]+")  # gRPC's header names: lowercase, no space


def checked_metadata(metadata: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """A client's metadata as pairs gRPC can send: a ValueError naming the pair it could not (gRPC fails the call
    itself, as INTERNAL "Invalid metadata")."""
    pairs = tuple(metadata)
    for pair in pairs:
        key, value = pair if isinstance(pair, tuple) and len(pair) == 2 else (None, None)
        if not (isinstance(key, str) and _METADATA_KEY.fullmatch(key) and not key.startswith("grpc-")):
            raise ValueError(f"metadata {pair!r}: a key is lowercase letters, digits, '-', '_' and '.', and does "
                             "not start with 'grpc-' (e.g. ('authorization', 'Bearer ...'))")
        binary = key.endswith("-bin")
        if not (isinstance(value, bytes) if binary else isinstance(value, str) and value.isascii()
                and value.isprintable()):
            raise ValueError(f"metadata {pair!r}: the value of a key ending '-bin' is bytes, of any other key "
                             "printable ASCII text")
    return pairs


def new_request_id() -> str:
    """A fresh random request id."""
    return uuid.uuid4().hex


def chosen_request_id(request_id: str | None) -> str:
    """The caller's request id as given (checked by `call_metadata`), or a fresh one for None."""
    return new_request_id() if request_id is None else request_id


def call_metadata(base: Sequence[tuple[str, str]], request_id: str) -> tuple[tuple[str, str], ...]:
    """The client's metadata plus ``x-request-id``; the same id goes with every retry of one call.

    Raises:
        ValueError: for a request id the server would refuse, or gRPC could not send as a header.
    """
    if not (isinstance(request_id, str) and 0 < len(request_id) <= MAX_REQUEST_ID_CHARS
            and request_id.isascii() and request_id.isprintable() and request_id == request_id.strip()):
        raise ValueError(f"request_id {request_id!r} must be 1-{MAX_REQUEST_ID_CHARS} printable ASCII characters "
                         "with no space at either end; pass None for a fresh one")
    return (*((k, v) for k, v in base if k.lower() != REQUEST_ID_KEY), (REQUEST_ID_KEY, request_id))
