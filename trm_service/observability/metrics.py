"""Prometheus metrics of the service, and the HTTP endpoint that exposes them.

With `--workers N` every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and the
supervisor serves their sum (gauges over live workers: summed, except trm_model_info and trm_bundles_refused,
their max).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, start_http_server
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector

from trm_service.config import ConfigError

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Whole numbers, bucketed between them: Prometheus interpolates a quantile linearly inside its bucket from the
# bucket below's bound (0 below the first), so bounds at whole numbers put the median of steps that are all 1 at
# 0.5; with bounds at halves it is 1.0. Steps get a bucket each up to 8 (Sudoku's N_sup), then wider ones up to a
# sequence answer's most (N_sup 4 x 128 characters for code-dictation).
_STEP_BUCKETS = (0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 12.5, 16.5, 24.5, 32.5, 64.5, 128.5, 256.5, 512.5)
_BATCH_BUCKETS = (0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 256.5)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN_METHOD = "unknown_method"
"""`trm_grpc_refused_total` reason: no service or method of that name (UNIMPLEMENTED)."""
REQUEST_NOT_RECEIVED = "request_not_received"
"""`trm_grpc_refused_total` reason: gRPC ended the call before its request message reached the service."""
RESPONSE_TOO_LARGE = "response_too_large"
"""`trm_grpc_refused_total` reason: gRPC refused to send an answer over the server's send limit."""
BATCH_REQUEST_METHOD = "ReasonBatch.request"
"""The `method` of one request of a ReasonBatch call in metrics and logs (the call itself is "ReasonBatch")."""
MODEL_METHODS = ("Reason", "ReasonStream", "ReasonBatch", BATCH_REQUEST_METHOD, "GetModel")
"""The methods whose calls are counted under a model's name (ListModels' under none)."""
ANSWERED_CODES = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED",
                  "UNAVAILABLE", "INTERNAL")
"""Every gRPC status the service itself answers a call of a hosted model with."""


class ServiceMetrics:
    """Every metric the server records, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "trm_requests", "RPCs handled, by model, method and gRPC status code",
            ["model", "method", "code"], registry=registry,
        )
        self.latency = Histogram(
            "trm_request_latency_seconds", "RPC latency from arrival to the last message (calls refused at once, "
            "INVALID_ARGUMENT, NOT_FOUND and RESOURCE_EXHAUSTED, are counted in trm_requests_total only)",
            ["model", "method"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.queue_wait = Histogram(
            "trm_queue_wait_seconds", "Time a request waited before joining its model's step batch",
            ["model"], buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.steps = Histogram(
            "trm_steps_used", "Supervision steps a request ran", ["model"], buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self.halt_reasons = Counter(
            "trm_halt_reasons", "Why requests stopped", ["model", "reason"], registry=registry,
        )
        self.flagged = Counter(
            "trm_flagged_answers", "Answers that flag themselves, by flag: out_of_scope (a classification), unverified "
            "(a grid that fails its rule check), unsure (a written text below its model's threshold or failing its "
            "checks)",
            ["model", "flag"], registry=registry,
        )
        self.batch_size = Histogram(
            "trm_batch_size", "Requests in one supervision-step batch", ["model"], buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.parked = Counter(
            "trm_requests_parked", "Requests taken out of a full batch, their state kept, so that a call that would "
            "wait too long could start (they resume when a slot frees)", ["model"], registry=registry,
        )
        self.steps_on_loop = Counter(
            "trm_steps_on_event_loop", "Supervision steps run on the event loop thread instead of the model's "
            "thread (the idle fast path: the first step of a call that found the server idle)", ["model"],
            registry=registry,
        )
        self.step_latency = Histogram(
            "trm_step_seconds", "Duration of one batched supervision step", ["model"],
            buckets=_LATENCY_BUCKETS, registry=registry,
        )
        self.inflight = Gauge(
            "trm_inflight_requests", "Requests in a model's step batch", ["model", "version"],
            multiprocess_mode="livesum", registry=registry,
        )
        self.queued = Gauge(
            "trm_queued_requests", "Requests waiting for a place in a model's step batch",
            ["model", "version"], multiprocess_mode="livesum", registry=registry,
        )
        self.model_info = Gauge(
            "trm_model_info", "1 for every loaded model version", ["model", "version", "task"],
            multiprocess_mode="livemax", registry=registry,
        )
        self.bundles_refused = Gauge(
            "trm_bundles_refused", "Bundle folders the last model reload refused (each has a bundle_refused log "
            "line with the reason); the models they held before, if any, keep serving",
            multiprocess_mode="livemax", registry=registry,
        )
        self.grpc_refused = Counter(
            "trm_grpc_refused", "Calls gRPC refused itself, by reason (unknown_method, request_not_received, "
            "response_too_large) and method (empty for unknown methods)",
            ["method", "reason"], registry=registry,
        )
        self.grpc_refused.labels("", UNKNOWN_METHOD)  # exported (0) from the start, so rate() has a series
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def start_series_of(self, model: str, flag: str, halt_reasons: Iterable[str]) -> None:
        """Export at 0 every series a hosted model's requests will count in: a series born with its first events
        reads as no increase (rate() and increase() need a sample before them), so the first burst of errors or
        of shedding after a start, a new replica's, showed in no panel and no alert."""
        for method in MODEL_METHODS:
            for code in ANSWERED_CODES:
                self.child(self.requests, model, method, code)
            self.child(self.latency, model, method)
        for reason in halt_reasons:
            self.child(self.halt_reasons, model, reason)
        self.child(self.flagged, model, flag)
        for per_model in (self.queue_wait, self.steps, self.batch_size, self.parked, self.steps_on_loop,
                          self.step_latency):
            self.child(per_model, model)

    def child(self, metric: MetricWrapperBase, *label_values: str) -> Any:
        """`metric.labels(*label_values)`, memoised: labels() validates and takes a lock on every call,
        which the per-request path would otherwise pay several times."""
        key = (id(metric), label_values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*label_values)
        return found


WILDCARD_HOSTS = ("0.0.0.0", "::")
"""Hosts that mean every interface: gRPC then listens on IPv4 and IPv6 alike, and so does /metrics."""


class _DualStackServer(ThreadingWSGIServer):
    """An IPv6 socket that takes IPv4 connections too, whatever the system's `bindv6only`."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per scrape (the service logs JSON only)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve_dual_stack(port: int, registry: CollectorRegistry) -> int:
    """/metrics on every IPv4 and IPv6 interface; OSError(EAFNOSUPPORT) where the kernel has no IPv6."""
    server = make_server("::", port, make_wsgi_app(registry), _DualStackServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return int(server.server_port)


def serve_metrics(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> int:
    """Start the /metrics HTTP server in a daemon thread; return the bound port (ConfigError if it cannot
    listen there). A wildcard host listens on IPv6 as well as IPv4, as gRPC does, unless the kernel has no
    IPv6."""
    try:
        if host in WILDCARD_HOSTS:
            try:
                return _serve_dual_stack(port, registry)
            except OSError as exc:
                if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    raise
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        not_here = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
        change = "--metrics-host (or --host): an address of this machine" if not_here else "--metrics-port"
        message = f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another {change}"
        raise ConfigError(message) from exc
    return int(server.server_port)


def multiprocess_registry(directory: Path) -> CollectorRegistry:
    """A registry that sums the samples every worker wrote under `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry

