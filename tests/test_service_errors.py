"""Bad requests get the right status and an actionable message, while a good client keeps succeeding."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from raw_grpc_client import raw_unary_call
from test_service_support import GRID_MODEL, TEXT_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

MAX_MESSAGE_BYTES = 64 * 1024
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
LONG = 20_000  # characters of a caller's string: whole in a trailer, past the client's 16 KiB metadata limit
MAX_MESSAGE_CHARS = 400  # no error message repeats a caller's string whole
SERVER_MADE_ID = re.compile(r"^[0-9a-f]{32}$")


def _text(text: str, **fields) -> trm_pb2.ReasonRequest:
    return trm_pb2.ReasonRequest(model=TEXT_MODEL, text=text, **fields)


def _grid(cells: str) -> trm_pb2.ReasonRequest:
    return trm_pb2.ReasonRequest(model=GRID_MODEL, grid=trm_pb2.Grid(cells=cells))


def _budget(**fields) -> trm_pb2.ReasonRequest:
    return _text("hello", budget=trm_pb2.Budget(**fields))


def _bad(name: str, request: trm_pb2.ReasonRequest, message: str, code: grpc.StatusCode = INVALID):
    return pytest.param(request, code, message, id=name)


BAD_REASON_REQUESTS = [
    _bad("no model", trm_pb2.ReasonRequest(text="hi"), "model is required: name one of the hosted models"),
    _bad("unknown model", trm_pb2.ReasonRequest(model="gpt-5", text="hi"),
         "model 'gpt-5' is not hosted here; available models: svc-sudoku, svc-text", NOT_FOUND),
    _bad("unknown version", _text("hi", version="9.9.9"),
         "model 'svc-text' has no version '9.9.9'; loaded versions: 1.0.0", NOT_FOUND),
    _bad("long unknown model", trm_pb2.ReasonRequest(model="m" * LONG, text="hi"),
         f"model '{'m' * 64}'… ({LONG} characters) is not hosted here; available models:", NOT_FOUND),
    _bad("long unknown version", _text("hi", version="9" * LONG),
         f"has no version '{'9' * 64}'… ({LONG} characters); loaded versions: 1.0.0", NOT_FOUND),
    _bad("no input", trm_pb2.ReasonRequest(model=TEXT_MODEL), "the request has no input"),
    _bad("text to a grid model", trm_pb2.ReasonRequest(model=GRID_MODEL, text="hi"),
         "solves 9x9 grids: set ReasonRequest.grid"),
    _bad("grid to a text model", trm_pb2.ReasonRequest(model=TEXT_MODEL, grid=trm_pb2.Grid(cells="." * 81)),
         "classifies text: set ReasonRequest.text"),
    _bad("empty text", _text(""), "text is empty"),
    _bad("blank text", _text(" \n "), "text is blank (white space only)"),
    _bad("text too long", _text("a" * 2001),
         "text has 2001 characters, and its first 2000 (ModelInfo.limits.max_text_chars) do not hold the 16 tokens "
         "model 'svc-text' reads (ModelInfo.limits.max_tokens): send at most 2000 characters"),
    _bad("text of NUL, zero-width and U+FFFD", _text("\x00\u200b\ufffd\u200b\x00"),
         "text leaves no tokens after normalisation"),
    _bad("short grid", _grid("." * 80), "grid.cells must have 81 symbols (9x9, row-major), got 80"),
    _bad("bad grid symbol", _grid("." * 40 + "A" + "." * 40), "grid.cells[40] (row 5, column 5) is 'A'"),
    _bad("givens clash in a row", _grid("11" + "." * 79), "the givens break the sudoku rules: row 1 has"),
    _bad("givens clash in a column", _grid("2" + "." * 8 + "2" + "." * 71), "column 1 has two 2s"),
    _bad("givens clash in a box", _grid("4" + "." * 9 + "4" + "." * 70), "box 1 has two 4s"),
    _bad("max_steps too large", _budget(max_steps=9), "budget.max_steps must be 1..8"),
    _bad("min_steps above max_steps", _budget(max_steps=2, min_steps=3), "min_steps (3) must not exceed"),
    _bad("threshold above 1", _budget(halt_threshold=1.01), "budget.halt_threshold must be in (0, 1]"),
    _bad("negative threshold", _budget(halt_threshold=-1.0), "budget.halt_threshold must be in (0, 1]"),
    _bad("time budget too large", _budget(time_budget_ms=3_600_000), "budget.time_budget_ms must be at most"),
    _bad("top_k too large", _text("hi", top_k=99), "top_k must be at most 5"),
    _bad("top_k for a grid", trm_pb2.ReasonRequest(model=GRID_MODEL, grid=trm_pb2.Grid(cells="." * 81), top_k=3),
         "answers a whole grid, one symbol per cell: leave top_k unset (0), got 3"),
    _bad("message too large", _text("a" * (MAX_MESSAGE_BYTES + 10)), "Received message larger than max",
         grpc.StatusCode.RESOURCE_EXHAUSTED),
]


@pytest.fixture(scope="module")
def server(text_bundle: Path, grid_bundle: Path) -> Iterator[ServerProcess]:
    limit = ["--max-message-bytes", str(MAX_MESSAGE_BYTES)]
    with ServerProcess([text_bundle, grid_bundle], extra_args=limit) as process:
        yield process


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


@pytest.fixture(scope="module")
def good_client(server: ServerProcess) -> Iterator[dict[str, int]]:
    """A client on its own channel sending good requests for the whole module."""
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def loop() -> None:
        with grpc.insecure_channel(server.target) as channel:
            stub = trm_pb2_grpc.ReasoningServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Reason(_text("play some jazz"), timeout=30)
                    counts["ok"] += 1
                except grpc.RpcError:
                    counts["failed"] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield counts
    stop.set()
    thread.join(timeout=30)
    assert counts["failed"] == 0 and counts["ok"] > 0


def _check(error: grpc.RpcError, code: grpc.StatusCode, message: str) -> None:
    assert error.code() == code, error.details()
    assert message in error.details()
    assert len(error.details()) <= MAX_MESSAGE_CHARS


@pytest.mark.parametrize(("request_", "code", "message"), BAD_REASON_REQUESTS)
def test_bad_requests_get_their_status_on_both_reason_rpcs(channel, good_client, request_, code, message):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    with pytest.raises(grpc.RpcError) as unary:
        stub.Reason(request_, timeout=30)
    _check(unary.value, code, message)
    with pytest.raises(grpc.RpcError) as streamed:
        list(stub.ReasonStream(request_, timeout=30))
    _check(streamed.value, code, message)


TRUNCATED = b"\x0a\x05ab"  # field 1 claims 5 bytes, 2 follow
BAD_UTF8 = b"\x1a\x02\xff\xfe"  # ReasonRequest.text holding invalid UTF-8


@pytest.mark.parametrize(
    ("method", "body"),
    [("Reason", TRUNCATED), ("Reason", BAD_UTF8), ("ReasonStream", BAD_UTF8), ("GetModel", TRUNCATED),
     ("ListModels", TRUNCATED)],
)
def test_a_body_that_is_not_protobuf_is_invalid_argument(channel, good_client, method, body):
    path = f"/trm.v1.ReasoningService/{method}"
    with pytest.raises(grpc.RpcError) as caught:
        if method == "ReasonStream":
            list(channel.unary_stream(path)(body, timeout=30))
        else:
            channel.unary_unary(path)(body, timeout=30)
    _check(caught.value, INVALID, "the request body is not a valid trm.v1.")


def test_get_model_errors(channel, good_client):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    with pytest.raises(grpc.RpcError) as empty:
        stub.GetModel(trm_pb2.GetModelRequest())
    _check(empty.value, INVALID, "name is required")
    with pytest.raises(grpc.RpcError) as unknown:
        stub.GetModel(trm_pb2.GetModelRequest(name="nope"))
    _check(unknown.value, NOT_FOUND, "model 'nope' is not hosted here")
    with pytest.raises(grpc.RpcError) as version:
        stub.GetModel(trm_pb2.GetModelRequest(name=TEXT_MODEL, version="0.1"))
    _check(version.value, NOT_FOUND, "has no version '0.1'")


def _request_log(server: ServerProcess, request_id: str) -> dict:
    """The request's log line (written just after its answer)."""

    def lines() -> list[dict]:
        return [r for r in server.log_records() if r.get("event") == "request" and r["request_id"] == request_id]

    wait_for(lambda: bool(lines()))
    (line,) = lines()
    return line


@pytest.mark.parametrize("value", ["x" * 5000, " leading-space", "trailing-space "])
def test_a_bad_request_id_is_invalid_argument_and_not_echoed(server, channel, good_client, value):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Reason(_text("hi"), metadata=(("x-request-id", value),))
    _check(caught.value, INVALID, "x-request-id ")
    assert "use 1-128 printable ASCII characters with no space at either end" in caught.value.details()
    echoed = dict(caught.value.trailing_metadata())["x-request-id"]
    assert SERVER_MADE_ID.match(echoed)
    assert _request_log(server, echoed)["status"] == "INVALID_ARGUMENT"


ILLEGAL_IDS = [  # legal on the wire from other gRPC stacks; grpcio's client refuses to send them
    pytest.param(b"tab\there", "has '\\t' (U+0009) at position 4", id="tab"),
    pytest.param(b"del\x7f", "has '\\x7f' (U+007F) at position 4", id="DEL"),
    pytest.param("café".encode(), "has 'é' (U+00E9) at position 4", id="UTF-8 non-ASCII"),
    pytest.param(b"\xff\xfe", "(U+00FF) at position 1", id="not UTF-8"),
    pytest.param(b" lead", "starts or ends with a space", id="leading space"),
]


@pytest.mark.parametrize("method", ["Reason", "ReasonStream"])
@pytest.mark.parametrize(("value", "problem"), ILLEGAL_IDS)
def test_an_illegal_request_id_from_another_grpc_stack_is_invalid_argument_not_internal(
    server, good_client, method, value, problem
):
    before = server.sample_value("trm_requests_total", method=method, code="INVALID_ARGUMENT")
    body = _text("play some jazz").SerializeToString()
    result = raw_unary_call(server.target, f"/trm.v1.ReasoningService/{method}", body, [(b"x-request-id", value)])
    assert result.status == grpc.StatusCode.INVALID_ARGUMENT.value[0], result.message
    assert result.message.startswith("metadata x-request-id ") and problem in result.message
    echoed = result.metadata[b"x-request-id"].decode()
    assert SERVER_MADE_ID.match(echoed)
    line = _request_log(server, echoed)  # the log and the metrics say what the client saw
    assert (line["status"], line["error"]) == ("INVALID_ARGUMENT", result.message)
    wait_for(lambda: server.sample_value("trm_requests_total", method=method, code="INVALID_ARGUMENT") == before + 1)


def test_a_valid_request_id_is_echoed_and_logged(server, channel, good_client):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    _, call = stub.Reason.with_call(_text("play some jazz"), metadata=(("x-request-id", "trace 42/a"),))
    assert dict(call.trailing_metadata())["x-request-id"] == "trace 42/a"
    assert _request_log(server, "trace 42/a")["status"] == "OK"


def test_long_names_are_capped_in_not_found_messages_and_log_lines(server, channel, good_client):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    name = "n" * (MAX_MESSAGE_BYTES - 100)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModel(trm_pb2.GetModelRequest(name=name), metadata=(("x-request-id", "long-name"),))
    _check(caught.value, NOT_FOUND, f"({len(name)} characters) is not hosted here")
    line = _request_log(server, "long-name")
    assert line["status"] == "NOT_FOUND" and line["error"] == caught.value.details()


def test_every_error_is_logged_and_counted_and_none_is_internal(server, channel, good_client):
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    requests = [param.values[:2] for param in BAD_REASON_REQUESTS]
    counted = Counter(code.name for _, code in requests if code != grpc.StatusCode.RESOURCE_EXHAUSTED)  # gRPC's

    def reason_calls() -> dict[str, float]:
        return {name: server.sample_value("trm_requests_total", method="Reason", code=name) for name in counted}

    before, unnamed_before = reason_calls(), server.sample_value("trm_requests_total", model="", code="NOT_FOUND")
    for request, code in requests:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Reason(request, timeout=30)
        assert caught.value.code() == code
    wait_for(lambda: {name: value - before[name] for name, value in reason_calls().items()} == counted)
    # callers' names are not label values (unbounded cardinality): the two unknown models and the two unknown
    # versions are counted under model=""
    assert server.sample_value("trm_requests_total", model="", code="NOT_FOUND") - unnamed_before == 4
    statuses = {r["status"] for r in server.log_records() if r.get("event") == "request"}
    assert "INTERNAL" not in statuses and {"INVALID_ARGUMENT", "NOT_FOUND"} <= statuses
    assert server.sample_value("trm_requests_total", code="INTERNAL") == 0.0
    assert max(len(line) for line in server.logs().splitlines() if '"event":"request"' in line) < 1000
