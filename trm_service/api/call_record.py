"""Accounting of one RPC: request id, timing, and at the end one log line plus its metrics, written just after
the answer is sent."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import grpc
import structlog

from trm_service.api.halt_reasons import halt_reason_name
from trm_service.observability.metrics import ServiceMetrics
from trm_service.scheduler.halting import HaltReason

_log = structlog.get_logger("trm_service.requests")
_ID_PREFIX = os.urandom(12).hex()  # per process (ids unique across --workers N); 32 hex digits in all
_ID_COUNTER = itertools.count()
_UNTIMED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED})
"""Codes of calls refused at once, before any step: timing them would pull the latency quantiles of the calls that
were answered down to a fraction of a millisecond (they are counted in trm_requests_total)."""


def new_request_id() -> str:
    """A request id unique within this process and, by its random prefix, across processes."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


class CallRecord:
    """Collects what one RPC did; `finish()` writes the request log line and the request metrics once."""

    def __init__(
        self, method: str, metrics: ServiceMetrics, *, log_inputs: bool, request_id: str | None = None
    ) -> None:
        self.method = method
        self.request_id = request_id or new_request_id()
        self.started = time.monotonic()
        self.model = ""
        self.version = ""
        self.steps = 0
        self.halt_reason: HaltReason | None = None
        self.flag: str | None = None  # what the answer says of itself (api/halt_reasons.answer_flag)
        self.queue_wait_s: float | None = None
        self.input: str | None = None
        self._metrics = metrics
        self._log_inputs = log_inputs
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether `finish` has been called."""
        return self._finished

    def elapsed_ms(self) -> float:
        """Milliseconds since the RPC arrived."""
        return (time.monotonic() - self.started) * 1000.0

    def finish(self, code: grpc.StatusCode, message: str = "") -> None:
        """Emit the log line and metrics for this RPC (only the first call counts) on the event loop's next
        turn: the answer is sent first, and at one caller the record costs no latency. The latency is
        taken now."""
        if self._finished:
            return
        self._finished = True
        asyncio.get_running_loop().call_soon(self._emit, code, message, time.monotonic() - self.started)

    def _emit(self, code: grpc.StatusCode, message: str, latency_s: float) -> None:
        metrics = self._metrics
        metrics.child(metrics.requests, self.model, self.method, code.name).inc()
        if code not in _UNTIMED:
            metrics.child(metrics.latency, self.model, self.method).observe(latency_s)
        fields: dict[str, object] = {
            "request_id": self.request_id,
            "method": self.method,
            "model": self.model,
            "version": self.version,
            "status": code.name,
            "latency_ms": round(latency_s * 1000.0, 3),
        }
        answered = code == grpc.StatusCode.OK  # an answer ready after the deadline or a cancel was not received
        if self.halt_reason is not None:
            reason = halt_reason_name(self.halt_reason)
            if answered:
                metrics.child(metrics.steps, self.model).observe(self.steps)
                metrics.child(metrics.halt_reasons, self.model, reason).inc()
            fields.update(steps=self.steps, halt_reason=reason)
        elif self.steps:  # a stream ended (cancelled, past its deadline) after reaching this step
            fields["steps"] = self.steps
        if self.flag is not None:
            if answered:
                metrics.child(metrics.flagged, self.model, self.flag).inc()
            fields["flag"] = self.flag
        if self.queue_wait_s is not None:
            fields["queue_ms"] = round(self.queue_wait_s * 1000.0, 3)
        if message:
            fields["error"] = message
        if self._log_inputs and self.input is not None:
            fields["input"] = self.input
        _log.info("request", **fields)
