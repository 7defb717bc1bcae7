"""`--workers N`: N processes on one port (SO_REUSEPORT), merged metrics, forwarded signals, restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import psutil
from test_service_support import TEXT_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

CHANNELS = 16
REQUEST = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="which worker?", budget=trm_pb2.Budget(max_steps=1))


def _listeners(server: ServerProcess) -> set[int]:
    """Pids of the supervisor's children that listen on the gRPC port."""
    pids = set()
    for child in psutil.Process(server.pid).children():
        try:
            connections = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in connections):
            pids.add(child.pid)
    return pids


def _call_on_fresh_channels(target: str, count: int) -> None:
    for _ in range(count):
        with grpc.insecure_channel(target) as channel:
            assert trm_pb2_grpc.ReasoningServiceStub(channel).Reason(REQUEST, timeout=30).steps == 1


def test_workers_share_the_port_merge_metrics_and_follow_signals(text_bundle: Path):
    with ServerProcess([text_bundle], extra_args=["--workers", "2"]) as server:
        workers = _listeners(server)
        assert len(workers) == 2 and server.pid not in workers
        _call_on_fresh_channels(server.target, CHANNELS)
        wait_for(lambda: server.sample_value("trm_requests_total", method="Reason", code="OK") == CHANNELS)
        serving_pids = {r["pid"] for r in server.log_records() if r.get("event") == "request"}
        assert serving_pids == workers  # the kernel spread the connections over both processes

        reloads = sum(1 for r in server.log_records() if r.get("event") == "models_reloaded")
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: sum(1 for r in server.log_records() if r.get("event") == "models_reloaded") == reloads + 2)

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_listeners(server)) == 2 and victim not in _listeners(server))
        _call_on_fresh_channels(server.target, 4)
        assert server.stop() == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers - {victim})
