"""Real servers for the client tests: `trm-service serve` subprocesses hosting small random bundles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_test_support import GRID_MODEL, N_SUP, TEXT_MODEL
from trm_client import TRMClient

from trainer.testing import make_random_bundle
from trm_service.testing import ServerProcess, loopback_without_proxy

loopback_without_proxy()  # the servers the tests start are on 127.0.0.1, never behind a proxy


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random text bundle (labels include "oos") and a random Sudoku bundle."""
    root = tmp_path_factory.mktemp("bundles")
    return {
        "text": make_random_bundle(root, "text", name=TEXT_MODEL, N_sup=N_SUP, seed=1),
        "grid": make_random_bundle(root, "grid", name=GRID_MODEL, N_sup=N_SUP, seed=2),
    }


@pytest.fixture(scope="session")
def server(bundles: dict[str, Path]) -> Iterator[ServerProcess]:
    """One server hosting both bundles for the whole session."""
    with ServerProcess([bundles["text"], bundles["grid"]]) as process:
        yield process


@pytest.fixture
def client(server: ServerProcess) -> Iterator[TRMClient]:
    """A blocking client of the shared server."""
    with TRMClient(server.target, timeout_s=30.0) as c:
        yield c


@pytest.fixture(scope="session")
def shipped_server() -> Iterator[ServerProcess]:
    """A server hosting the bundles packaged in trm_service/models, the ones README.md's examples use."""
    with ServerProcess(default_models=True) as process:
        yield process
