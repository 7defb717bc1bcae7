"""The serving image, built and run by a real Docker engine: it builds from deploy/Dockerfile, runs read-only as
uid 10001 at the port its TRM_PORT gives, reports healthy through its own HEALTHCHECK, serves every packaged
model and its metrics, holds no torch, trainer, pip or compiler, and `docker stop` drains it (requests keep
being answered during the drain delay given after the image's name, then refused; exit code 0).

Skipped where no Docker engine answers (CI has none; a development machine only once dockerd is started by
hand) or where the base image can be neither found nor pulled. TRM_TEST_PYTHON_IMAGE names another base image
(the Dockerfile's PYTHON_IMAGE argument), e.g. one imported from a debootstrap root file system where Docker
Hub is out of reach.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trm.v1 import trm_pb2, trm_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
PACKAGED_MODELS = REPO_ROOT / "trm_service" / "models"
GRPC_PORT, METRICS_PORT = 6000, 9100  # not the image's defaults, so the test sees TRM_PORT and TRM_METRICS_PORT act
HEALTHY_TIMEOUT_S = 90.0  # the HEALTHCHECK's first probe comes 10 s after the start


def docker(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; never raises on a non-zero exit."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def base_image() -> str:
    """The base image to build on: TRM_TEST_PYTHON_IMAGE, else the Dockerfile's PYTHON_IMAGE default."""
    default = re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text()).group(1)
    return os.environ.get("TRM_TEST_PYTHON_IMAGE") or default


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("docker") is None or docker("info", timeout=30).returncode != 0:
        pytest.skip("no Docker engine answers here")
    base = base_image()
    if docker("image", "inspect", base).returncode != 0:
        pulled = docker("pull", base, timeout=300)
        if pulled.returncode != 0:
            pytest.skip(f"base image {base} not found and not pulled: {pulled.stderr.strip()[-200:]}")
    tag = f"trm-service:test-{int(time.time())}"
    build = docker("build", "-f", str(DOCKERFILE), "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(REPO_ROOT),
                   timeout=900)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    yield tag
    docker("image", "rm", "--force", tag)


def logs(container: str) -> str:
    """The container's output so far, both streams."""
    printed = docker("logs", container)
    return printed.stdout + printed.stderr


def start_container(image: str, *serve_flags: str) -> tuple[str, str, str]:
    """Run the image as the docs say (read-only, a writable /tmp, a stop timeout above the drain) at other
    ports set through TRM_PORT and TRM_METRICS_PORT, `serve_flags` after the image's name; wait for its
    HEALTHCHECK to report healthy. Returns the container id, the gRPC target and the metrics address here."""
    run = docker(
        "run", "--detach", "--read-only", "--tmpfs", "/tmp", "--stop-timeout", "45",
        "-e", f"TRM_PORT={GRPC_PORT}", "-e", f"TRM_METRICS_PORT={METRICS_PORT}",
        "-p", f"127.0.0.1::{GRPC_PORT}", "-p", f"127.0.0.1::{METRICS_PORT}", image, *serve_flags,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while (health := docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip()) != "healthy":
        assert health in {"starting", "healthy"}, (health, logs(container)[-3000:])
        assert time.monotonic() < deadline, f"not healthy after {HEALTHY_TIMEOUT_S} s: {health}"
        time.sleep(1.0)

    def host_address(port: int) -> str:
        return docker("port", container, f"{port}/tcp").stdout.split()[0]

    return container, host_address(GRPC_PORT), host_address(METRICS_PORT)


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[tuple[str, str, str]]:
    started = start_container(image)
    yield started
    docker("rm", "--force", started[0])


def test_image_runs_read_only_as_uid_10001(running: tuple[str, str, str]) -> None:
    container, _, _ = running
    fields = "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Health.Status}}"
    assert docker("inspect", "--format", fields, container).stdout.split() == ["10001:10001", "true", "healthy"]
    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"


def test_image_serves_every_packaged_model_and_its_metrics(running: tuple[str, str, str]) -> None:
    _, target, metrics = running
    with grpc.insecure_channel(target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        models = stub.ListModels(trm_pb2.ListModelsRequest(), timeout=10)
        reply = stub.Reason(trm_pb2.ReasonRequest(model="intent-clinc150", text="book a table for two"), timeout=10)
    assert {m.name for m in models.models} == {p.parent.name for p in PACKAGED_MODELS.glob("*/manifest.json")}
    assert reply.answer.classification.label == "restaurant_reservation"
    scraped = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
    assert re.search(r'trm_requests_total\{[^}]*model="intent-clinc150"[^}]*\} 1\.0', scraped), scraped[:2000]


def test_image_holds_no_torch_trainer_pip_or_compiler(image: str) -> None:
    modules = ("torch", "trainer", "onnx", "pip", "setuptools")
    probe = f"import importlib.util as u; print(*[m for m in {modules!r} if u.find_spec(m)])"
    found = docker("run", "--rm", "--entrypoint", "python", image, "-c", probe)
    assert found.returncode == 0 and found.stdout.strip() == "", found.stdout + found.stderr
    compilers = docker("run", "--rm", "--entrypoint", "sh", image, "-c", "command -v gcc cc g++ || true")
    assert compilers.stdout.strip() == ""


def test_docker_stop_drains_the_server(image: str) -> None:
    """With `--drain-delay 3` after the image's name, requests keep being answered for 3 s after `docker stop`,
    then are refused (UNAVAILABLE), and the server exits 0 well before Docker's stop timeout would kill it."""
    container, target, _ = start_container(image, "--drain-delay", "3")
    try:
        outcomes: list[tuple[float, grpc.StatusCode]] = []
        stop_sent = threading.Event()

        def call_until_refused() -> None:
            with grpc.insecure_channel(target) as channel:
                stub = trm_pb2_grpc.ReasoningServiceStub(channel)
                while True:
                    request = trm_pb2.ReasonRequest(model="routing-20ng", text="my gpu driver crashes on boot")
                    try:
                        stub.Reason(request, timeout=10)
                        outcomes.append((time.monotonic(), grpc.StatusCode.OK))
                    except grpc.RpcError as error:
                        outcomes.append((time.monotonic(), error.code()))
                        if stop_sent.is_set():
                            return
                    time.sleep(0.05)

        caller = threading.Thread(target=call_until_refused)
        caller.start()
        time.sleep(1.0)
        stop_started = time.monotonic()
        stop_sent.set()
        stopped = docker("stop", container, timeout=90)
        stop_s = time.monotonic() - stop_started
        caller.join(timeout=30)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
        assert exit_code == "0", (exit_code, logs(container)[-3000:])
        answered_while_draining = [t for t, code in outcomes if code == grpc.StatusCode.OK and t > stop_started + 1.0]
        assert answered_while_draining, ("no request was answered during the drain delay", outcomes[-5:], stop_started)
        assert {code for _, code in outcomes} <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
        assert stop_s < 45, f"docker stop took {stop_s:.1f} s: the server was killed, not drained"
        assert '"event":"stopped"' in logs(container)
    finally:
        docker("rm", "--force", container)
