"""Shared fixtures: small real bundles (random TRMs through the trainer's exporter) and gRPC stubs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from test_service_support import GRID_MODEL, LONG_MODEL, LONG_N_SUP, TEXT_MODEL, TEXT_N_SUP, make_bundle
from trainer_support import write_keyword_csv
from trm.v1 import trm_pb2_grpc

from trm_service.testing import ServerProcess, loopback_without_proxy

loopback_without_proxy()  # the servers the tests start are on 127.0.0.1, never behind a proxy
torch.set_num_threads(1)  # in-process training and scoring in tests: one thread, beside the servers they start


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
    """Random text model allowing 20000 steps: requests with halt_threshold=1 run until a limit stops them.

    It uses the long-document layout (tokens pooled by 4, a bag-of-words slot), so the batching tests
    cover trimming in multiples of 4 tokens with two rows before the tokens."""
    return make_bundle(
        tmp_path_factory.mktemp("long"), "text", name=LONG_MODEL, N_sup=LONG_N_SUP, seed=3, pool=4, doc_slot=True
    )


@pytest.fixture(scope="session")
def keyword_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A user's training and test CSVs (400 and 100 rows) whose label one keyword decides."""
    folder = tmp_path_factory.mktemp("keywords")
    write_keyword_csv(folder / "train.csv", 400, seed=0)
    write_keyword_csv(folder / "test.csv", 100, seed=1)
    return folder / "train.csv", folder / "test.csv"


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


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[trm_pb2_grpc.ReasoningServiceStub]:
    """A ReasoningService stub on one channel to the test module's own `server` fixture, for the whole module."""
    with grpc.insecure_channel(server.target) as channel:
        yield trm_pb2_grpc.ReasoningServiceStub(channel)
