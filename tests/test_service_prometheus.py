"""A real Prometheus server scrapes the metrics port and answers queries about the service."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_service_support import TEXT_MODEL
from trm.v1 import trm_pb2

from trm_service.testing import ServerProcess

REQUESTS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Prometheus:
    """`prometheus` (Debian package) scraping one target every second, on a free 127.0.0.1 port."""

    def __init__(self, directory: Path, target: str) -> None:
        config = directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: trm, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._log = (directory / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [shutil.which("prometheus") or "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address={self.url[7:]}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def query(self, expression: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        return _get_json(url)["data"]["result"]

    def wait_for(self, expression: str, minimum: float, timeout_s: float = 60.0) -> float:
        """Poll an instant query until its first sample is at least `minimum`; return the value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                result = self.query(expression)
            except OSError:
                result = []
            if result and float(result[0]["value"][1]) >= minimum:
                return float(result[0]["value"][1])
            time.sleep(0.5)
        pytest.fail(f"Prometheus never returned {expression} >= {minimum}")

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("the Debian package 'prometheus' is not installed: run `make install-system`")
    return path


def test_prometheus_scrapes_the_request_counter_and_friends(prometheus_binary, text_bundle: Path, tmp_path, stub_for):
    with ServerProcess([text_bundle]) as server:
        stub = stub_for(server.target)
        for _ in range(REQUESTS):
            stub.Reason(trm_pb2.ReasonRequest(model=TEXT_MODEL, text="count me"))
        prometheus = Prometheus(tmp_path, f"127.0.0.1:{server.metrics_port}")
        try:
            selector = f'trm_requests_total{{model="{TEXT_MODEL}",method="Reason",code="OK"}}'
            assert prometheus.wait_for(selector, REQUESTS) == REQUESTS
            assert prometheus.wait_for(f'trm_model_info{{model="{TEXT_MODEL}",version="1.0.0"}}', 1) == 1
            assert prometheus.wait_for(f'trm_steps_used_count{{model="{TEXT_MODEL}"}}', REQUESTS) == REQUESTS
            assert prometheus.wait_for('up{job="trm"}', 1) == 1
            halts = prometheus.query(f'trm_halt_reasons_total{{model="{TEXT_MODEL}"}}')
            assert {r["metric"]["reason"] for r in halts} == {"HALT_REASON_MAX_STEPS"}
        finally:
            prometheus.close()
