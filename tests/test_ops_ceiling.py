"""The ceiling measurement (loadtests.ceiling): its fixed-reply servers answer with a real answer's size on
both front ends, its CPU counters see a child's work, and the c=64 budget is the bar's arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.ceiling import Tally, report, tree_cpu_s
from loadtests.local_server import fixed_reply_server, service, wait_until_serving
from trm_service.config import DEFAULT_MODELS_DIR

REQUEST = trm_pb2.ReasonRequest(model="intent-clinc150", text="book a table for two at seven")


def reply_size(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return trm_pb2_grpc.ReasoningServiceStub(channel).Reason(REQUEST, timeout=30).ByteSize()


@pytest.fixture(scope="module")
def service_reply_size() -> int:
    with service(DEFAULT_MODELS_DIR) as server:
        wait_until_serving(server.target)
        return reply_size(server.target)


@pytest.mark.parametrize("front_end", ["sync", "aio"])
def test_fixed_reply_is_as_large_as_the_services_answer(front_end: str, service_reply_size: int) -> None:
    with fixed_reply_server(DEFAULT_MODELS_DIR, front_end) as (target, _pid):
        size = reply_size(target)
    assert abs(size - service_reply_size) <= 0.25 * service_reply_size, (size, service_reply_size)


def test_tree_cpu_counts_the_work_of_a_child_process() -> None:
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    burn += "print(flush=True)\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        child.stdout.readline()  # the child has burnt its 0.3 s and waits
        assert tree_cpu_s(os.getpid()) >= tree_cpu_s(child.pid) >= 0.3
    finally:
        child.communicate(b"\n", timeout=10)


def test_the_budget_is_what_2x_the_plain_server_leaves_after_client_and_grpc() -> None:
    def tally(requests: int, client_s: float, server_s: float) -> Tally:
        return Tally(latencies_ms=[1.0] * requests, elapsed_s=1.0, client_cpu_s=client_s, server_cpu_s=server_s)

    tallies = {"service": tally(1500, 0.2, 0.9), "plain": tally(1000, 0.2, 0.7), "fixed aio": tally(8000, 0.8, 1.2)}
    cores = os.cpu_count() or 1
    budget = cores / 2000 * 1e6  # 2.0x of 1,000 req/s
    lines = report("intent-clinc150", {64: tallies})
    assert "| 64 | service | 1500.0 |" in lines[4] and lines[4].endswith("| 1.50x |")
    assert f"is 2000 req/s: at most {budget:.0f} µs" in lines[-1]
    assert f"take 250, leaving {budget - 250:.0f} µs" in lines[-1]  # (0.8 + 1.2) s over 8,000 requests
