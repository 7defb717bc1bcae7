"""Calls that gRPC itself refuses (oversized message, metadata or answer; unknown method) are counted in
trm_grpc_refused_total and logged, on a real server, while the service's own answers are not."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_service_support import TEXT_MODEL, make_bundle, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

MAX_MESSAGE_BYTES = 4096
METADATA_HARD_LIMIT = 16 * 1024  # gRPC's grpc.absolute_max_metadata_size; above 8 KiB it refuses at random
REFUSED = "trm_grpc_refused_total"
REASON = "/trm.v1.ReasoningService/Reason"
REASON_STREAM = "/trm.v1.ReasoningService/ReasonStream"
LIST_MODELS = "/trm.v1.ReasoningService/ListModels"
GET_MODEL = "/trm.v1.ReasoningService/GetModel"
WIDE_MODEL = "svc-wide"
WIDE_LABELS = [f"label-{i:03d}" for i in range(500)]  # its ModelInfo is about 5.5 KB, over the limit
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# The client may send what the server refuses: no send limit, and a large metadata limit.
CLIENT_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_metadata_size", 1 << 20)]
OVERSIZED_TEXT = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="a" * (MAX_MESSAGE_BYTES + 10))
BIG_METADATA = (("x-padding", "p" * (METADATA_HARD_LIMIT + 100)),)


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random text classifier with 500 labels."""
    return make_bundle(tmp_path_factory.mktemp("wide"), "text", name=WIDE_MODEL, labels=WIDE_LABELS)


@pytest.fixture(scope="module")
def server(text_bundle: Path, wide_bundle: Path) -> Iterator[ServerProcess]:
    limit = ["--max-message-bytes", str(MAX_MESSAGE_BYTES)]
    with ServerProcess([text_bundle, wide_bundle], extra_args=limit) as process:
        yield process


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target, options=CLIENT_OPTIONS) as channel:
        yield channel


def _reason(channel: grpc.Channel) -> None:
    trm_pb2_grpc.ReasoningServiceStub(channel).Reason(OVERSIZED_TEXT, timeout=30)


def _reason_stream(channel: grpc.Channel) -> None:
    list(trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(OVERSIZED_TEXT, timeout=30))


def _inflating(channel: grpc.Channel) -> None:
    """A gzip message of about 2 KB that inflates to 100 KB, 25 times the limit."""
    request = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="a" * 100_000)
    trm_pb2_grpc.ReasoningServiceStub(channel).Reason(request, timeout=30, compression=grpc.Compression.Gzip)


def _big_metadata(channel: grpc.Channel) -> None:
    trm_pb2_grpc.ReasoningServiceStub(channel).ListModels(trm_pb2.ListModelsRequest(), metadata=BIG_METADATA)


def _big_metadata_in_parts(channel: grpc.Channel) -> None:
    parts = tuple((f"x-part-{i}", "p" * 6000) for i in range(3))
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), metadata=parts, timeout=30)


def _wide_model_info(channel: grpc.Channel) -> None:
    trm_pb2_grpc.ReasoningServiceStub(channel).GetModel(trm_pb2.GetModelRequest(name=WIDE_MODEL), timeout=30)


def _unknown_method(channel: grpc.Channel) -> None:
    channel.unary_unary("/trm.v1.ReasoningService/Solve")(b"", timeout=30)


def _unknown_service(channel: grpc.Channel) -> None:
    channel.unary_unary("/trm.v2.ReasoningService/Reason")(b"", timeout=30)


RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
CASES = [
    pytest.param(_reason, RESOURCE_EXHAUSTED, "Received message larger than max", REASON,
                 "request_not_received", id="message over the limit"),
    pytest.param(_reason_stream, RESOURCE_EXHAUSTED, "Received message larger than max", REASON_STREAM,
                 "request_not_received", id="message over the limit, streamed answer"),
    pytest.param(_inflating, RESOURCE_EXHAUSTED, "Decompressed message larger than max", REASON,
                 "request_not_received", id="compressed message that inflates over the limit"),
    pytest.param(_big_metadata, RESOURCE_EXHAUSTED, "received metadata size exceeds hard limit", LIST_MODELS,
                 "request_not_received", id="one metadata value over 16 KiB"),
    pytest.param(_big_metadata_in_parts, RESOURCE_EXHAUSTED, "received metadata size exceeds hard limit",
                 HEALTH_CHECK, "request_not_received", id="metadata over 16 KiB in three values, health"),
    pytest.param(_wide_model_info, RESOURCE_EXHAUSTED, "Sent message larger than max", GET_MODEL,
                 "response_too_large", id="answer over the limit"),
    pytest.param(_unknown_method, grpc.StatusCode.UNIMPLEMENTED, "Method not found", "", "unknown_method",
                 id="unknown method"),
    pytest.param(_unknown_service, grpc.StatusCode.UNIMPLEMENTED, "Method not found", "", "unknown_method",
                 id="unknown service"),
]


@pytest.mark.parametrize(("call", "code", "message", "method", "reason"), CASES)
def test_each_refusal_is_counted_once_under_its_method_and_reason(
    server: ServerProcess, channel: grpc.Channel, call: Callable[[grpc.Channel], None], code: grpc.StatusCode,
    message: str, method: str, reason: str,
) -> None:
    before = server.sample_value(REFUSED, method=method, reason=reason)
    total_before = server.sample_value(REFUSED)
    with pytest.raises(grpc.RpcError) as caught:
        call(channel)
    assert caught.value.code() == code and message in caught.value.details()
    wait_for(lambda: server.sample_value(REFUSED) > total_before)
    assert server.sample_value(REFUSED, method=method, reason=reason) == before + 1
    assert server.sample_value(REFUSED) == total_before + 1


def test_a_client_that_gives_up_before_sending_its_request_is_counted_too(server, channel) -> None:
    """gRPC Python does not tell the service why a call ended without its request: a deadline that passed
    first ends like an oversized message, and is counted under the same reason."""
    release = threading.Event()

    def never_sent() -> Iterator[bytes]:
        release.wait(30)
        yield b""

    before = server.sample_value(REFUSED, method=REASON, reason="request_not_received")
    try:
        with pytest.raises(grpc.RpcError) as caught:
            channel.stream_unary(REASON)(never_sent(), timeout=0.5)
    finally:
        release.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: server.sample_value(REFUSED, method=REASON, reason="request_not_received") == before + 1)


def test_answers_of_the_service_itself_are_not_counted_as_refused(server, channel) -> None:
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    refused = server.sample_value(REFUSED)
    answered = server.sample_value("trm_requests_total")
    assert stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="play some jazz"), timeout=30).steps >= 1
    with pytest.raises(grpc.RpcError) as caught:
        stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=""), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    wait_for(lambda: server.sample_value("trm_requests_total") == answered + 2)
    assert server.sample_value(REFUSED) == refused


def test_refusals_are_logged_with_unknown_method_names_shortened(server, channel) -> None:
    long_name = "/trm.v1.ReasoningService/" + "x" * 5000
    with pytest.raises(grpc.RpcError):
        channel.unary_unary(long_name)(b"", timeout=30)

    def logged() -> list[dict]:
        return [r for r in server.log_records() if r.get("event") == "grpc_refused"]

    wait_for(lambda: any(r["method"].endswith("(5025 characters)") for r in logged()))
    (line,) = [r for r in logged() if r["method"].endswith("(5025 characters)")]
    assert line["reason"] == "unknown_method" and line["method"].startswith(long_name[:64])
    assert len(line["method"]) < 100
    assert all(r["reason"] in ("unknown_method", "request_not_received", "response_too_large") for r in logged())


def test_workers_add_up_their_refusals(text_bundle: Path) -> None:
    calls = 12
    args = ["--workers", "2", "--max-message-bytes", str(MAX_MESSAGE_BYTES)]
    with ServerProcess([text_bundle], extra_args=args) as server:
        for _ in range(calls):  # fresh channels: the kernel spreads the connections over both workers
            with grpc.insecure_channel(server.target, options=CLIENT_OPTIONS) as channel:
                with pytest.raises(grpc.RpcError):
                    _reason(channel)
                with pytest.raises(grpc.RpcError):
                    _unknown_method(channel)
        wait_for(lambda: server.sample_value(REFUSED) == 2 * calls)
        assert server.sample_value(REFUSED, method=REASON, reason="request_not_received") == calls
        assert server.sample_value(REFUSED, method="", reason="unknown_method") == calls

        def refused_lines() -> list[dict]:
            return [r for r in server.log_records() if r.get("event") == "grpc_refused"]

        # A refusal is counted just before its line is written: wait for the lines too, not only the count.
        wait_for(lambda: len(refused_lines()) == 2 * calls)
        assert len({r["pid"] for r in refused_lines()}) == 2
