"""Servers the load tests and the benchmark run on this machine: the service (trm_service.testing's
ServerProcess) with the default, untrained or random bundles, the naive PyTorch baseline and the plain
ONNX Runtime server."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.inputs import DEFAULT_MODELS
from trm_service.config import DEFAULT_MODELS_DIR
from trm_service.testing import ServerProcess

BUNDLE_KINDS = ("default", "untrained", "random")
POLL_S = 0.01
STARTUP_TIMEOUT_S = 120.0


def make_random_models(out_dir: Path) -> Path:
    """Randomly initialised bundles named like the three default models (for runs before training)."""
    from trainer.testing import make_random_bundle  # torch: only when random bundles are asked for

    for seed, (name, (task, _inputs)) in enumerate(DEFAULT_MODELS.items()):
        make_random_bundle(out_dir, task, name=name, seed=seed)
    return out_dir


def models_dir(kind: str, scratch: Path, data: Path) -> Path:
    """Bundles to serve: "default" (packaged, trained), "untrained" (their architecture, random
    weights: loadtests.untrained_bundles) or "random" (tiny random bundles), built under `scratch`."""
    if kind == "random":
        return make_random_models(scratch / "random-models")
    if kind == "untrained":
        from loadtests.untrained_bundles import make_untrained_bundle  # torch: only when asked for

        for name in DEFAULT_MODELS:
            make_untrained_bundle(name, data, scratch / "untrained-models")
        return scratch / "untrained-models"
    missing = [name for name in DEFAULT_MODELS if not (DEFAULT_MODELS_DIR / name / "manifest.json").exists()]
    if missing:
        raise SystemExit(f"default bundles missing from {DEFAULT_MODELS_DIR}: {missing}; use --bundles untrained")
    return DEFAULT_MODELS_DIR


def service(models: Path, extra_args: Sequence[str] = ()) -> ServerProcess:
    """An unstarted service process serving exactly the bundles under `models` on 127.0.0.1."""
    return ServerProcess([models], extra_args=list(extra_args), startup_timeout_s=STARTUP_TIMEOUT_S)


def wait_until_serving(target: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Poll the gRPC health service (overall status) until it answers SERVING."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} was not SERVING within {timeout_s}s")
            time.sleep(POLL_S)


def text_limits(target: str) -> dict[str, int]:
    """max_text_chars of every hosted model, from the service's ListModels."""
    with grpc.insecure_channel(target) as channel:
        reply = trm_pb2_grpc.ReasoningServiceStub(channel).ListModels(trm_pb2.ListModelsRequest(), timeout=10)
    return {info.name: info.limits.max_text_chars for info in reply.models}


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its children (workers), in bytes."""
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@contextmanager
def baseline_server(module: str, models: Path, extra_args: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """A baseline server (`python -m module`, see loadtests.baseline_main) on a free 127.0.0.1 port:
    yields (target, pid); stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="trm-baseline-") as scratch:
        ready = Path(scratch) / "port"
        command = [sys.executable, "-m", module, "--models-dir", str(models), "--ready-file", str(ready), *extra_args]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not start (exit status {process.poll()})")
                time.sleep(POLL_S)
            yield f"127.0.0.1:{ready.read_text()}", process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def naive_server(models: Path) -> AbstractContextManager[tuple[str, int]]:
    """The naive PyTorch baseline (loadtests.naive_server): yields (target, pid)."""
    return baseline_server("loadtests.naive_server", models)


def fixed_reply_server(models: Path, front_end: str) -> AbstractContextManager[tuple[str, int]]:
    """A server that answers every Reason at once (loadtests.fixed_reply_server) on the `front_end` "sync"
    or "aio": yields (target, pid)."""
    return baseline_server("loadtests.fixed_reply_server", models, ["--front-end", front_end])


def plain_server(models: Path) -> AbstractContextManager[tuple[str, int]]:
    """The plain ONNX Runtime server (loadtests.plain_server), text and grid models: yields (target, pid)."""
    return baseline_server("loadtests.plain_server", models)
