"""Assembles one server process: models, gRPC service, health, reflection, TLS, metrics, signals.

Lifecycle: load every bundle, bind, start, mark health SERVING, write the ready file, then wait
for a signal. SIGHUP reloads the model folders and reads the TLS files again (tls.py). SIGTERM/SIGINT drain:
health goes NOT_SERVING (all services), requests keep being accepted for `drain_delay` seconds (load balancers notice),
then the listener closes, health Watch streams end, and in-flight requests get `grace_period` seconds; shortly
before it ends, requests still running are stopped with their best answer so far (HALT_REASON_SHUTDOWN).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import structlog
import uvloop

from trm_service.api.call_acceptors import CallAcceptors
from trm_service.api.health import HEALTH_SERVICE_NAME, ModelHealth
from trm_service.api.reflection import enable_reflection
from trm_service.api.servicer import SERVICE_NAME, ReasoningServicer, ServingLimits, reasoning_methods
from trm_service.config import INT32_MAX, ConfigError, ServeConfig
from trm_service.cpu_affinity import compute_cpu_count, free_thread, pin_event_loop, yielding_threads
from trm_service.observability.grpc_refusals import RefusedCallCounter
from trm_service.observability.metrics import ServiceMetrics, serve_metrics
from trm_service.registry import ModelRegistry, SchedulerLimits
from trm_service.runtime.loader import LoadOptions
from trm_service.runtime.session import SessionSettings
from trm_service.tls import ServerCertificates

_log = structlog.get_logger("trm_service.server")
HANDSHAKE_TIMEOUT_S = 10
"""A connection that has not finished its HTTP/2 (and TLS) handshake by then is closed: idle sockets that never
sent gRPC's preface held a file descriptor each, and 20,000 of them left new clients and /metrics unanswered."""
FILES_KEPT_FREE = 128
GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default is 700). A request allocates
a few hundred short-lived objects that reference counting frees anyway; collecting every 700 made
the collector a measurable share of the event loop's time (docs/ARCHITECTURE.md)."""


def shutdown_margin(grace_period: float) -> float:
    """Time kept at the end of the grace period to send the anytime answers of stopped requests."""
    return min(1.0, grace_period / 10.0)


def build_grpc_server(
    config: ServeConfig, servicer: ReasoningServicer, model_health: ModelHealth, metrics: ServiceMetrics
) -> tuple[grpc.aio.Server, CallAcceptors]:
    """The grpc.aio server with the API, health and reflection (v1 and v1alpha), counting the calls gRPC
    refuses in `metrics`, and the extra acceptors of Reason and ReasonStream calls (registered and started by
    the caller, around the server's start); not yet bound. The process's first grpc.aio server starts gRPC's
    threads, which then yield to the event loop while it is pinned to their CPU (cpu_affinity.py)."""
    methods = RefusedCallCounter(metrics, max_send_bytes=config.max_message_bytes)
    methods.add_registered_method_handlers(SERVICE_NAME, reasoning_methods(servicer))
    methods.add_registered_method_handlers(HEALTH_SERVICE_NAME, model_health.methods())
    enable_reflection(methods, (SERVICE_NAME, HEALTH_SERVICE_NAME))
    with yielding_threads():
        server = grpc.aio.server(handlers=(methods,), options=transport_options(config))
    acceptors = CallAcceptors(server, methods, (f"/{SERVICE_NAME}/Reason", f"/{SERVICE_NAME}/ReasonStream"),
                              config.call_acceptors)
    return server, acceptors


def transport_options(config: ServeConfig) -> list[tuple[str, int]]:
    """gRPC's options for the server's limits: message size, connections, calls waiting to be taken, the time a
    new connection has to finish its handshake (HANDSHAKE_TIMEOUT_S), a connection's age, and the keepalive pings
    clients may send (trm_client pings every 10 s to find a hung replica; gRPC's default allows one in 5
    minutes and closes the connection of a client that pings more often)."""
    # No grace limit after the age's GOAWAY (gRPC's default: none): the calls on the connection finish however long
    # they take (with --grace-period as the limit, a ReasonBatch longer than it was cut off, and retried, every time)
    age = [("grpc.max_connection_age_ms", round(config.max_connection_age * 1000))] if config.max_connection_age else []
    return [
        *age,
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_allowed_incoming_connections", config.max_connections or default_max_connections()),
        ("grpc.server.max_pending_requests", config.max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", config.max_pending_calls),  # no random early refusals
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_S * 1000),
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]


def default_max_connections() -> int:
    """The process's open-file limit less FILES_KEPT_FREE (descriptors for the metrics port, bundles, logs)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return INT32_MAX
    return max(1, min(soft - FILES_KEPT_FREE, INT32_MAX))


def place_threads(config: ServeConfig) -> None:
    """Before any other thread starts: the event loop (and the gRPC threads it will start) on one CPU, and
    the loop's default executor (bundle loading, ONNX Runtime's own threads) on every CPU (cpu_affinity.py)."""
    cpu = pin_event_loop(config.worker_index) if config.pin_event_loop else None
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(initializer=free_thread))
    _log.info("event_loop_cpu", cpu=cpu)


def tune_garbage_collector() -> None:
    """Exempt everything loaded at start-up from future collections, and collect the young
    generation less often (see GC_YOUNG_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def load_options(config: ServeConfig) -> LoadOptions:
    """How the server loads bundles: `--intra-op-threads` for every session, or with 0 one thread and, for a
    heavy step, every CPU the process may use within its CPU quota (runtime/loader.py)."""
    return LoadOptions(SessionSettings(intra_op_threads=config.intra_op_threads or 1), int8=not config.fp32,
                       heavy_step_threads=config.intra_op_threads or compute_cpu_count())  # fmt: skip


def serve_process(config: ServeConfig) -> int:
    """Run one server process to its end: 0, or `cannot_start`'s status."""
    try:
        uvloop.run(run_server(config))  # uvloop: measured faster than asyncio's loop (docs/ARCHITECTURE.md)
    except ConfigError as exc:
        return cannot_start(exc)
    return 0


def cannot_start(error: ConfigError) -> int:
    """Log why the server could not start (a port in use, a TLS file that is no PEM, ...); the exit status, 2."""
    _log.error("cannot_start", error=str(error))
    return 2


async def _loaded_unless_stopped(registry: ModelRegistry, stop: asyncio.Event) -> bool:
    """Load the models; False when `stop` (SIGTERM or SIGINT) came first."""
    loading, stopping = asyncio.ensure_future(registry.reload()), asyncio.ensure_future(stop.wait())
    await asyncio.wait((loading, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if stop.is_set():
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        return False
    loading.result()  # its error, if it failed
    return True


async def run_server(config: ServeConfig) -> None:
    """Serve until SIGTERM or SIGINT, then drain (see the module docstring)."""
    certificates = ServerCertificates.of(config)  # before loading: a bad TLS file is told at once
    loop = asyncio.get_running_loop()
    hangup_while_starting = asyncio.Event()  # a SIGHUP must not end a process still loading: reload once serving
    loop.add_signal_handler(signal.SIGHUP, hangup_while_starting.set)
    place_threads(config)
    metrics = ServiceMetrics()
    registry = ModelRegistry(
        config.model_directories(),
        load_options(config),
        SchedulerLimits(
            max_batch=config.max_batch_size, max_queue=config.max_queue, max_rows_per_run=config.max_rows_per_run,
            load_wait_s=config.load_wait_ms / 1000.0 if config.load_wait_ms else None,
        ),
        metrics,
    )
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_stop(cut_short: bool) -> None:
        """The first SIGTERM or SIGINT drains (or, while loading, ends the process); a second cuts the drain short:
        every request in flight gets its answer so far at once. A worker of --workers (reuse_port) takes a repeated
        SIGTERM/SIGINT as the same drain (systemd's stop signals every process of the cgroup, and the supervisor
        forwards its own), and is cut short by the supervisor's SIGUSR1."""
        if cut_short and not hurry.is_set():
            hurry.set()
            registry.shutdown_by(time.monotonic())
            _log.info("drain_cut_short")
        stop.set()

    def on_stop_signal() -> None:
        on_stop(cut_short=stop.is_set() and not config.reuse_port)

    # Set before loading, kept to the end: a process that is PID 1 (a container without an init) ignores a signal it
    # has no handler for, and a handler swapped once loading ended lost a signal that came in between (1 start in
    # about 150, docs/EXPERIMENTS.md).
    loop.add_signal_handler(signal.SIGTERM, on_stop_signal)
    loop.add_signal_handler(signal.SIGINT, on_stop_signal)
    if config.reuse_port:
        loop.add_signal_handler(signal.SIGUSR1, on_stop, True)
    _log.info("loading", models_dirs=[str(folder) for folder in config.model_directories()])
    if not await _loaded_unless_stopped(registry, stop):
        _log.info("stopped_while_loading")
        return
    limits = ServingLimits(
        max_time_budget_ms=config.max_time_budget_ms,
        deadline_margin_s=config.deadline_margin_ms / 1000.0,
        log_inputs=config.log_inputs,
        max_batch_requests=config.max_batch_requests,
    )
    model_health = ModelHealth()
    server, acceptors = build_grpc_server(config, ReasoningServicer(registry, limits, metrics), model_health, metrics)
    port = _bind(server, config, certificates.credentials() if certificates is not None else None)
    metrics_port = None if config.metrics_port is None else serve_metrics(config.metrics_address, config.metrics_port)
    accepting = acceptors.register()
    await server.start()
    if accepting:
        acceptors.start()
    await model_health.sync(registry.names())
    tune_garbage_collector()

    hangup = asyncio.Event()

    async def reload_on_hangup() -> None:
        """One reload at a time, until the stop; the SIGHUPs that arrive during one make one more, not one each
        (a SIGHUP every 50 ms had queued a reload each, still running 14 s later and after a SIGTERM)."""
        while True:
            await hangup.wait()
            if stop.is_set():
                return
            hangup.clear()
            try:
                await registry.reload()
            except Exception:  # what serves keeps serving; the next SIGHUP tries again
                _log.exception("reload_failed")
            await model_health.sync(registry.names())
            if certificates is not None:
                certificates.reread()

    reloader = loop.create_task(reload_on_hangup())
    loop.add_signal_handler(signal.SIGHUP, hangup.set)
    if hangup_while_starting.is_set():
        hangup.set()
    _log.info("serving", host=config.host, port=port, metrics_port=metrics_port, call_acceptor_tasks=acceptors.running,
              tls=config.tls_cert is not None, mutual_tls=config.tls_client_ca is not None)
    if config.ready_file is not None:
        write_ready_file(config.ready_file, port=port, metrics_port=metrics_port)
    try:
        await stop.wait()
        _log.info("draining", grace_period_s=config.grace_period, drain_delay_s=config.drain_delay)
        await model_health.drain()
        with contextlib.suppress(asyncio.TimeoutError):  # the delay, unless a second signal ends it
            await asyncio.wait_for(hurry.wait(), config.drain_delay)
        if not hurry.is_set():
            registry.shutdown_by(time.monotonic() + config.grace_period - shutdown_margin(config.grace_period))
        model_health.stop_watching()  # in the turn of the loop that stops taking calls: no Watch starts after it
        await server.stop(config.grace_period)
        hangup.set()  # the reloader ends, after the reload it may be running
        await reloader
        await registry.close()
        _log.info("stopped")
    finally:
        if config.ready_file is not None:
            config.ready_file.unlink(missing_ok=True)


def _bind(server: grpc.aio.Server, config: ServeConfig, credentials: grpc.ServerCredentials | None) -> int:
    host = f"[{config.host}]" if ":" in config.host and not config.host.startswith("[") else config.host
    address = f"{host}:{config.port}"
    try:
        if credentials is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: the port is in use or the host is not local") from exc


def write_ready_file(path: Path, *, port: int, metrics_port: int | None) -> None:
    """Atomically write {"port", "metrics_port", "pid"} so tools can find ephemeral ports."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"port": port, "metrics_port": metrics_port, "pid": os.getpid()}))
    os.replace(temporary, path)
