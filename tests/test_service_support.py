"""Helpers shared by the service tests (a module, not conftest.py: clients/tests has its own conftest).

Holds no tests; it is named test_service_* to sit with the files it serves.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from trm.v1 import trm_pb2, trm_pb2_grpc

TEXT_MODEL = "svc-text"
GRID_MODEL = "svc-sudoku"
LONG_MODEL = "svc-long"
TEXT_N_SUP = 8
LONG_N_SUP = 20000


def make_bundle(root: Path, task: str, **kwargs) -> Path:
    """trainer.testing.make_random_bundle with torch on one thread."""
    import torch

    from trainer.testing import make_random_bundle

    torch.set_num_threads(1)
    return make_random_bundle(root, task, **kwargs)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll until `condition()` holds (waiting for an asynchronous effect, not measuring time)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {timeout_s}s for {getattr(condition, '__name__', 'a condition')}")
        time.sleep(0.05)


class LoadClient:
    """Sends one request over and over (request ids load-1, load-2, ...) until stopped; records outcomes."""

    def __init__(self, target: str, request: trm_pb2.ReasonRequest) -> None:
        self.outcomes: dict[str, grpc.StatusCode] = {}
        self.versions: dict[str, str] = {}
        self._target = target
        self._request = request
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def count(self, code: grpc.StatusCode) -> int:
        return sum(1 for c in list(self.outcomes.values()) if c == code)

    def _run(self) -> None:
        with grpc.insecure_channel(self._target) as channel:
            stub = trm_pb2_grpc.ReasoningServiceStub(channel)
            number = 0
            while not self._stop.is_set():
                number += 1
                request_id = f"load-{number}"
                try:
                    metadata = (("x-request-id", request_id),)
                    response = stub.Reason(self._request, timeout=30, metadata=metadata)
                    self.outcomes[request_id] = grpc.StatusCode.OK
                    self.versions[request_id] = response.model_version
                except grpc.RpcError as error:
                    self.outcomes[request_id] = error.code()
                    time.sleep(0.01)


class SlowHandOver(ThreadPoolExecutor):
    """The model's thread of a loaded machine: each hand-over waits `delay_s` before the step starts."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(max_workers=1)
        self.delay_s = delay_s

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        def late():  # type: ignore[no-untyped-def]
            time.sleep(self.delay_s)
            return fn(*args, **kwargs)

        return super().submit(late)


def run_healthcheck(
    target: str, *options: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """deploy/healthcheck.py (the image's trm-healthcheck) against `target`."""
    probe = Path(__file__).resolve().parents[1] / "deploy" / "healthcheck.py"
    return subprocess.run([sys.executable, str(probe), target, *options], capture_output=True, text=True,
                          timeout=60, env=env)
