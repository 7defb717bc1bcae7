"""Reason calls taken from gRPC by the extra acceptors (api/call_acceptors.py): they run on the installed grpcio,
every call on every path is answered and accounted for, and where grpcio's internals differ the server falls
back to grpc.aio's own way."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry
from test_service_support import TEXT_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.api import call_acceptors
from trm_service.api.call_acceptors import CallAcceptors, entry_points_fit
from trm_service.observability.grpc_refusals import RefusedCallCounter
from trm_service.observability.metrics import ServiceMetrics
from trm_service.testing import ServerProcess

REASON = "/trm.v1.ReasoningService/Reason"
REASON_STREAM = "/trm.v1.ReasoningService/ReasonStream"
REFUSED = "trm_grpc_refused_total"
MAX_MESSAGE_BYTES = 4096
ACCEPTORS = 3
CALLS = 4 * (ACCEPTORS + 1)  # each of the method's outstanding requests (grpc.aio's own too) takes several


def _counter(registry: CollectorRegistry) -> RefusedCallCounter:
    counter = RefusedCallCounter(ServiceMetrics(registry), max_send_bytes=1 << 20)
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    counter.add_registered_method_handlers("trm.v1.ReasoningService", {"Reason": handler})
    return counter


def test_the_installed_grpcio_has_the_entry_points_the_acceptors_call() -> None:
    async def check() -> tuple[bool, bool]:
        server = grpc.aio.server()
        acceptors = CallAcceptors(server, _counter(CollectorRegistry()), (REASON,), ACCEPTORS)
        return entry_points_fit(server), acceptors.register()

    assert asyncio.run(check()) == (True, True)


def test_where_grpcio_differs_the_server_takes_calls_its_own_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point with other arguments than the acceptors pass (as a grpcio release may change them)."""

    async def handle_rpc(method_name, rpc_state, loop):  # one argument fewer than grpcio 1.85's
        return None

    monkeypatch.setattr(call_acceptors.cygrpc, "_handle_rpc", handle_rpc)

    async def check() -> tuple[bool, bool, int]:
        server = grpc.aio.server()
        acceptors = CallAcceptors(server, _counter(CollectorRegistry()), (REASON,), ACCEPTORS)
        return entry_points_fit(server), acceptors.register(), acceptors.running

    assert asyncio.run(check()) == (False, False, 0)


def test_a_call_found_in_the_registered_table_is_counted_if_its_request_never_arrives() -> None:
    """gRPC reads `request_streaming` of the handler it found before the request arrives; a call whose request
    arrived is not counted, however often gRPC reads it afterwards."""
    registry = CollectorRegistry()
    handler = _counter(registry).registered(REASON)

    async def call(request_arrives: bool) -> None:
        assert handler.request_streaming is False
        if request_arrives:
            assert handler.request_deserializer(b"raw") == b"raw"
            assert handler.request_streaming is False

    async def calls() -> None:
        await asyncio.gather(asyncio.create_task(call(False)), asyncio.create_task(call(True)))
        await asyncio.sleep(0)  # the tasks' done callbacks

    asyncio.run(calls())
    assert registry.get_sample_value(REFUSED, {"method": REASON, "reason": "request_not_received"}) == 1


@pytest.fixture(scope="module")
def server(text_bundle: Path):
    args = ["--max-message-bytes", str(MAX_MESSAGE_BYTES), "--call-acceptors", str(ACCEPTORS)]
    with ServerProcess([text_bundle], extra_args=args) as process:
        yield process


def test_the_server_says_how_many_acceptors_take_reason_and_stream_calls(server: ServerProcess) -> None:
    (serving,) = [r for r in server.log_records() if r.get("event") == "serving"]
    assert serving["call_acceptor_tasks"] == 2 * ACCEPTORS  # --call-acceptors for each of Reason and ReasonStream


def test_every_call_is_answered_whichever_request_takes_it(server: ServerProcess) -> None:
    texts = [f"play song number {i}" for i in range(CALLS)]
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        alone = [stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=t), timeout=30) for t in texts]
        with ThreadPoolExecutor(CALLS) as pool:
            together = list(pool.map(
                lambda t: stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=t), timeout=30), texts))
            streamed = list(pool.map(
                lambda t: list(stub.ReasonStream(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=t), timeout=30)), texts))
    assert [r.answer for r in together] == [r.answer for r in alone]
    assert [steps[-1].answer for steps in streamed] == [r.answer for r in alone]
    assert all(steps[-1].final for steps in streamed)
    wait_for(lambda: server.sample_value("trm_requests_total", method="Reason", code="OK") == 2 * CALLS)
    wait_for(lambda: server.sample_value("trm_requests_total", method="ReasonStream", code="OK") == CALLS)


@pytest.mark.parametrize("method", [REASON, REASON_STREAM])
def test_every_refused_call_is_counted_whichever_request_takes_it(server: ServerProcess, method: str) -> None:
    oversized = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="a" * (MAX_MESSAGE_BYTES + 10))
    before = server.sample_value(REFUSED, method=method, reason="request_not_received")
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        for _ in range(CALLS):
            with pytest.raises(grpc.RpcError) as caught:
                if method == REASON:
                    stub.Reason(oversized, timeout=30)
                else:
                    list(stub.ReasonStream(oversized, timeout=30))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    wait_for(lambda: server.sample_value(REFUSED, method=method, reason="request_not_received") == before + CALLS)
