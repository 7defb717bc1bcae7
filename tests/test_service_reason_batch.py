"""ReasonBatch: many inputs in one call, each answered exactly as Reason answers it alone, each failure its own."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from test_service_support import GRID_MODEL, TEXT_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc
from trm_client import Budget, InvalidArgument, NotFound, ReasonResult, TRMClient
from trm_client.results import HaltReason

from trm_service.config import DEFAULT_MODELS_DIR
from trm_service.testing import ServerProcess

CLINC150 = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinc150" / "data_full.json"

WORDS = ("play", "jazz", "wake", "seven", "weather", "paris", "say", "thanks", "german", "alarm", "rain", "joke")
REQUESTS = 48


def _request(i: int) -> trm_pb2.ReasonRequest:
    text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 5))
    return trm_pb2.ReasonRequest(model=TEXT_MODEL, text=f"{text} {i}", top_k=5,
                                 budget=trm_pb2.Budget(max_steps=3, halt_threshold=1.0))


def _summary(response: trm_pb2.ReasonResponse) -> tuple:
    top = response.answer.classification.top
    return response.steps, response.halt_reason, tuple(s.label for s in top)


@pytest.fixture(scope="module")
def server(text_bundle: Path, grid_bundle: Path):
    with ServerProcess([text_bundle, grid_bundle], extra_args=["--max-batch-requests", "64"]) as running:
        yield running


def test_a_batch_gets_what_each_request_gets_alone_in_batched_steps(server: ServerProcess):
    requests = [_request(i) for i in range(REQUESTS)]
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        alone = [stub.Reason(request, timeout=60) for request in requests]
        steps_before = server.sample_value("trm_batch_size_count", model=TEXT_MODEL)
        reasons_before = server.sample_value("trm_requests_total", method="Reason", code="OK")
        items_before = server.sample_value("trm_requests_total", method="ReasonBatch.request", code="OK")
        calls_before = server.sample_value("trm_requests_total", method="ReasonBatch", code="OK")
        reply, call = stub.ReasonBatch.with_call(trm_pb2.ReasonBatchRequest(requests=requests), timeout=60)
    assert [r.WhichOneof("result") for r in reply.results] == ["response"] * REQUESTS
    for one, batched in zip(alone, (r.response for r in reply.results), strict=True):
        assert batched.answer == one.answer and _summary(batched) == _summary(one)
    # 48 requests x 3 steps ran as a few batched steps, not 144 single ones
    assert server.sample_value("trm_batch_size_count", model=TEXT_MODEL) - steps_before <= 3 * 4
    # every request is counted and logged as a "ReasonBatch.request" under the call's id and its index (QA: as a
    # "Reason", each timed at the whole call's length, they set off the unary latency alert); the call once
    wait_for(lambda: server.sample_value("trm_requests_total", method="ReasonBatch", code="OK") == calls_before + 1)
    items = server.sample_value("trm_requests_total", method="ReasonBatch.request", code="OK") - items_before
    assert items == REQUESTS
    assert server.sample_value("trm_requests_total", method="Reason", code="OK") == reasons_before
    call_id = dict(call.trailing_metadata())["x-request-id"]
    assert [r.response.request_id for r in reply.results] == [f"{call_id}.{i}" for i in range(REQUESTS)]
    wait_for(lambda: any(r.get("request_id") == call_id for r in server.log_records()))
    call_line = next(r for r in server.log_records() if r.get("request_id") == call_id)
    assert (call_line["method"], call_line["model"], call_line["version"]) == ("ReasonBatch", TEXT_MODEL, "1.0.0")


def test_each_failure_stays_with_its_own_request(server: ServerProcess):
    requests = [
        _request(0),
        trm_pb2.ReasonRequest(model="no-such-model", text="hello"),
        trm_pb2.ReasonRequest(model=TEXT_MODEL, grid=trm_pb2.Grid(cells="1" * 81)),
        trm_pb2.ReasonRequest(model=GRID_MODEL, grid=trm_pb2.Grid(cells="12")),
        _request(1),
    ]
    with grpc.insecure_channel(server.target) as channel:
        reply = trm_pb2_grpc.ReasoningServiceStub(channel).ReasonBatch(
            trm_pb2.ReasonBatchRequest(requests=requests), timeout=60
        )
    kinds = [r.WhichOneof("result") for r in reply.results]
    assert kinds == ["response", "failure", "failure", "failure", "response"]
    codes = [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT]
    assert [r.failure.code for r in reply.results[1:4]] == [code.value[0] for code in codes]
    assert "no-such-model" in reply.results[1].failure.message
    assert "81" in reply.results[3].failure.message  # the grid's expected size, as Reason alone says it


def test_a_batch_of_two_models_is_logged_under_neither(server: ServerProcess):
    """Both models are at version 1.0.0: the call's line names no model, so it names no version either."""
    requests = [_request(0), trm_pb2.ReasonRequest(model=GRID_MODEL, grid=trm_pb2.Grid(cells="0" * 81))]
    with grpc.insecure_channel(server.target) as channel:
        _, call = trm_pb2_grpc.ReasoningServiceStub(channel).ReasonBatch.with_call(
            trm_pb2.ReasonBatchRequest(requests=requests), timeout=60)
    call_id = dict(call.trailing_metadata())["x-request-id"]
    wait_for(lambda: any(r.get("request_id") == call_id for r in server.log_records()))
    call_line = next(r for r in server.log_records() if r.get("request_id") == call_id)
    assert (call_line["status"], call_line["model"], call_line["version"]) == ("OK", "", "")


@pytest.mark.parametrize("count", [0, 65])
def test_an_empty_or_oversized_batch_is_refused_naming_the_limit(server: ServerProcess, count: int):
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=[_request(i) for i in range(count)]), timeout=60)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "1 to 64 requests" in refused.value.details() and "--max-batch-requests" in refused.value.details()
        assert stub.Reason(_request(0), timeout=60).steps == 3  # still serving
    # counted under the one model its requests name (an empty call names none)
    model = TEXT_MODEL if count else ""
    wait_for(lambda: server.sample_value("trm_requests_total", method="ReasonBatch", code="INVALID_ARGUMENT",
                                         model=model) == 1)


def test_the_sdk_returns_each_result_or_its_typed_error(server: ServerProcess):
    with TRMClient(server.target) as client:
        results = client.reason_batch(TEXT_MODEL, ["play jazz", "", "wake me at seven"], top_k=2)
        alone = client.reason(TEXT_MODEL, "wake me at seven", top_k=2)
        missing = client.reason_batch("no-such-model", ["hello"])
    assert isinstance(results[0], ReasonResult) and isinstance(results[2], ReasonResult)
    assert isinstance(results[1], InvalidArgument)
    assert results[2].prediction == alone.prediction and results[2].steps == alone.steps
    assert results[1].request_id == f"{results[0].request_id.rsplit('.', 1)[0]}.1"
    assert isinstance(missing[0], NotFound)


def test_a_text_holding_the_padding_token_gets_the_same_answer_alone_and_batched(server: ServerProcess):
    padded = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="[PAD] [PAD] [PAD] play some jazz", top_k=5,
                                   budget=trm_pb2.Budget(max_steps=3, halt_threshold=1.0))
    longer = _request(4)  # runs at a longer length than `padded` needs
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        alone = stub.Reason(padded, timeout=60)
        batched = stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=[longer, padded]), timeout=60).results[1]
    assert batched.response.answer == alone.answer and _summary(batched.response) == _summary(alone)


def test_the_shipped_intent_model_answers_real_queries_batched_exactly_as_alone():
    """Its step mixes in a linear reader over the tokens: a query padded to its batch's longest gets the bits it
    gets alone at its own length."""
    texts = [text for text, _ in json.loads(CLINC150.read_text())["test"][::70]][:64]
    requests = [trm_pb2.ReasonRequest(model="intent-clinc150", text=text, top_k=5) for text in texts]
    with ServerProcess([DEFAULT_MODELS_DIR / "intent-clinc150"]) as server, \
            grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        alone = [stub.Reason(request, timeout=60) for request in requests]
        batched = stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=requests), timeout=60).results
    assert len({one.answer.classification.top[0].label for one in alone}) > 10  # the queries really differ
    for text, one, together in zip(texts, alone, batched, strict=True):
        assert together.response.answer == one.answer, text


def test_a_batch_larger_than_the_models_batch_runs_every_step_alone_it_would(text_bundle: Path):
    """Its requests queue behind each other by the caller's choice, which is no load on anyone else: none is
    cut short by the step cap under load (each was, to one step, with 44 of 48 waiting)."""
    requests = [_request(i) for i in range(REQUESTS)]
    with ServerProcess([text_bundle], extra_args=["--max-batch-size", "4", "--load-wait-ms", "1"]) as small:
        client = TRMClient(small.target, timeout_s=60)
        results = client.reason_batch(TEXT_MODEL, texts=[r.text for r in requests],
                                      budget=Budget(max_steps=3, halt_threshold=1.0))
        assert small.sample_value("trm_batch_size_sum", model=TEXT_MODEL) / small.sample_value(
            "trm_batch_size_count", model=TEXT_MODEL) <= 4
    assert [(r.steps, r.halt_reason) for r in results] == [(3, HaltReason.MAX_STEPS)] * REQUESTS


def test_batches_ended_by_their_deadline_leave_no_unread_error_behind(server: ServerProcess):
    """Probe: ReasonBatch calls of 50 ms deadlines left hundreds of asyncio's "Future exception was never retrieved"
    tracebacks on the server's stderr (a request's deadline error set as its call was cancelled, read by no one)."""
    requests = trm_pb2.ReasonBatchRequest(requests=[_request(i) for i in range(REQUESTS)])
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)

        def batches(deadline_s: float) -> None:
            for _ in range(20):
                with contextlib.suppress(grpc.RpcError):
                    stub.ReasonBatch(requests, timeout=deadline_s)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(batches, [0.005, 0.01, 0.02, 0.03, 0.05, 0.005, 0.01, 0.02]))
            list(pool.map(lambda i: stub.Reason(_request(i), timeout=60), range(400)))  # the collector runs
    assert "never retrieved" not in server.log_path.read_text()
