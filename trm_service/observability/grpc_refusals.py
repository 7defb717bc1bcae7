"""Counts the calls gRPC itself refuses, which the servicer never sees fail and so never counts as failed.

The server's whole method table is one generic handler (RefusedCallCounter), which gRPC asks for every
call, the refused ones included, before the service sees it:

- `unknown_method`: no service or method of that name; gRPC answers UNIMPLEMENTED.
- `request_not_received`: a unary-request method whose call ended before its request message reached the
  service. gRPC answers RESOURCE_EXHAUSTED itself for a message over `--max-message-bytes` (also one that
  only inflates past it) and for metadata over its header limit (16 KiB; from 8 KiB at random); a client
  that cancels, or whose deadline passes, before its request arrives ends the same way. gRPC Python tells
  the application none of these statuses, so they share one reason.
- `response_too_large`: the service answered with a message over `--max-message-bytes`; gRPC sent the
  client RESOURCE_EXHAUSTED instead (`trm_requests_total` has the service's own status).

The lookup runs inside the task that gRPC creates for the call, and so do the method's request
deserializer and response serializer: the lookup notes the task as awaiting its request, the wrapped
deserializer clears the note, and the task's end counts a note still there; the wrapped serializer counts
an answer over the limit. Request-streaming methods (only server reflection here) start before any message
arrives, so an oversized request on them is not counted. Reason and ReasonStream are also in gRPC's
registered-method table (for the extra acceptors, api/call_acceptors.py), where gRPC finds a handler without
the lookup: that handler (`registered`) notes its call when gRPC reads whether the method streams its
request, which it does first.

A server interceptor could see the same calls, but grpc.aio then runs an interceptor chain of coroutines
for every call: 11 µs of the event loop's CPU per request more than this table at 8 callers (intent, about
4 % of the loop's work; docs/EXPERIMENTS.md, 2026-11-30, "The request's record after its answer"). gRPC's
own per-call metrics (grpcio-observability's OpenTelemetry plugin, 1.85.0) see these calls too, but record
the oversized-message and oversized-metadata ones with status OK; the plugin also pins grpcio to its exact
release and, as an in-process collector, would miss the `--workers` merge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
import structlog

from trm_service.observability.metrics import (
    REQUEST_NOT_RECEIVED,
    RESPONSE_TOO_LARGE,
    UNKNOWN_METHOD,
    ServiceMetrics,
)

_log = structlog.get_logger("trm_service.requests")
_SHOWN_METHOD_CHARS = 64
_Task = asyncio.Task[Any]


class RefusedCallCounter(grpc.GenericRpcHandler):
    """The server's method table as one generic handler, counting refused calls in `trm_grpc_refused_total`
    and logging one `grpc_refused` line for each.

    Services are registered on it by name, as on a server (`add_registered_method_handlers`); the server gets
    it as its only handler. max_send_bytes: the server's `grpc.max_send_message_length`.
    """

    def __init__(self, metrics: ServiceMetrics, max_send_bytes: int) -> None:
        self._metrics = metrics
        self._max_send_bytes = max_send_bytes
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        self._awaiting_request: dict[_Task, str | None] = {}
        """Each call's task until it ends: its method while its request has not arrived, then None."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        """Serve `service`'s methods by name."""
        for name, handler in handlers.items():
            method = f"/{service}/{name}"
            self._methods[method] = self._tracking(method, handler)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = self._methods.get(method)
        if handler is None:
            self._refused("", UNKNOWN_METHOD, shown=_shorten(method))
            return None
        if not handler.request_streaming:
            self._note_call(method)
        return handler

    def registered(self, method: str) -> grpc.RpcMethodHandler:
        """`method`'s handler for gRPC's registered-method table (`grpc.aio.Server.add_registered_method_handlers`),
        where gRPC finds it without asking `service`: the call is noted when gRPC first reads whether the method
        streams its request, which it does before the request arrives. Unary-request methods only."""
        handler = self._methods[method]
        if handler.request_streaming:
            raise ValueError(f"{method} streams its request: its calls are not tracked (see the module docstring)")
        return _NotingHandler(handler, partial(self._note_call, method))

    def _note_call(self, method: str) -> None:
        """Note the running call's task as awaiting its request (once per task)."""
        task = asyncio.current_task()
        if task is not None and task not in self._awaiting_request:
            self._awaiting_request[task] = method
            task.add_done_callback(self._call_ended)

    def _tracking(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with a (de)serializer pair that notes the request's arrival and counts a response over
        the limit."""
        kind = f"{_arity(handler.request_streaming)}_{_arity(handler.response_streaming)}"
        return getattr(grpc, f"{kind}_rpc_method_handler")(
            getattr(handler, kind),
            partial(self._request_received, handler.request_deserializer),
            partial(self._response_serialized, method, handler.response_serializer),
        )

    def _request_received(self, deserializer: Callable[[bytes], Any] | None, raw: bytes) -> Any:
        task = asyncio.current_task()
        if task in self._awaiting_request:
            self._awaiting_request[task] = None  # type: ignore[index]
        return raw if deserializer is None else deserializer(raw)

    def _response_serialized(self, method: str, serializer: Callable[[Any], bytes] | None, message: Any) -> bytes:
        raw = message if serializer is None else serializer(message)
        if len(raw) > self._max_send_bytes:
            self._refused(method, RESPONSE_TOO_LARGE, shown=method)
        return raw

    def _call_ended(self, task: _Task) -> None:
        method = self._awaiting_request.pop(task, None)
        if method is not None:
            self._refused(method, REQUEST_NOT_RECEIVED, shown=method)

    def _refused(self, method: str, reason: str, *, shown: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.grpc_refused, method, reason).inc()
        _log.info("grpc_refused", method=shown, reason=reason)


class _NotingHandler(grpc.RpcMethodHandler):
    """A unary-request method's handler that notes its call when gRPC reads `request_streaming`
    (RefusedCallCounter.registered); every other attribute is the wrapped handler's."""

    def __init__(self, handler: grpc.RpcMethodHandler, note: Callable[[], None]) -> None:
        self._note = note
        self.response_streaming = handler.response_streaming
        self.request_deserializer = handler.request_deserializer
        self.response_serializer = handler.response_serializer
        self.unary_unary = handler.unary_unary
        self.unary_stream = handler.unary_stream
        self.stream_unary = handler.stream_unary
        self.stream_stream = handler.stream_stream

    @property
    def request_streaming(self) -> bool:
        self._note()
        return False


def _arity(streaming: bool) -> str:
    return "stream" if streaming else "unary"


def _shorten(text: str) -> str:
    """A caller-chosen name as it may be logged: at most 64 characters, then an ellipsis and the length."""
    if len(text) <= _SHOWN_METHOD_CHARS:
        return text
    return f"{text[:_SHOWN_METHOD_CHARS]}… ({len(text)} characters)"
