"""A real Prometheus server scrapes the metrics port and answers queries about the service."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_support import query, running_prometheus
from test_service_support import TEXT_MODEL
from trm.v1 import trm_pb2

from trm_service.api.halt_reasons import HALT_REASON_NAMES
from trm_service.testing import ServerProcess

REQUESTS = 5


def _wait_for(base: str, expression: str, minimum: float, timeout_s: float = 60.0) -> float:
    """Poll an instant query until its first sample is at least `minimum`; return the value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = query(base, expression)["data"]["result"]
        except OSError:
            result = []
        if result and float(result[0]["value"][1]) >= minimum:
            return float(result[0]["value"][1])
        time.sleep(0.5)
    pytest.fail(f"Prometheus never returned {expression} >= {minimum}")


def test_prometheus_scrapes_the_request_counter_and_friends(text_bundle: Path, tmp_path, stub_for):
    with ServerProcess([text_bundle]) as server:
        stub = stub_for(server.target)
        for _ in range(REQUESTS):
            stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="count me"))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "trm", "static_configs": [
                      {"targets": [f"127.0.0.1:{server.metrics_port}"]}]}]}
        with running_prometheus(config, tmp_path) as prometheus:
            selector = f'trm_requests_total{{model="{TEXT_MODEL}",method="Reason",code="OK"}}'
            assert _wait_for(prometheus, selector, REQUESTS) == REQUESTS
            assert _wait_for(prometheus, f'trm_model_info{{model="{TEXT_MODEL}",version="1.0.0"}}', 1) == 1
            assert _wait_for(prometheus, f'trm_steps_used_count{{model="{TEXT_MODEL}"}}', REQUESTS) == REQUESTS
            assert _wait_for(prometheus, 'up{job="trm"}', 1) == 1
            halts = query(prometheus, f'trm_halt_reasons_total{{model="{TEXT_MODEL}"}}')["data"]["result"]
            assert {r["metric"]["reason"]: float(r["value"][1]) > 0 for r in halts} == {  # every series from the load
                "HALT_REASON_MAX_STEPS": True, **{reason: False for reason in HALT_REASON_NAMES
                                                  if reason != "HALT_REASON_MAX_STEPS"}}
