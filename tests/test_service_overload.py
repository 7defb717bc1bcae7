"""Overload: a full model answers RESOURCE_EXHAUSTED at once, and every accepted request completes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from test_service_support import LONG_MODEL, wait_for
from trm.v1 import trm_pb2

from trm_service.testing import ServerProcess

STEPS = 1500
CLIENTS = 12
CAPACITY = ["--max-batch-size", "2", "--max-queue", "2", "--load-wait-ms", "0"]  # refusal alone: no step cap


def test_overload_is_refused_at_once_while_accepted_requests_complete(long_bundle: Path, stub_for):
    with ServerProcess([long_bundle], extra_args=CAPACITY) as server:
        stub = stub_for(server.target)
        request = trm_pb2.ReasonRequest(
            model=LONG_MODEL, text="busy", budget=trm_pb2.Budget(max_steps=STEPS, halt_threshold=1.0)
        )
        calls = [stub.Reason.future(request, timeout=120) for _ in range(CLIENTS)]
        refused = [c for c in calls if c.exception() is not None]
        accepted = [c for c in calls if c.exception() is None]
        assert refused and accepted
        for call in refused:
            assert call.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"model '{LONG_MODEL}' is at capacity" in call.exception().details()
        for call in accepted:
            assert (call.result().steps, call.result().halt_reason) == (STEPS, trm_pb2.HALT_REASON_MAX_STEPS)
        assert len(accepted) <= 4  # batch of 2 plus a queue of 2
        wait_for(lambda: server.sample_value("trm_requests_total") == len(calls))  # counted just after answering
        assert server.sample_value("trm_requests_total", code="RESOURCE_EXHAUSTED") == len(refused)
        assert server.sample_value("trm_requests_total", code="OK") == len(accepted)


def test_refusals_do_not_wait_for_a_free_slot(long_bundle: Path, stub_for):
    with ServerProcess([long_bundle], extra_args=["--max-batch-size", "1", "--max-queue", "0"]) as server:
        stub = stub_for(server.target)
        long_running = stub.ReasonStream(trm_pb2.ReasonRequest(
            model=LONG_MODEL, text="hog", budget=trm_pb2.Budget(halt_threshold=1.0)), timeout=120)
        next(long_running)  # the only slot is taken
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Reason(trm_pb2.ReasonRequest(model=LONG_MODEL, text="me too"), timeout=120)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert not long_running.done()  # every refusal came back while the slot was still busy
        long_running.cancel()
