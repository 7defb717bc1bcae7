"""Shared fixtures: small real bundles (random TRMs through the trainer's exporter) and gRPC stubs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def text_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random text classifier (labels include "oos"), N_sup=8; halting head starts near sigmoid(-5)."""
    return make_bundle(tmp_path_factory.mktemp("text"), "text", name=TEXT_MODEL, N_sup=TEXT_N_SUP, seed=1)


@pytest.fixture(scope="session")
def grid_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 9x9 Sudoku model, N_sup=4."""
    return make_bundle(tmp_path_factory.mktemp("grid"), "grid", name=GRID_MODEL, seed=2)


@pytest.fixture(scope="session")
def long_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random text model allowing 20000 steps: requests with halt_threshold=1 run until a limit stops them."""
    return make_bundle(tmp_path_factory.mktemp("long"), "text", name=LONG_MODEL, N_sup=LONG_N_SUP, seed=3)


@pytest.fixture
def stub_for() -> Iterator[Callable[[str], trm_pb2_grpc.ReasoningServiceStub]]:
    """Factory of ReasoningService stubs on fresh insecure channels, closed after the test."""
    channels: list[grpc.Channel] = []

    def make(target: str) -> trm_pb2_grpc.ReasoningServiceStub:
        channel = grpc.insecure_channel(target)
        channels.append(channel)
        return trm_pb2_grpc.ReasoningServiceStub(channel)

    yield make
    for channel in channels:
        channel.close()


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
