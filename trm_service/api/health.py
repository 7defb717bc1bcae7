"""The standard health service (grpc.health.v1): the server (`""`), the API and every hosted model by name.

gRPC's own servicer, with three changes: requests arrive as raw bytes, so that a malformed body is
INVALID_ARGUMENT (gRPC's deserializer made it UNKNOWN); an unknown name in `Check` is NOT_FOUND with a message
naming the names there are (gRPC's had none); and the Watch streams end with UNAVAILABLE once the server stops
taking calls (`stop_watching`).
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2

from trm_service.api.servicer import SERVICE_NAME
from trm_service.api.validation import RequestError, parse_message
from trm_service.caller_strings import listed_names, quote

OVERALL_HEALTH = ""
HEALTH_SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _HealthServicer(health.aio.HealthServicer):
    """gRPC's health servicer on raw-bytes requests, with named NOT_FOUND answers, whose Watch streams end with
    UNAVAILABLE once the server stops taking calls (`end_watches`): open as long as their clients (gRPC's
    client-side health checking keeps one on each connection), they held every stop for its whole grace
    period, a second signal's too."""

    def __init__(self) -> None:
        super().__init__()
        self._stopping = asyncio.Event()
        self._names: set[str] = set()

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        self._names.add(service)
        await super().set(service, status)

    async def Check(self, raw: bytes, context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        request = await _parsed(raw, context)
        if request.service not in self._names:
            models = listed_names(self._names - {OVERALL_HEALTH, SERVICE_NAME}, request.service, "none hosted")
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no health status for {quote(request.service)}: ask for '' (the server), "
                                f"{SERVICE_NAME!r} or a model: {models}")
        return await super().Check(request, context)

    async def Watch(self, raw: bytes, context: grpc.aio.ServicerContext) -> None:
        request = await _parsed(raw, context)
        watching = asyncio.ensure_future(super().Watch(request, context))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((watching, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            stopping.cancel()
        if self._stopping.is_set():  # ended from this task: cancelled, gRPC's call would stay open
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
        watching.result()  # the stream's own end: an error of its writes

    def end_watches(self) -> None:
        self._stopping.set()


async def _parsed(raw: bytes, context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckRequest:
    """The request in `raw`; a malformed one ends the call INVALID_ARGUMENT."""
    try:
        return parse_message(health_pb2.HealthCheckRequest, raw)
    except RequestError as error:
        await context.abort(error.code, error.message)
        raise  # abort raises; this line is never reached


class ModelHealth:
    """The health service: the server, the API and every hosted model by name."""

    def __init__(self) -> None:
        self._servicer = _HealthServicer()
        self._models: set[str] = set()

    def methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's methods by name, on raw-bytes requests."""
        serialize = health_pb2.HealthCheckResponse.SerializeToString
        return {
            "Check": grpc.unary_unary_rpc_method_handler(self._servicer.Check, response_serializer=serialize),
            "Watch": grpc.unary_stream_rpc_method_handler(self._servicer.Watch, response_serializer=serialize),
        }

    async def sync(self, models: set[str]) -> None:
        """Mark `models` SERVING and models that went away NOT_SERVING; the server and the API are SERVING
        while it hosts a model at all."""
        for name in self._models - models:
            await self._servicer.set(name, _NOT_SERVING)
        for name in models:
            await self._servicer.set(name, _SERVING)
        for name in (OVERALL_HEALTH, SERVICE_NAME):
            await self._servicer.set(name, _SERVING if models else _NOT_SERVING)
        self._models = set(models)

    async def drain(self) -> None:
        """Every name NOT_SERVING from now on (the Watch streams say so, and stay open until `stop_watching`)."""
        await self._servicer.enter_graceful_shutdown()

    def stop_watching(self) -> None:
        """End the Watch streams: the server is about to stop taking calls."""
        self._servicer.end_watches()
