"""Server configuration: one frozen value built from flags and TRM_* environment variables (see cli.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from trm_bundle.manifest import UINT32_MAX

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "models"
INT32_MAX = (1 << 31) - 1  # gRPC's limits (message size, connections, pending calls) are 32-bit signed integers
MAX_WORKERS = 64
MAX_INTRA_OP_THREADS = 256


class ConfigError(ValueError):
    """A configuration the server cannot start with; the message says which setting to fix."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything `trm-service serve` can be told."""

    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = 9090
    """None: no metrics HTTP server in this process (workers of `--workers N`)."""
    metrics_host: str | None = None
    """The /metrics address where it is not `host` (plaintext HTTP: e.g. loopback only beside a TLS port)."""
    models_dirs: tuple[Path, ...] = ()
    default_models: bool = True
    max_batch_size: int = 64
    max_queue: int = 256
    max_rows_per_run: int = 8
    max_batch_requests: int = 256
    """Most requests in one ReasonBatch call."""
    call_acceptors: int = 8
    """Reason and ReasonStream calls gRPC may hand over at once, each beyond grpc.aio's own one
    (api/call_acceptors.py); 0: its own only."""
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    grace_period: float = 30.0
    drain_delay: float = 0.0
    ready_file: Path | None = None
    log_inputs: bool = False
    fp32: bool = False  # run model.onnx even where a bundle ships model.int8.onnx
    intra_op_threads: int = 0
    """ONNX Runtime's threads per model session; 0: one, or every CPU (within the cgroup's CPU quota) for a
    model with a heavy step where that makes it faster (runtime/loader.py)."""
    max_message_bytes: int = 1 << 20
    max_connections: int = 0
    """Open connections (TCP) at once; 0: the process's open-file limit less FILES_KEPT_FREE."""
    max_pending_calls: int = 10_000
    """Calls gRPC holds for the server before it takes them (beyond, gRPC cancels a call: CANCELLED)."""
    max_connection_age: float = 300.0
    """Seconds a client connection lasts before the server asks the client to open a new one (GOAWAY; the calls on
    it finish), so that clients of a scaled-up deployment reach its new replicas; 0: no limit."""
    max_time_budget_ms: int = 60_000
    deadline_margin_ms: int = 20
    load_wait_ms: int = 200
    """Load-adaptive compute: lower the step cap while queued requests would wait longer; 0: off."""
    log_level: str = "info"
    reuse_port: bool = False
    """Bind with SO_REUSEPORT (set for the workers of `--workers N`, which share one port)."""
    pin_event_loop: bool = True
    """Keep the event loop and gRPC's threads on one CPU, gRPC's yielding to the loop, compute threads on all
    (cpu_affinity.py)."""
    worker_index: int = 0
    """This process's index among the workers of `--workers N` (0 alone): its event loop's CPU."""

    @property
    def metrics_address(self) -> str:
        """The address /metrics listens on: --metrics-host, else --host."""
        return self.metrics_host if self.metrics_host is not None else self.host

    def model_directories(self) -> list[Path]:
        """The packaged default bundles (unless disabled), then every --models-dir."""
        return [*([DEFAULT_MODELS_DIR] if self.default_models else []), *self.models_dirs]

    def check(self) -> None:
        """Raise ConfigError for values the server cannot run with."""
        if not self.host.strip():
            raise ConfigError("--host must name an address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 "
                              f"or :: for every interface, got {self.host!r}")
        if self.metrics_host is not None and not self.metrics_host.strip():
            raise ConfigError(f"--metrics-host must name an address to listen on, got {self.metrics_host!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, got {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port must be 0..65535, got {self.metrics_port}")
        for flag, value, low, high in (
            ("--max-batch-size", self.max_batch_size, 1, None),
            ("--max-queue", self.max_queue, 0, None),
            ("--max-rows-per-run", self.max_rows_per_run, 1, None),
            ("--max-batch-requests", self.max_batch_requests, 1, None),
            ("--call-acceptors", self.call_acceptors, 0, None),
            ("--workers", self.workers, 1, MAX_WORKERS),
            ("--intra-op-threads", self.intra_op_threads, 0, MAX_INTRA_OP_THREADS),
            ("--max-message-bytes", self.max_message_bytes, 1024, INT32_MAX),
            ("--max-connections", self.max_connections, 0, INT32_MAX),
            ("--max-pending-calls", self.max_pending_calls, 1, INT32_MAX),
            ("--max-time-budget-ms", self.max_time_budget_ms, 1, UINT32_MAX),  # ModelInfo carries it
            ("--deadline-margin-ms", self.deadline_margin_ms, 0, None),
            ("--load-wait-ms", self.load_wait_ms, 0, None),
        ):
            if value < low:
                raise ConfigError(f"{flag} must be at least {low}, got {value}")
            if high is not None and value > high:
                raise ConfigError(f"{flag} must be at most {high}, got {value}")
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"--log-level must be debug, info, warning or error, got {self.log_level!r}")
        for flag, seconds in (("--grace-period", self.grace_period), ("--drain-delay", self.drain_delay),
                              ("--max-connection-age", self.max_connection_age)):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ConfigError(f"{flag} must be a number of seconds, not negative, got {seconds}")
        if self.max_connection_age * 1000 > INT32_MAX or 0 < self.max_connection_age < 1:
            raise ConfigError(f"--max-connection-age must be 0 (no limit) or 1 to {INT32_MAX // 1000} seconds, got "
                              f"{self.max_connection_age}")  # QA: 0.0001 s, 0 ms to gRPC, aborted a client
        for directory in self.models_dirs:
            if not directory.is_dir():
                raise ConfigError(f"--models-dir {directory}: no such folder")
        if self.ready_file is not None and not self.ready_file.parent.is_dir():
            raise ConfigError(f"--ready-file {self.ready_file}: its folder does not exist")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key),
                           ("--tls-client-ca", self.tls_client_ca)):
            if path is not None and not path.is_file():
                raise ConfigError(f"{flag} {path}: {'a folder, not a PEM file' if path.is_dir() else 'no such file'}")
