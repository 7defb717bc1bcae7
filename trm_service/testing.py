"""`ServerProcess`: a real `trm-service serve` subprocess on 127.0.0.1 ephemeral ports, for tests and tools.

    from trm_service.testing import ServerProcess

    with ServerProcess([bundle_dir], extra_args=["--max-batch-size", "8"]) as server:
        channel = grpc.insecure_channel(server.target)          # "127.0.0.1:PORT"
        ...
        server.sample_value("trm_requests_total", method="Reason", code="OK")
    # leaving the block sends SIGTERM and waits for a clean exit

It waits for the server's --ready-file, so `target`, `port`, `metrics_port` and `pid` are the
real ones; a server that fails to start raises RuntimeError with the tail of its log. The
environment is hermetic: TRM_* variables of the caller are dropped, packaged default models are
off unless `default_models=True`, and ONNX Runtime / OpenMP use one thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

_POLL_S = 0.05
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def loopback_without_proxy() -> None:
    """Keep this process's loopback calls off an HTTP proxy that the environment names (http_proxy, https_proxy):
    gRPC channels and urllib both honour no_proxy, to which the loopback hosts are added."""
    for key in ("no_proxy", "NO_PROXY"):
        named = [host for host in os.environ.get(key, "").split(",") if host.strip()]
        os.environ[key] = ",".join(dict.fromkeys([*named, *LOOPBACK_HOSTS]))


class ServerProcess:
    """One `trm-service serve` subprocess; see the module docstring for an example.

    model_dirs: bundle folders or folders of bundle folders (each becomes a --models-dir).
    port / metrics_port: 0 (default) picks free ports; a fixed port lets a test restart a server
        on the same address.
    extra_args: more `serve` flags, e.g. ["--workers", "2"] or ["--grace-period", "5"].
    default_models: also serve the bundles packaged in trm_service/models.
    env: extra environment variables for the server.
    startup_timeout_s: how long start() waits for the ready file.
    own_process_group: start the server in a process group of its own (`signal_process_group`).
    """

    def __init__(
        self,
        model_dirs: Sequence[Path | str] = (),
        *,
        port: int = 0,
        metrics_port: int = 0,
        extra_args: Sequence[str] = (),
        default_models: bool = False,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        own_process_group: bool = False,
    ) -> None:
        self._model_dirs = [Path(d) for d in model_dirs]
        self._requested_port = port
        self._requested_metrics_port = metrics_port
        self._extra_args = list(extra_args)
        self._default_models = default_models
        self._env = dict(env or {})
        self._startup_timeout_s = startup_timeout_s
        self._own_process_group = own_process_group
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: dict[str, Any] | None = None

    @property
    def command(self) -> list[str]:
        """The command line start() runs (without the ready-file path)."""
        command = [
            sys.executable, "-m", "trm_service", "serve", "--host", "127.0.0.1",
            "--port", str(self._requested_port), "--metrics-port", str(self._requested_metrics_port),
        ]
        for directory in self._model_dirs:
            command += ["--models-dir", str(directory)]
        if not self._default_models:
            command.append("--no-default-models")
        return command + self._extra_args

    def start(self) -> ServerProcess:
        """Start the server and wait until it serves; return self."""
        if self._process is not None:
            raise RuntimeError("this ServerProcess was already started")
        self._scratch = tempfile.TemporaryDirectory(prefix="trm-server-")
        scratch = Path(self._scratch.name)
        ready_file = scratch / "ready.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRM_")}
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **self._env)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [*self.command, "--ready-file", str(ready_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                process_group=0 if self._own_process_group else None,
            )
        deadline = time.monotonic() + self._startup_timeout_s
        while not ready_file.exists():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"trm-service exited with {self._process.returncode} before serving:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"trm-service did not serve within {self._startup_timeout_s}s:\n{self._log_tail()}"
                )
            time.sleep(_POLL_S)
        self._ready = json.loads(ready_file.read_text())
        return self

    @property
    def log_path(self) -> Path:
        """The file receiving the server's stdout and stderr (JSON log lines)."""
        if self._scratch is None:
            raise RuntimeError("the server was not started")
        return Path(self._scratch.name) / "server.log"

    @property
    def port(self) -> int:
        """The gRPC port the server listens on."""
        return int(self._ready_info()["port"])

    @property
    def target(self) -> str:
        """gRPC target, "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_port(self) -> int:
        """The Prometheus HTTP port."""
        return int(self._ready_info()["metrics_port"])

    @property
    def pid(self) -> int:
        """Process id of the server (the supervisor with --workers N), from the moment it starts."""
        if self._process is None:
            raise RuntimeError("the server was not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the process ended, else None."""
        return None if self._process is None else self._process.poll()

    def signal_process_group(self, signum: int) -> None:
        """Send a signal to the server's whole process group, as a terminal's Ctrl-C or systemd's stop does (only
        a server started with own_process_group, lest it reach the caller's group too)."""
        if self._process is None or not self._own_process_group:
            raise RuntimeError("the server was not started in a process group of its own")
        os.killpg(self._process.pid, signum)

    def send_signal(self, signum: int) -> None:
        """Send a signal (SIGHUP reloads models, SIGTERM drains) without waiting."""
        if self._process is None:
            raise RuntimeError("the server was not started")
        self._process.send_signal(signum)

    def wait(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to end; return its exit status (raises subprocess.TimeoutExpired)."""
        if self._process is None:
            raise RuntimeError("the server was not started")
        return self._process.wait(timeout=timeout_s)

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send `signum` and wait for the exit status; kill and raise TimeoutError if it hangs.

        Safe to call more than once, and on a server that already exited.
        """
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signum)
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(f"trm-service ignored signal {signum} for {timeout_s}s") from None
        return self._process.returncode

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def logs(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The server's JSON log lines, parsed (other lines are skipped)."""
        records = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return records

    def metrics_text(self) -> str:
        """The Prometheus exposition text from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def sample_value(self, name: str, **labels: str) -> float:
        """Sum of the /metrics samples called `name` whose labels include `labels` (0.0 if none)."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def __enter__(self) -> ServerProcess:
        return self if self._process is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _ready_info(self) -> dict[str, Any]:
        if self._ready is None:
            raise RuntimeError("the server was not started")
        return self._ready

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])
