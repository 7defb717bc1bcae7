"""Cancelling every request of a running step stops that step on a real server (the shipped Sudoku bundle,
whose batched steps take seconds on a shared core), so the next request does not wait for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from test_service_support import wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

SUDOKU = "sudoku"
SUDOKU_BUNDLE = Path(__file__).resolve().parents[1] / "trm_service" / "models" / SUDOKU
STREAMS = 16  # one ONNX Runtime call of 16 rows per step (one intra-op thread: no lanes to split it)
PUZZLE = "..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3.."


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    one_call = ["--max-rows-per-run", str(STREAMS), "--intra-op-threads", "1"]
    with ServerProcess([SUDOKU_BUNDLE], extra_args=one_call) as process:
        yield process


def _request(**budget: float) -> trm_pb2.ReasonRequest:
    budget = trm_pb2.Budget(**budget, continue_when_verified=True)  # keep stepping past a solved puzzle
    return trm_pb2.ReasonRequest(model=SUDOKU, grid=trm_pb2.Grid(cells=PUZZLE), budget=budget)


def _stopped_steps(server: ServerProcess, earlier: int) -> list[dict]:
    return [r for r in server.log_records()[earlier:] if r.get("event") == "cancelled_calls_stopped"]


def test_cancelling_every_stream_of_a_running_step_stops_it(server):
    earlier = len(server.log_records())  # the module's server: only this test's records count
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        calls = [stub.ReasonStream(_request(halt_threshold=1.0), timeout=300) for _ in range(STREAMS)]
        assert [next(call).step for call in calls] == [1] * STREAMS  # the second step starts at once
        for call in calls:
            call.cancel()
        wait_for(lambda: len(_stopped_steps(server, earlier)) == 1)
        (stopped,) = _stopped_steps(server, earlier)
        assert (stopped["model"], stopped["calls"], stopped["stopped"]) == (SUDOKU, 1, 1)
        assert stub.Reason(_request(max_steps=1), timeout=60).steps == 1
    lines = [r for r in server.log_records()[earlier:] if r.get("method") == "ReasonStream"]
    assert [r["status"] for r in lines] == ["CANCELLED"] * STREAMS
    assert all(r.get("steps", 0) >= 1 for r in lines), lines  # the steps it reached (QA: logged without them)
    assert server.sample_value("trm_inflight_requests", model=SUDOKU) == 0.0


def test_a_cancelled_batch_accounts_for_every_request_and_frees_its_places(server):
    batch = trm_pb2.ReasonBatchRequest(requests=[_request(halt_threshold=1.0)] * 4)
    with grpc.insecure_channel(server.target) as channel:
        future = trm_pb2_grpc.ReasoningServiceStub(channel).ReasonBatch.future(batch, timeout=300)
        wait_for(lambda: server.sample_value("trm_inflight_requests", model=SUDOKU) == 4.0)
        future.cancel()
        wait_for(lambda: server.sample_value("trm_inflight_requests", model=SUDOKU) == 0.0)
    wait_for(lambda: any(r.get("method") == "ReasonBatch" for r in server.log_records()))
    records = server.log_records()
    call_line = next(r for r in records if r.get("method") == "ReasonBatch")
    assert (call_line["status"], call_line["model"]) == ("CANCELLED", SUDOKU)  # counted under its model
    statuses = sorted(r["status"] for r in records if r.get("request_id", "").startswith(f"{call_line['request_id']}."))
    assert statuses == ["CANCELLED"] * 4
