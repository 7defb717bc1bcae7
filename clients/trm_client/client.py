"""The blocking client for trm.v1.ReasoningService."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_client.batch import build_batch_request, read_batch_response
from trm_client.channel import TLSConfig, open_channel, resolve_target
from trm_client.errors import CLOSED_DURING_CALL, ClientClosed, TRMError, error_for, from_rpc_error
from trm_client.metadata import call_metadata, checked_metadata, chosen_request_id
from trm_client.model_info import Budget, ModelInfo
from trm_client.reason_request import GridInput, build_model_request, build_reason_request
from trm_client.results import ReasonResult, ReasonStep
from trm_client.retry import Deadline, RetryPolicy, default_timeout, plan_retry

Response = TypeVar("Response")


class TRMClient:
    """Blocking client: one channel, round robin over every replica the target names.

    Every call has a deadline (``timeout_s``, per call or the client's default), sends an
    ``x-request-id`` and raises a typed TRMError on failure. UNAVAILABLE is retried with backoff
    per ``retry``; a stream is retried only before its first step arrives.

    Args:
        target: ``host:port``, a ``dns:///`` URI, or several ``ip:port`` replicas (list or comma-separated);
            None reads $TRM_TARGET.
        tls: server-authenticated or mutual TLS; None for plaintext.
        timeout_s: the default deadline of each call, retries included.
        retry: which failures to retry and how long to wait between attempts.
        metadata: extra metadata sent with every call (e.g. an authorization header).
        channel_options: extra gRPC channel options.
    """

    def __init__(
        self,
        target: str | Sequence[str] | None = None,
        *,
        tls: TLSConfig | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, int | str]] = (),
    ) -> None:
        self.target = resolve_target(target)
        self.timeout_s = default_timeout(timeout_s)
        self.retry = retry or RetryPolicy()
        self._metadata = checked_metadata(metadata)
        self._tls, self._channel_options = tls, channel_options
        self._channel = open_channel(self.target, tls, channel_options)
        self._closed = threading.Event()  # set by close() (gRPC's channel does not say); ends a wait to retry
        self._stub_of_channel = trm_pb2_grpc.ReasoningServiceStub(self._channel)
        self._process = os.getpid()  # the process whose channel it is

    def models(self, *, timeout_s: float | None = None, request_id: str | None = None) -> list[ModelInfo]:
        """Every hosted model (ListModels)."""
        response, _ = self._unary(self._stub.ListModels, trm_pb2.ListModelsRequest(), timeout_s, request_id)
        return [ModelInfo.from_proto(m) for m in response.models]

    def model(
        self, name: str, version: str = "", *, timeout_s: float | None = None, request_id: str | None = None
    ) -> ModelInfo:
        """One model's description (GetModel); raises NotFound when it is not hosted."""
        request = build_model_request(name, version)
        response, _ = self._unary(self._stub.GetModel, request, timeout_s, request_id)
        return ModelInfo.from_proto(response)

    def reason(
        self,
        model: str,
        text: str | None = None,
        *,
        grid: GridInput | None = None,
        version: str = "",
        budget: Budget | None = None,
        top_k: int = 0,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> ReasonResult:
        """Runs the model on ``text`` or ``grid`` to its end and returns the final answer."""
        request = build_reason_request(model, text, grid, version=version, budget=budget, top_k=top_k)
        started = time.perf_counter()
        response, rid = self._unary(self._stub.Reason, request, timeout_s, request_id)
        return ReasonResult.from_proto(response, (time.perf_counter() - started) * 1000.0, rid)

    def reason_batch(
        self,
        model: str,
        texts: Sequence[str] | None = None,
        *,
        grids: Sequence[GridInput] | None = None,
        version: str = "",
        budget: Budget | None = None,
        top_k: int = 0,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> list[ReasonResult | TRMError]:
        """Runs the model on every text (or grid) in one ReasonBatch call, each as if sent alone; returns, in
        order, each one's ReasonResult or the TRMError it got (the call itself raises only for call-wide
        failures, e.g. more inputs than the server's --max-batch-requests)."""
        request = build_batch_request(model, texts, grids, version=version, budget=budget, top_k=top_k)
        started = time.perf_counter()
        response, rid = self._unary(self._stub.ReasonBatch, request, timeout_s, request_id)
        return read_batch_response(response, (time.perf_counter() - started) * 1000.0, rid)

    def reason_stream(
        self,
        model: str,
        text: str | None = None,
        *,
        grid: GridInput | None = None,
        version: str = "",
        budget: Budget | None = None,
        top_k: int = 0,
        timeout_s: float | None = None,
        request_id: str | None = None,
    ) -> Iterator[ReasonStep]:
        """Yields the answer after each supervision step as the server produces it; the last has ``final``."""
        request = build_reason_request(model, text, grid, version=version, budget=budget, top_k=top_k)
        self._check_open()
        return self._stream(request, timeout_s, chosen_request_id(request_id))

    def close(self) -> None:
        """Closes the channel; a later call raises ClientClosed."""
        self._closed.set()
        self._channel.close()

    def __enter__(self) -> TRMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _stub(self) -> trm_pb2_grpc.ReasoningServiceStub:
        """The stub of this process's channel. A client used across ``os.fork()`` opens a channel of its own in the
        child at its first call there: the parent's channel, with a call in flight at the fork, can block the
        child's calls past their deadlines. The child leaves the parent's channel alone."""
        if self._process != os.getpid():
            self._channel = open_channel(self.target, self._tls, self._channel_options)
            self._stub_of_channel = trm_pb2_grpc.ReasoningServiceStub(self._channel)
            self._process = os.getpid()
        return self._stub_of_channel

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ClientClosed("TRMClient")

    def _unary(
        self,
        rpc: Callable[..., Response],
        request: object,
        timeout_s: float | None,
        request_id: str | None,
    ) -> tuple[Response, str]:
        self._check_open()
        rid = chosen_request_id(request_id)
        metadata = call_metadata(self._metadata, rid)
        deadline = Deadline(self.timeout_s if timeout_s is None else timeout_s)
        attempt = 1
        while True:
            try:
                return rpc(request, timeout=deadline.attempt_timeout(rid), metadata=metadata), rid
            except grpc.RpcError as error:
                self._raise_if_closed_during_call(rid)
                self._closed.wait(plan_retry(self.retry, error, attempt, deadline, rid))
                self._raise_if_closed_during_call(rid)  # close() came during the wait
                attempt += 1

    def _stream(
        self, request: trm_pb2.ReasonRequest, timeout_s: float | None, rid: str
    ) -> Iterator[ReasonStep]:
        self._check_open()  # a stream made before close() and read after it
        metadata = call_metadata(self._metadata, rid)
        deadline = Deadline(self.timeout_s if timeout_s is None else timeout_s)
        attempt = 1
        while True:
            call = self._stub.ReasonStream(request, timeout=deadline.attempt_timeout(rid), metadata=metadata)
            try:
                first = next(call, None)
                break
            except grpc.RpcError as error:
                self._raise_if_closed_during_call(rid)
                self._closed.wait(plan_retry(self.retry, error, attempt, deadline, rid))
                self._raise_if_closed_during_call(rid)  # close() came during the wait
                attempt += 1
        try:
            if first is None:
                return
            yield ReasonStep.from_proto(first, rid)
            for message in call:
                yield ReasonStep.from_proto(message, rid)
        except grpc.RpcError as error:
            self._raise_if_closed_during_call(rid)
            raise from_rpc_error(error, rid) from error
        finally:
            call.cancel()

    def _raise_if_closed_during_call(self, rid: str) -> None:
        """CANCELLED in the client's words for a call that close() ended (gRPC says "Channel closed!")."""
        if self._closed.is_set():
            raise error_for(grpc.StatusCode.CANCELLED, CLOSED_DURING_CALL, rid) from None
