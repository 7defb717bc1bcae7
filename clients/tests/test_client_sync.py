"""Every call of the blocking client against a real server hosting random bundles."""

from __future__ import annotations

import math
import re
import threading
import time

import grpc
import pytest
from sdk_test_support import GRID_MODEL, N_SUP, SUDOKU, TEXT_MODEL, closed_port
from trm_client import (
    Budget,
    Classification,
    ClientClosed,
    DeadlineExceeded,
    GridSolution,
    HaltReason,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RetryPolicy,
    TaskType,
    TRMClient,
    TRMError,
)

from trainer.testing import DEFAULT_TEXT_LABELS


def test_models_lists_every_hosted_model_with_its_limits(client):
    infos = {info.name: info for info in client.models()}
    assert set(infos) == {TEXT_MODEL, GRID_MODEL}
    text, grid = infos[TEXT_MODEL], infos[GRID_MODEL]
    assert text.task is TaskType.TEXT_CLASSIFICATION
    assert text.labels == DEFAULT_TEXT_LABELS
    assert text.limits.max_steps == N_SUP
    assert text.out_of_scope_threshold == pytest.approx(0.3)
    assert text.halt_threshold == pytest.approx(0.5)
    assert grid.task is TaskType.GRID
    assert (grid.limits.grid_rows, grid.limits.grid_cols) == (9, 9)


def test_model_describes_one_model(client):
    info = client.model(TEXT_MODEL)
    assert info.name == TEXT_MODEL
    assert info.version == "1.0.0"
    assert info.versions[0] == "1.0.0"


def test_unknown_model_raises_not_found_with_the_request_id(client):
    with pytest.raises(NotFound) as caught:
        client.model("no-such-model", request_id="find-me-42")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.request_id == "find-me-42"
    assert caught.value.details


def test_reason_on_text_returns_a_typed_classification(client):
    result = client.reason(TEXT_MODEL, "wake me up at seven", top_k=3, request_id="req-text-1")
    assert isinstance(result.answer, Classification)
    assert result.model == TEXT_MODEL
    assert result.model_version == "1.0.0"
    assert result.prediction in DEFAULT_TEXT_LABELS
    assert result.answer.top[0].label == result.prediction
    assert [s.probability for s in result.answer.top] == sorted(
        (s.probability for s in result.answer.top), reverse=True
    )
    assert len(result.answer.top) == 3
    assert 0.0 <= result.confidence <= 1.0
    assert 1 <= result.steps <= N_SUP
    assert result.halt_reason in (HaltReason.HALTED, HaltReason.MAX_STEPS)
    assert result.verified is None
    assert result.request_id == "req-text-1"


def test_budget_reaches_the_server(client):
    never_halts = client.reason(TEXT_MODEL, "set an alarm", budget=Budget(max_steps=3, halt_threshold=1.0))
    assert (never_halts.steps, never_halts.halt_reason) == (3, HaltReason.MAX_STEPS)
    one_step = client.reason(TEXT_MODEL, "set an alarm", budget=Budget(max_steps=1))
    assert one_step.steps == 1


def test_a_halt_threshold_the_wire_would_carry_as_0_is_refused():
    """QA: 1e-50 arrived as float32 0, read as the model's default (0.5) without a word."""
    with pytest.raises(ValueError, match=r"budget.halt_threshold 1e-50 is below the smallest the wire carries"):
        Budget(halt_threshold=1e-50)
    assert Budget(halt_threshold=1.5e-45).halt_threshold == 1.5e-45


def test_reason_on_a_grid_returns_a_typed_grid(client):
    result = client.reason(GRID_MODEL, grid=SUDOKU)
    assert isinstance(result.answer, GridSolution)
    assert (result.answer.rows, result.answer.cols) == (9, 9)
    assert len(result.answer.cells) == 81
    assert len(result.answer.cell_confidence) == 81
    assert result.confidence == min(result.answer.cell_confidence)
    assert isinstance(result.verified, bool)
    assert [len(row) for row in result.answer.row_strings()] == [9] * 9


def test_grid_given_as_rows_is_the_same_request_as_a_string(client):
    rows = [SUDOKU[r * 9 : (r + 1) * 9] for r in range(9)]
    digits = [[0 if c == "." else int(c) for c in row] for row in rows]
    flat = client.reason(GRID_MODEL, grid=SUDOKU.replace(".", "0"))
    assert client.reason(GRID_MODEL, grid=rows).prediction == flat.prediction
    assert client.reason(GRID_MODEL, grid=digits).prediction == flat.prediction


@pytest.mark.parametrize(
    ("model", "inputs"), [(TEXT_MODEL, {"text": "play jazz"}), (GRID_MODEL, {"grid": SUDOKU})]
)
def test_stream_ends_with_the_same_answer_as_unary(client, model, inputs):
    budget = Budget(max_steps=N_SUP)
    steps = list(client.reason_stream(model, **inputs, budget=budget, request_id="stream-1"))
    unary = client.reason(model, **inputs, budget=budget)
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert [s.final for s in steps] == [False] * (len(steps) - 1) + [True]
    final = steps[-1]
    assert final.prediction == unary.prediction
    assert final.step == unary.steps
    assert final.halt_reason is unary.halt_reason
    assert final.confidence == pytest.approx(unary.confidence, abs=1e-4)
    assert all(s.request_id == "stream-1" for s in steps)


def test_invalid_input_raises_invalid_argument_without_retrying(server):
    retries = []
    client = TRMClient(server.target, retry=RetryPolicy(on_retry=retries.append))
    with client, pytest.raises(InvalidArgument) as caught:
        client.reason(GRID_MODEL, grid="123")
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert retries == []


def test_a_request_over_the_message_limit_fails_at_once_even_where_resource_exhausted_is_retried(server):
    """gRPC calls a message over the server's size limit RESOURCE_EXHAUSTED, as a full queue: waiting for the
    queue is worth a retry, re-sending the same 2 MB never is."""
    retries = []
    policy = RetryPolicy(retry_on=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}),
                         on_retry=retries.append)
    with TRMClient(server.target, retry=policy) as client, pytest.raises(ResourceExhausted) as caught:
        client.reason(TEXT_MODEL, "x" * 2_000_000)
    assert caught.value.over_message_limit
    assert retries == []


def test_a_closed_client_says_so(server):
    client = TRMClient(server.target)
    client.close()
    with pytest.raises(ClientClosed, match=r"this TRMClient is closed .*: make a new TRMClient"):
        client.reason(TEXT_MODEL, "hello")
    with pytest.raises(ClientClosed):
        client.reason_stream(TEXT_MODEL, "hello")


def test_a_stream_read_after_close_says_the_client_is_closed(server):
    """One made before close() and first read after it, and one that close() ends between its steps."""
    client = TRMClient(server.target)
    made_before = client.reason_stream(TEXT_MODEL, "hello")
    in_flight = client.reason_stream(GRID_MODEL, grid=SUDOKU, budget=Budget(max_steps=N_SUP, min_steps=N_SUP))
    assert next(in_flight).step == 1
    client.close()
    with pytest.raises(ClientClosed):
        next(made_before)
    with pytest.raises(TRMError) as caught:
        list(in_flight)
    assert caught.value.code is grpc.StatusCode.CANCELLED
    assert caught.value.details == "the client was closed during the call (close(), or the end of its with-block)"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_call_that_close_ends_while_it_waits_to_retry_says_the_client_was_closed(streamed):
    """QA: close() between two attempts raised gRPC's ValueError ("Cannot invoke RPC on closed channel!")."""
    slow_retries = RetryPolicy(initial_backoff_s=4.0, max_backoff_s=4.0)  # each wait 2-4 s
    client = TRMClient(f"127.0.0.1:{closed_port()}", timeout_s=20, retry=slow_retries)
    threading.Timer(0.5, client.close).start()
    started = time.monotonic()
    with pytest.raises(TRMError) as caught:
        list(client.reason_stream(TEXT_MODEL, "hello")) if streamed else client.reason(TEXT_MODEL, "hello")
    assert time.monotonic() - started < 2.0  # at close(), not at the wait's end
    assert caught.value.code is grpc.StatusCode.CANCELLED
    assert caught.value.details == "the client was closed during the call (close(), or the end of its with-block)"


@pytest.mark.parametrize(
    ("settings", "error", "told"),
    [
        ({"target": 50051}, TypeError, "target must be 'host:port' or a list of them, got 50051"),
        ({"metadata": [("Bad Key", "v")]}, ValueError, "a key is lowercase letters, digits"),
        ({"metadata": [("grpc-timeout", "1S")]}, ValueError, "does not start with 'grpc-'"),
        ({"metadata": [("authorization", "café")]}, ValueError, "of any other key printable ASCII text"),
        ({"metadata": [("trace-bin", "text")]}, ValueError, "the value of a key ending '-bin' is bytes"),
    ],
)
def test_settings_grpc_cannot_use_are_refused_naming_them(settings, error, told):
    """gRPC would fail later: a port alone as "'int' object is not iterable", a bad header as every call's
    INTERNAL "Invalid metadata"."""
    with pytest.raises(error, match=re.escape(told)):
        TRMClient(**{"target": "127.0.0.1:50051", **settings})


def test_model_checks_its_name_before_sending(client):
    with pytest.raises(TypeError, match="name must be a string, got int"):
        client.model(5)
    with pytest.raises(ValueError, match=re.escape("name holds U+D800 at position 0")):
        client.model("\ud800")


def test_metadata_a_client_can_send_reaches_the_server(server):
    with TRMClient(server.target, metadata=[("authorization", "Bearer x"), ("trace-bin", b"\x00\x01")]) as client:
        assert client.model(TEXT_MODEL).name == TEXT_MODEL


def test_neither_text_nor_grid_is_refused_before_sending(client):
    with pytest.raises(ValueError, match="exactly one"):
        client.reason(TEXT_MODEL)


@pytest.mark.parametrize(
    ("call", "error", "told"),
    [
        (lambda c: c.reason(TEXT_MODEL, "hi", request_id="req\t42"), ValueError, r"request_id 'req\\t42' must be"),
        (lambda c: c.reason(TEXT_MODEL, "hi", request_id="x" * 129), ValueError, "must be 1-128 printable ASCII"),
        (lambda c: c.reason(TEXT_MODEL, "hi", top_k=-1), ValueError, "top_k must be a whole number from 0"),
        (lambda c: c.reason(TEXT_MODEL, "hi", budget=Budget(max_steps=-1)), ValueError, "budget.max_steps must be"),
        (lambda c: c.reason(TEXT_MODEL, "hi", request_id=""), ValueError, "request_id '' must be 1-128"),
        (lambda c: c.reason(TEXT_MODEL, "hi", budget={"max_steps": 1}), TypeError, "budget must be a trm_client"),
        (lambda c: c.reason(TEXT_MODEL, 42), TypeError, "text must be a string, got int"),
        (lambda c: c.reason(GRID_MODEL, grid=5), TypeError, "grid must be a string of cells"),
        (lambda c: c.reason(GRID_MODEL, grid=SUDOKU.encode()), TypeError, "got bytes: decode it first"),
        (lambda c: c.reason(5, "hi"), TypeError, "model must be a string, got int"),
        (lambda c: c.reason(TEXT_MODEL, "hi", version=1), TypeError, "version must be a string, got int"),
        (lambda c: c.reason_batch(None, ["hi"]), TypeError, "model must be a string, got NoneType"),
        (lambda c: c.reason(GRID_MODEL, grid=[[5, 3, 10]]), ValueError, "grid row 1, column 3 holds 10"),
        (lambda c: c.reason_batch(TEXT_MODEL, "nasa rocket"), TypeError, "texts must be a list of inputs"),
        (lambda c: c.reason(TEXT_MODEL, "hi \ud83d"), ValueError, "text holds U[+]D83D at position 3, half of a"),
        (lambda c: c.reason(GRID_MODEL, grid=["53..7....6..195...", ".98....6."]), ValueError,
         "grid row 2 has 9 cells and row 1 has 18"),
        (lambda c: c.reason_batch(TEXT_MODEL, ["hi", None]), TypeError, r"texts\[1\] is None"),
        (lambda c: c.reason(TEXT_MODEL, "hi", timeout_s="2"), TypeError, "timeout_s must be a number of seconds, got"),
        (lambda c: c.reason(TEXT_MODEL, "hi", timeout_s=float("nan")), ValueError, "timeout_s must be a number of"),
        (lambda c: TRMClient(c.target, timeout_s=-5), ValueError, "the client's timeout_s must be above 0 seconds"),
        (lambda c: c.reason_batch(TEXT_MODEL, ["hi", "\udc00"]), ValueError, r"texts\[1\]: text holds U[+]DC00"),
        (lambda c: list(c.reason_stream(TEXT_MODEL, "hi", request_id=" r1")), ValueError, "request_id ' r1' must"),
    ],
)
def test_arguments_of_the_wrong_kind_are_refused_before_sending_naming_the_argument(client, call, error, told):
    with pytest.raises(error, match=told):
        call(client)


@pytest.mark.parametrize("timeout_s", [math.inf, 1e10, 1e9])
def test_a_timeout_of_a_billion_seconds_or_more_is_no_deadline(server, timeout_s):
    """gRPC fails a call at once from about 3e9 seconds; such a timeout means: wait as long as it takes."""
    with TRMClient(server.target, timeout_s=timeout_s) as unbounded:
        assert unbounded.reason(TEXT_MODEL, "wake me up at seven").steps >= 1
        assert unbounded.reason(TEXT_MODEL, "wake me up at seven", timeout_s=timeout_s).steps >= 1


def test_expired_deadline_raises_deadline_exceeded(client):
    """A deadline that has passed fails every time, without a call (see the asyncio client's test)."""
    with pytest.raises(DeadlineExceeded) as caught:
        client.reason(TEXT_MODEL, "too late", timeout_s=0)
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(DeadlineExceeded):
        list(client.reason_stream(TEXT_MODEL, "too late", timeout_s=-1))
