"""The container's install step without Docker: deploy/install-runtime.sh (what the Dockerfile runs)
into a fresh venv; no torch and no trainer there; the server it installed starts, serves the packaged
bundles, and its gRPC health service answers SERVING to trm-healthcheck (the image's HEALTHCHECK)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from trm.v1 import trm_pb2, trm_pb2_grpc

from trainer.testing import make_random_bundle

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO_ROOT / "deploy" / "install-runtime.sh"
PACKAGED_MODELS = REPO_ROOT / "trm_service" / "models"
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    install = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), str(venv), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


@pytest.fixture(scope="module")
def installed_server(runtime_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`trm-service serve` from the fresh venv: packaged bundles plus one test bundle; yields its target."""
    scratch = tmp_path_factory.mktemp("installed-server")
    make_random_bundle(scratch / "models", "text", name="install-check")
    ready = scratch / "ready.json"
    command = [
        str(runtime_venv / "bin" / "trm-service"), "serve", "--host", "127.0.0.1", "--port", "0",
        "--metrics-port", "0", "--models-dir", str(scratch / "models"), "--ready-file", str(ready),
    ]  # fmt: skip
    with open(scratch / "server.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=scratch)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            assert process.poll() is None, (scratch / "server.log").read_text()
            assert time.monotonic() < deadline, "the installed server did not start"
            time.sleep(0.1)
        yield f"127.0.0.1:{json.loads(ready.read_text())['port']}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def run_in(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a program of the venv from inside it, so the repository's folders are not importable."""
    command = [str(venv / "bin" / args[0]), *args[1:]]
    return subprocess.run(command, cwd=venv, capture_output=True, text=True, check=False, env=env)


def test_runtime_has_no_torch_and_no_trainer(runtime_venv: Path) -> None:
    for module in ("torch", "trainer", "onnx"):
        probe = run_in(runtime_venv, "python", "-c", f"import {module}")
        assert probe.returncode != 0, f"{module} is importable in the runtime venv"
    assert run_in(runtime_venv, "python", "-c", "import trm_service.server, onnxruntime").returncode == 0
    assert not (runtime_venv / "bin" / "trm-train").exists()  # its script would fail on the missing trainer


def test_installed_server_is_serving_to_the_container_healthcheck(installed_server: str, runtime_venv: Path) -> None:
    deployment = yaml.safe_load((REPO_ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probed = {container[p]["grpc"].get("service", "") for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    for service_name in sorted(probed):
        check = run_in(runtime_venv, "trm-healthcheck", installed_server, "--service", service_name)
        assert (check.returncode, check.stdout.strip()) == (0, "SERVING"), (service_name, check.stderr)
    # the image's HEALTHCHECK gives no target: it probes the port the server's TRM_PORT sets
    port = installed_server.rsplit(":", 1)[1]
    check = run_in(runtime_venv, "trm-healthcheck", env={**os.environ, "TRM_PORT": port})
    assert (check.returncode, check.stdout.strip()) == (0, "SERVING"), check.stderr


def test_installed_server_hosts_the_packaged_bundles(installed_server: str) -> None:
    packaged = {p.parent.name for p in PACKAGED_MODELS.glob("*/manifest.json")}
    with grpc.insecure_channel(installed_server) as channel:
        models = trm_pb2_grpc.ReasoningServiceStub(channel).ListModels(trm_pb2.ListModelsRequest(), timeout=10)
        reply = trm_pb2_grpc.ReasoningServiceStub(channel).Reason(
            trm_pb2.ReasonRequest(model="install-check", text="wake me up at seven"), timeout=30
        )
    assert {m.name for m in models.models} == packaged | {"install-check"}
    assert reply.answer.classification.label


def test_healthcheck_fails_when_nothing_listens(runtime_venv: Path) -> None:
    check = run_in(runtime_venv, "trm-healthcheck", "127.0.0.1:1", "--timeout", "1")
    assert check.returncode == 1 and "UNAVAILABLE" in check.stderr
    assert "nothing listens there" in check.stderr and "a TLS server?" not in check.stderr
