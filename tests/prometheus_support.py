"""A real Prometheus for the tests: the Debian package's server on a free 127.0.0.1 port, and its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml


def tool(name: str) -> str:
    """The path of a Prometheus binary (prometheus, promtool); the test fails, naming the fix, without it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make install-system` installs the Debian package prometheus")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api(base: str, path: str) -> dict:
    """GET a Prometheus API path, decoded."""
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.load(response)


def query(base: str, expr: str) -> dict:
    """An instant query's reply (its samples under ["data"]["result"])."""
    return api(base, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


@contextmanager
def running_prometheus(config: dict, directory: Path) -> Iterator[str]:
    """Prometheus with `config` (written to `directory`, with its data and log); yields its base URL."""
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
               f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]
    with open(directory / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
