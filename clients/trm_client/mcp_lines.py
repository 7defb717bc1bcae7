"""The lines of stdin for the MCP SDK's stdio transport, each line it cannot parse answered at once.

The SDK (mcp 2.3) drops a line it cannot parse without a reply, so a host waits for that request's id
forever: text that is not JSON, or a request whose strings hold a lone surrogate escape (`"\\ud800"`, half
of a character, which JSON parsers differ on); it reads a request whose id is null as a notification, and
drops it too, as it does one whose id is a fraction, true or false, an array or an object (an id such as `2.0`,
which JSON writers that have floats only send, is read as the integer it is). Each such line gets a JSON-RPC
error instead, with the request's id where the line has one,
and is not passed on; so do a `tools/call` or an `initialize` whose params the SDK would refuse without naming
the field, and a request the server serves sent before `initialize`, which the SDK refuses as "Invalid request
parameters" alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from io import TextIOWrapper
from typing import Any

import anyio
import mcp_types as types
from mcp.shared._stream_protocols import WriteStream
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, ValidationError

REQUEST_ID = "a request's id is a string or an integer (a notification has no id)"
BEFORE_INITIALIZE = ("the session is not initialized: send the initialize request first, then the "
                     "notifications/initialized notification (the MCP lifecycle); only ping is answered before")
# The requests the SDK takes before the session opens: the handshake's, and 2026-07-28's discovery (that revision has
# no session: each of its requests carries the protocol version in its _meta, and is served without initialize).
SESSION_EXEMPT = frozenset({"initialize", "ping", "server/discover"})


class AnsweredLines:
    """stdin's lines, less those the SDK cannot parse, which are answered on `replies` (set it to the
    transport's write stream before the transport reads); `serves(method)` says whether the server has a
    handler for a request's method (one it has not is the SDK's to refuse, before `initialize` too).

    At the end of stdin the lines end only once every request passed on has been answered (`answered`, which the
    server's replies call) or cancelled, or `drain_s` has passed: the SDK ends its session at the end of its input
    and cancels the calls still running, so a host that wrote its requests and closed the pipe lost their answers."""

    def __init__(self, serves: Callable[[str], bool], drain_s: float) -> None:
        self._stdin = TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
        self._serves = serves
        self._drain_s = drain_s
        self._initialized = False
        self._unanswered: set[types.RequestId] = set()
        self.replies: WriteStream[SessionMessage] | None = None

    @property
    def session_open(self) -> bool:
        """Whether a session was opened by the handshake (`initialize`, or the initialized notification)."""
        return self._initialized

    def answered(self, request_id: types.RequestId) -> None:
        """A reply to `request_id` went out."""
        self._unanswered.discard(request_id)

    async def _until_answered(self) -> None:
        with anyio.move_on_after(self._drain_s):
            while self._unanswered:
                await anyio.sleep(0.01)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._parsable()

    async def _lines(self) -> AsyncIterator[str]:
        """stdin's lines, each read in a worker thread that a cancellation abandons: Ctrl-C stops the server
        while it waits for the host (anyio's own file wrapper waits for the line first)."""
        while line := await anyio.to_thread.run_sync(self._stdin.readline, abandon_on_cancel=True):
            yield line

    async def _parsable(self) -> AsyncIterator[str]:
        async for line_read in self._lines():
            read = line_read.removeprefix("\ufeff")  # a byte-order mark, which some writers put first
            decoded = _json_object(read)
            line = _with_whole_number_id(read, decoded)
            try:
                message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
            except ValidationError as error:
                await self._reply(unparsable_reply(line, error))
                continue
            if isinstance(message, types.JSONRPCNotification) and decoded is not None and "id" in decoded:
                # an id MCP forbids (null, a fraction, true or false, an array or an object): the SDK would drop
                # the request as an unknown notification
                refused = f"Invalid request: id is {json.dumps(decoded['id'])}; {REQUEST_ID}"
                await self._reply(_error(None, types.INVALID_REQUEST, refused))
                continue
            if isinstance(message, types.JSONRPCRequest) and (refused := self._request_error(message)):
                await self._reply(refused)
                continue
            self._initialized = self._initialized or _opens_session(message)
            self._note_in_flight(message)
            yield line
        await self._until_answered()

    def _note_in_flight(self, message: types.JSONRPCMessage) -> None:
        if isinstance(message, types.JSONRPCRequest):
            self._unanswered.add(message.id)
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/cancelled":
            self._unanswered.discard((message.params or {}).get("requestId"))  # the SDK answers it no more

    def _request_error(self, request: types.JSONRPCRequest) -> types.JSONRPCError | None:
        """The error for a request the SDK would refuse without saying why; None for one it can take."""
        if (not self._initialized and request.method not in SESSION_EXEMPT and not _is_sessionless(request)
                and self._serves(request.method)):
            return _error(request.id, types.INVALID_PARAMS, f"{request.method} before initialize: {BEFORE_INITIALIZE}")
        return _params_error(request)

    async def _reply(self, error: types.JSONRPCError) -> None:
        if self.replies is None:
            raise RuntimeError("AnsweredLines.replies must be set before the transport reads")
        await self.replies.send(SessionMessage(error))


def _is_sessionless(request: types.JSONRPCRequest) -> bool:
    """Whether the request is of a revision without a session (2026-07-28 and later): its _meta names its version."""
    meta = (request.params or {}).get("_meta")
    return isinstance(meta, dict) and types.PROTOCOL_VERSION_META_KEY in meta


def _opens_session(message: types.JSONRPCMessage) -> bool:
    """Whether the SDK opens the session to other requests on `message` (one that passed `_request_error`): an
    initialize request, or the initialized notification."""
    if isinstance(message, types.JSONRPCNotification):
        return message.method == "notifications/initialized"
    return isinstance(message, types.JSONRPCRequest) and message.method == "initialize"


def unparsable_reply(line: str, error: ValidationError) -> types.JSONRPCError:
    """The JSON-RPC error for a line the SDK could not parse (`error`): a parse error for text that is not
    JSON, an invalid request otherwise, with the line's request id where it has one."""
    try:
        message = json.loads(line)
    except ValueError:
        return _error(None, types.PARSE_ERROR, "Parse error: the line is not JSON (one JSON-RPC message per line)")
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str) or _holds_lone_surrogate(request_id):
        request_id = None  # an id with half a character cannot be written back (UTF-8 has no lone surrogate)
    if _holds_lone_surrogate(message):
        return _error(request_id, types.PARSE_ERROR, "Parse error: a string holds a lone surrogate escape (half of a "
                      "character, such as \\ud800): send whole characters")
    return _error(request_id, types.INVALID_REQUEST, f"Invalid request: {_fields(error)}")


# The params the SDK refuses as "Invalid request parameters" alone, by method: their model, and their shape
CHECKED_PARAMS: dict[str, tuple[type[BaseModel], str]] = {
    "tools/call": (types.CallToolRequestParams,
                   '{"name": "<a tool from tools/list>", "arguments": {...}}, arguments a JSON object'),
    "initialize": (types.InitializeRequestParams, f'{{"protocolVersion": "{types.LATEST_PROTOCOL_VERSION}", '
                   '"capabilities": {}, "clientInfo": {"name": "...", "version": "..."}}'),
}


def _params_error(request: types.JSONRPCRequest) -> types.JSONRPCError | None:
    """-32602 naming the fields of a `tools/call` or `initialize` whose params the SDK cannot read (arguments as a
    JSON string, a name or a protocol version missing), which the SDK refuses as "Invalid request parameters"
    alone; None otherwise."""
    if request.method not in CHECKED_PARAMS:
        return None
    model, shape = CHECKED_PARAMS[request.method]
    try:
        model.model_validate(request.params or {})
    except ValidationError as error:
        return _error(request.id, types.INVALID_PARAMS,
                      f"Invalid params of {request.method}: {_fields(error)} (params are {shape})")
    return None


def _fields(error: ValidationError) -> str:
    """The first three problems of `error`, each after the field it is in."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}" for e in error.errors()[:3])


def _json_object(line: str) -> dict[str, Any] | None:
    """The line's JSON object; None for a line that is not one."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _with_whole_number_id(line: str, decoded: dict[str, Any] | None) -> str:
    """The line (`decoded` its JSON object) with an id such as `2.0` written as the integer it is (JSON writers that
    have floats only send them; the SDK would read the request as a notification and drop it); else as it is."""
    request_id = None if decoded is None else decoded.get("id")
    if isinstance(request_id, float) and request_id.is_integer():
        return json.dumps(decoded | {"id": int(request_id)})
    return line


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
