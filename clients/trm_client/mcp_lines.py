"""The lines of stdin for the MCP SDK's stdio transport, each line it cannot parse answered at once.

The SDK (mcp 2.3) drops a line it cannot parse without a reply, so a host waits for that request's id
forever: text that is not JSON, or a request whose strings hold a lone surrogate escape (`"\\ud800"`, half
of a character, which JSON parsers differ on); it reads a request whose id is null as a notification, and
drops it too. Each such line gets a JSON-RPC error instead, with the request's id where the line has one,
and is not passed on; so does a `tools/call` whose params the SDK would refuse without naming the field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from io import TextIOWrapper
from typing import Any

import anyio
import mcp_types as types
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

NULL_ID = "Invalid request: id is null; a request's id is a string or an integer (a notification has no id)"


class AnsweredLines:
    """stdin's lines, less those the SDK cannot parse, which are answered on `replies` (set it to the
    transport's write stream before the transport reads)."""

    def __init__(self) -> None:
        self._stdin = TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        self.replies: WriteStream[SessionMessage] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._parsable()

    async def _lines(self) -> AsyncIterator[str]:
        """stdin's lines, each read in a worker thread that a cancellation abandons: Ctrl-C stops the server
        while it waits for the host (anyio's own file wrapper waits for the line first)."""
        while line := await anyio.to_thread.run_sync(self._stdin.readline, abandon_on_cancel=True):
            yield line

    async def _parsable(self) -> AsyncIterator[str]:
        async for line in self._lines():
            try:
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValidationError as error:
                await self._reply(unparsable_reply(line, error))
                continue
            if isinstance(message, types.JSONRPCNotification) and _has_null_id(line):
                await self._reply(_error(None, types.INVALID_REQUEST, NULL_ID))
                continue
            if isinstance(message, types.JSONRPCRequest) and (refused := _call_params_error(message)):
                await self._reply(refused)
                continue
            yield line

    async def _reply(self, error: types.JSONRPCError) -> None:
        if self.replies is None:
            raise RuntimeError("AnsweredLines.replies must be set before the transport reads")
        await self.replies.send(SessionMessage(error))


def unparsable_reply(line: str, error: ValidationError) -> types.JSONRPCError:
    """The JSON-RPC error for a line the SDK could not parse (`error`): a parse error for text that is not
    JSON, an invalid request otherwise, with the line's request id where it has one."""
    try:
        message = json.loads(line)
    except ValueError:
        return _error(None, types.PARSE_ERROR, "Parse error: the line is not JSON (one JSON-RPC message per line)")
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    if _holds_lone_surrogate(message):
        return _error(request_id, types.PARSE_ERROR, "Parse error: a string holds a lone surrogate escape (half of a "
                      "character, such as \\ud800): send whole characters")
    return _error(request_id, types.INVALID_REQUEST, f"Invalid request: {_fields(error)}")


def _call_params_error(request: types.JSONRPCRequest) -> types.JSONRPCError | None:
    """-32602 naming the fields of a `tools/call` whose params the SDK cannot read (arguments as a JSON string, a
    name missing or not a string), which the SDK refuses as "Invalid request parameters" alone; None otherwise."""
    if request.method != "tools/call":
        return None
    try:
        types.CallToolRequestParams.model_validate(request.params or {})
    except ValidationError as error:
        return _error(request.id, types.INVALID_PARAMS, f"Invalid params of tools/call: {_fields(error)} (params are "
                      '{"name": "<a tool from tools/list>", "arguments": {...}}, arguments a JSON object)')
    return None


def _fields(error: ValidationError) -> str:
    """The first three problems of `error`, each after the field it is in."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in error.errors()[:3])


def _has_null_id(line: str) -> bool:
    """Whether a line the SDK read as a notification (a message without an id) has `"id": null`: a request
    whose id MCP forbids, which the SDK would drop as an unknown notification."""
    message = json.loads(line)
    return isinstance(message, dict) and "id" in message and message["id"] is None


def _error(request_id: int | str | None, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


def _holds_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(key) or _holds_lone_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(item) for item in value)
    return False
