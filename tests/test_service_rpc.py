"""Every RPC against a real `trm-service serve` subprocess, plus health, reflection and request logs."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_service_support import GRID_MODEL, LONG_MODEL, LONG_N_SUP, TEXT_MODEL, TEXT_N_SUP, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

EMPTY_SUDOKU = "." * 81
NEVER_HALT = trm_pb2.Budget(halt_threshold=1.0)
SUDOKU_REQUEST = trm_pb2.ReasonRequest(model=GRID_MODEL, grid=trm_pb2.Grid(cells=EMPTY_SUDOKU))


@pytest.fixture(scope="module")
def scored_text_bundle(text_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The text bundle with metrics in its manifest (the manifest is not checksummed, its files are)."""
    folder = Path(shutil.copytree(text_bundle, tmp_path_factory.mktemp("scored") / text_bundle.name))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"] = {"test_accuracy": 0.91, "tiers": {"easy": 0.97}, "note": "not a number"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def server(scored_text_bundle: Path, grid_bundle: Path, long_bundle: Path) -> Iterator[ServerProcess]:
    with ServerProcess([scored_text_bundle, grid_bundle, long_bundle]) as process:
        yield process


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> trm_pb2_grpc.ReasoningServiceStub:
    return trm_pb2_grpc.ReasoningServiceStub(channel)


def test_list_models_describes_every_hosted_model(stub):
    models = {m.name: m for m in stub.ListModels(trm_pb2.ListModelsRequest()).models}
    assert set(models) == {TEXT_MODEL, GRID_MODEL, LONG_MODEL}
    text, grid = models[TEXT_MODEL], models[GRID_MODEL]
    assert text.task == trm_pb2.TASK_TYPE_TEXT_CLASSIFICATION and grid.task == trm_pb2.TASK_TYPE_GRID
    assert "oos" in text.labels and list(grid.labels) == list("123456789")
    limits = text.limits
    assert (limits.max_text_chars, limits.max_tokens, limits.max_steps) == (2000, 16, TEXT_N_SUP)
    assert (grid.limits.grid_rows, grid.limits.grid_cols) == (9, 9)
    assert text.limits.max_time_budget_ms == 60_000
    assert text.default_budget.max_steps == TEXT_N_SUP and text.default_budget.min_steps == 1
    assert text.default_budget.halt_threshold == pytest.approx(0.5)
    assert dict(text.metrics) == pytest.approx({"test_accuracy": 0.91, "tiers.easy": 0.97})
    assert text.out_of_scope_threshold == pytest.approx(0.3) and grid.out_of_scope_threshold == 0.0
    assert list(text.versions) == ["1.0.0"] and text.version == "1.0.0"


def test_get_model_by_name_and_by_version(stub):
    newest = stub.GetModel(trm_pb2.GetModelRequest(name=GRID_MODEL))
    pinned = stub.GetModel(trm_pb2.GetModelRequest(name=GRID_MODEL, version="1.0.0"))
    assert newest == pinned and newest.name == GRID_MODEL


def test_reason_classifies_text_with_top_k_and_echoes_the_request_id(stub):
    response, call = stub.Reason.with_call(
        trm_pb2.ReasonRequest(model=TEXT_MODEL, text="play some jazz", top_k=2),
        metadata=(("x-request-id", "rpc-test-1"),),
    )
    answer = response.answer.classification
    assert response.request_id == "rpc-test-1"
    assert ("x-request-id", "rpc-test-1") in call.trailing_metadata()
    assert (response.model, response.model_version) == (TEXT_MODEL, "1.0.0")
    assert len(answer.top) == 2 and answer.label == answer.top[0].label
    assert answer.top[0].probability >= answer.top[1].probability
    # the random model's halting head sits at sigmoid(-5) < 0.5, so it runs to max_steps
    assert (response.steps, response.halt_reason) == (TEXT_N_SUP, trm_pb2.HALT_REASON_MAX_STEPS)
    assert 0.0 < response.halt_confidence < 0.5 and response.latency_ms > 0


def test_a_text_longer_than_max_text_chars_is_answered_as_the_tokens_the_model_reads(stub):
    """A text over limits.max_text_chars whose first max_text_chars characters hold the max_tokens tokens the model
    reads gets the answer of those tokens, on both RPCs, where it was refused."""
    limits = stub.GetModel(trm_pb2.GetModelRequest(name=TEXT_MODEL)).limits
    sentence = "play some jazz in the kitchen "
    long = sentence * (limits.max_text_chars // len(sentence) + 1)
    first_tokens = sentence * 3  # 18 words: more than max_tokens
    assert len(long) > limits.max_text_chars and len(first_tokens.split()) > limits.max_tokens
    answers = [stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=text, top_k=4)).answer
               for text in (long, first_tokens)]
    assert answers[0] == answers[1]
    final = list(stub.ReasonStream(trm_pb2.ReasonRequest(model=TEXT_MODEL, text=long, top_k=4)))[-1]
    assert final.answer == answers[1]


def test_reason_solves_a_grid_with_per_cell_confidence(stub):
    response = stub.Reason(SUDOKU_REQUEST)
    grid = response.answer.grid
    assert (grid.rows, grid.cols) == (9, 9) and len(grid.cells) == 81 and len(grid.confidence) == 81
    assert set(grid.cells) <= set("0123456789") and all(0.0 < c <= 1.0 for c in grid.confidence)
    assert grid.verified is False  # a random model does not solve Sudoku
    assert response.halt_reason == trm_pb2.HALT_REASON_MAX_STEPS


def test_stream_steps_increase_and_end_with_exactly_one_final_message(stub):
    request = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="wake me up at seven")
    steps = list(stub.ReasonStream(request))
    assert [s.step for s in steps] == list(range(1, TEXT_N_SUP + 1))
    assert [s.final for s in steps] == [False] * (TEXT_N_SUP - 1) + [True]
    assert [s.halt_reason for s in steps[:-1]] == [trm_pb2.HALT_REASON_UNSPECIFIED] * (TEXT_N_SUP - 1)
    assert steps[-1].halt_reason == trm_pb2.HALT_REASON_MAX_STEPS
    assert steps[0].change == 1.0 and all(0.0 <= s.change <= 1.0 for s in steps)
    assert all(a.elapsed_ms <= b.elapsed_ms for a, b in itertools.pairwise(steps))
    assert len({s.request_id for s in steps}) == 1 and steps[0].model_version == "1.0.0"
    unary = stub.Reason(request)
    assert steps[-1].answer.classification.label == unary.answer.classification.label
    assert steps[-1].halt_confidence == pytest.approx(unary.halt_confidence)


def test_grid_stream_reports_the_fraction_of_changed_cells(stub):
    steps = list(stub.ReasonStream(SUDOKU_REQUEST))
    for previous, current in itertools.pairwise(steps):
        before, after = previous.answer.grid.cells, current.answer.grid.cells
        changed = sum(a != b for a, b in zip(before, after, strict=True))
        assert current.change == pytest.approx(changed / 81)


def test_max_steps_one_gives_exactly_one_step(stub):
    request = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="hello", budget=trm_pb2.Budget(max_steps=1))
    steps = list(stub.ReasonStream(request))
    assert len(steps) == 1 and steps[0].final and steps[0].step == 1
    assert steps[0].halt_reason == trm_pb2.HALT_REASON_MAX_STEPS
    assert stub.Reason(request).steps == 1


def test_a_low_threshold_halts_after_min_steps(stub):
    budget = trm_pb2.Budget(min_steps=3, halt_threshold=0.001)
    response = stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="hello", budget=budget))
    assert (response.steps, response.halt_reason) == (3, trm_pb2.HALT_REASON_HALTED)


def test_the_grpc_deadline_gives_the_anytime_answer(stub):
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="think hard", budget=NEVER_HALT)
    response = stub.Reason(request, timeout=2.0)
    assert response.halt_reason == trm_pb2.HALT_REASON_DEADLINE
    assert 1 <= response.steps < LONG_N_SUP and response.answer.classification.label
    steps = list(stub.ReasonStream(request, timeout=2.0))
    assert steps[-1].final and steps[-1].halt_reason == trm_pb2.HALT_REASON_DEADLINE
    assert sum(s.final for s in steps) == 1


def test_the_time_budget_gives_the_anytime_answer(stub):
    budget = trm_pb2.Budget(halt_threshold=1.0, time_budget_ms=300)
    response = stub.Reason(trm_pb2.ReasonRequest(model=LONG_MODEL, text="think hard", budget=budget))
    assert response.halt_reason == trm_pb2.HALT_REASON_BUDGET and 1 <= response.steps < LONG_N_SUP


def test_cancelling_a_stream_returns_the_in_flight_gauge_to_zero(stub, server):
    call = stub.ReasonStream(
        trm_pb2.ReasonRequest(model=LONG_MODEL, text="cancel me", budget=NEVER_HALT),
        metadata=(("x-request-id", "to-be-cancelled"),),
    )
    next(call)
    assert server.sample_value("trm_inflight_requests", model=LONG_MODEL) == 1.0
    call.cancel()
    wait_for(lambda: server.sample_value("trm_inflight_requests", model=LONG_MODEL) == 0.0)
    assert server.sample_value("trm_queued_requests", model=LONG_MODEL) == 0.0
    wait_for(lambda: any(r.get("request_id") == "to-be-cancelled" for r in server.log_records()))
    record = next(r for r in server.log_records() if r.get("request_id") == "to-be-cancelled")
    assert record["status"] == "CANCELLED"


def test_cancelling_a_unary_call_frees_its_slot(stub, server):
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="cancel me too", budget=NEVER_HALT)
    call = stub.Reason.future(request, metadata=(("x-request-id", "unary-cancelled"),))
    wait_for(lambda: server.sample_value("trm_inflight_requests", model=LONG_MODEL) == 1.0)
    call.cancel()
    wait_for(lambda: server.sample_value("trm_inflight_requests", model=LONG_MODEL) == 0.0)
    wait_for(lambda: any(r.get("request_id") == "unary-cancelled" for r in server.log_records()))
    record = next(r for r in server.log_records() if r.get("request_id") == "unary-cancelled")
    assert record["status"] == "CANCELLED" and "steps" not in record


def test_health_reports_the_server_and_each_model(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "trm.v1.ReasoningService", TEXT_MODEL, GRID_MODEL):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="no-such-model"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services_and_serves_the_proto(channel):
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="trm.v1.ReasoningService"),
    ]
    listed, described = list(reflection.ServerReflectionInfo(iter(requests)))
    names = {s.name for s in listed.list_services_response.service}
    assert {"trm.v1.ReasoningService", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # the serialized trm.proto


def test_one_json_log_line_per_request_without_the_input_text(stub, server):
    request = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="secret words")
    stub.Reason(request, metadata=(("x-request-id", "log-1"),))
    wait_for(lambda: any(r.get("request_id") == "log-1" for r in server.log_records()))
    lines = [r for r in server.log_records() if r.get("request_id") == "log-1"]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request" and line["method"] == "Reason" and line["status"] == "OK"
    assert (line["model"], line["steps"]) == (TEXT_MODEL, TEXT_N_SUP)
    assert line["halt_reason"] == "HALT_REASON_MAX_STEPS"
    assert line["latency_ms"] > 0 and "queue_ms" in line
    assert "secret words" not in server.logs()


def test_generated_request_ids_are_unique(stub):
    ids = {stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="hi")).request_id for _ in range(5)}
    assert len(ids) == 5 and all(len(i) == 32 for i in ids)


def test_log_inputs_includes_the_text(text_bundle: Path, stub_for):
    with ServerProcess([text_bundle], extra_args=["--log-inputs"]) as logged:
        stub_for(logged.target).Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="visible words"))
        wait_for(lambda: any(r.get("input") == "visible words" for r in logged.log_records()))
