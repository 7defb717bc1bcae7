"""Counts the calls gRPC itself refuses, which the servicer never sees fail and so never counts as failed.

A server interceptor sees every call, the refused ones included, before the service does:

- `unknown_method`: no service or method of that name; gRPC answers UNIMPLEMENTED.
- `request_not_received`: a unary-request method whose call ended before its request message reached the
  service. gRPC answers RESOURCE_EXHAUSTED itself for a message over `--max-message-bytes` (also one that
  only inflates past it) and for metadata over its header limit (16 KiB; from 8 KiB at random); a client
  that cancels, or whose deadline passes, before its request arrives ends the same way. gRPC Python tells
  the application none of these statuses, so they share one reason.
- `response_too_large`: the service answered with a message over `--max-message-bytes`; gRPC sent the
  client RESOURCE_EXHAUSTED instead (`trm_requests_total` has the service's own status).

The interceptor runs inside the task that gRPC creates for the call, and so do the method's request
deserializer and response serializer: wrapped, they note against that task whether the request arrived
and whether a response was too large, and the task's end settles the count. Request-streaming
methods (only server reflection here) start before any message arrives, so an oversized request on
them is not counted.

gRPC's own per-call metrics (grpcio-observability's OpenTelemetry plugin, 1.85.0) see these calls too, but
record the oversized-message and oversized-metadata ones with status OK; the plugin also pins grpcio to
its exact release and, as an in-process collector, would miss the `--workers` merge. Hence an interceptor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass
class _Call:
    """What one call's (de)serializers saw."""

    request_streaming: bool
    received: bool = False
    response_too_large: bool = False


class RefusedCallCounter(grpc.aio.ServerInterceptor):
    """Counts refused calls in `trm_grpc_refused_total` and logs one `grpc_refused` line for each.

    max_send_bytes: the server's `grpc.max_send_message_length` (`--max-message-bytes`).
    """

    def __init__(self, metrics: ServiceMetrics, max_send_bytes: int) -> None:
        self._metrics = metrics
        self._max_send_bytes = max_send_bytes
        self._calls: dict[_Task | None, _Call] = {}
        self._tracked: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = await continuation(handler_call_details)
        if handler is None:
            self._refused("", UNKNOWN_METHOD, shown=_shorten(method))
            return None
        task = asyncio.current_task()
        if task is None:
            return handler
        self._calls[task] = _Call(handler.request_streaming)
        task.add_done_callback(partial(self._call_ended, method))
        return self._tracking(method, handler)

    def _tracking(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with a (de)serializer pair that notes what happened in the call's task; built once per
        method."""
        known = self._tracked.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        kind = f"{_arity(handler.request_streaming)}_{_arity(handler.response_streaming)}"
        tracking = getattr(grpc, f"{kind}_rpc_method_handler")(
            getattr(handler, kind),
            partial(self._request_received, handler.request_deserializer),
            partial(self._response_serialized, handler.response_serializer),
        )
        self._tracked[method] = (handler, tracking)
        return tracking

    def _request_received(self, deserializer: Callable[[bytes], Any] | None, raw: bytes) -> Any:
        call = self._calls.get(asyncio.current_task())
        if call is not None:
            call.received = True
        return raw if deserializer is None else deserializer(raw)

    def _response_serialized(self, serializer: Callable[[Any], bytes] | None, message: Any) -> bytes:
        raw = message if serializer is None else serializer(message)
        if len(raw) > self._max_send_bytes:
            call = self._calls.get(asyncio.current_task())
            if call is not None:
                call.response_too_large = True
        return raw

    def _call_ended(self, method: str, task: _Task) -> None:
        call = self._calls.pop(task)
        if call.response_too_large:
            self._refused(method, RESPONSE_TOO_LARGE, shown=method)
        elif not call.received and not call.request_streaming:
            self._refused(method, REQUEST_NOT_RECEIVED, shown=method)

    def _refused(self, method: str, reason: str, *, shown: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.grpc_refused, method, reason).inc()
        _log.info("grpc_refused", method=shown, reason=reason)


def _arity(streaming: bool) -> str:
    return "stream" if streaming else "unary"


def _shorten(text: str) -> str:
    """A caller-chosen name as it may be logged: at most 64 characters, then an ellipsis and the length."""
    if len(text) <= _SHOWN_METHOD_CHARS:
        return text
    return f"{text[:_SHOWN_METHOD_CHARS]}… ({len(text)} characters)"
