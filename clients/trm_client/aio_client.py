"""The asyncio client for trm.v1.ReasoningService."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_client.batch import build_batch_request, read_batch_response
from trm_client.channel import TLSConfig, open_aio_channel, resolve_target
from trm_client.errors import CLOSED_DURING_CALL, ClientClosed, TRMError, error_for, from_rpc_error
from trm_client.metadata import call_metadata, checked_metadata, chosen_request_id
from trm_client.model_info import Budget, ModelInfo
from trm_client.reason_request import GridInput, build_model_request, build_reason_request
from trm_client.results import ReasonResult, ReasonStep
from trm_client.retry import Deadline, RetryPolicy, default_timeout, plan_retry

Response = TypeVar("Response")


async def _cancelled_with_caller(awaitable: Awaitable[Response], call: grpc.aio.Call) -> Response:
    """`awaitable` (a grpc.aio `call`, or a read of one) awaited so that a cancellation of the calling task
    propagates as itself, its message intact, and cancels the call. Awaited directly, grpc.aio replaces it with a
    bare CancelledError, which anyio's cancel scopes (and so the MCP SDK's) do not take for theirs: a timeout scope
    around a call, or an MCP host's cancelling of a tool call, then ended the program instead of the call."""
    try:
        return await asyncio.shield(awaitable)
    except asyncio.CancelledError:
        call.cancel()
        raise


class AsyncTRMClient:
    """asyncio client with the same behaviour and arguments as TRMClient; create it inside the event loop.

    Use ``async with AsyncTRMClient(...) as client:`` or call ``await client.close()``.
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
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("create an AsyncTRMClient inside a coroutine, where its event loop runs (its gRPC "
                               "channel belongs to that loop): `async with AsyncTRMClient(...) as client:`") from None
        self.target = resolve_target(target)
        self.timeout_s = default_timeout(timeout_s)
        self.retry = retry or RetryPolicy()
        self._metadata = checked_metadata(metadata)
        self._channel = open_aio_channel(self.target, tls, channel_options)
        self._closed = asyncio.Event()  # set by close() (gRPC's channel does not say); ends a wait to retry
        self._stub = trm_pb2_grpc.ReasoningServiceStub(self._channel)

    async def models(
        self, *, timeout_s: float | None = None, request_id: str | None = None
    ) -> list[ModelInfo]:
        """Every hosted model (ListModels)."""
        response, _ = await self._unary(
            self._stub.ListModels, trm_pb2.ListModelsRequest(), timeout_s, request_id
        )
        return [ModelInfo.from_proto(m) for m in response.models]

    async def model(
        self, name: str, version: str = "", *, timeout_s: float | None = None, request_id: str | None = None
    ) -> ModelInfo:
        """One model's description (GetModel); raises NotFound when it is not hosted."""
        request = build_model_request(name, version)
        response, _ = await self._unary(self._stub.GetModel, request, timeout_s, request_id)
        return ModelInfo.from_proto(response)

    async def reason(
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
        response, rid = await self._unary(self._stub.Reason, request, timeout_s, request_id)
        return ReasonResult.from_proto(response, (time.perf_counter() - started) * 1000.0, rid)

    async def reason_batch(
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
        response, rid = await self._unary(self._stub.ReasonBatch, request, timeout_s, request_id)
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
    ) -> AsyncIterator[ReasonStep]:
        """Yields the answer after each supervision step as it arrives; the last has ``final``."""
        request = build_reason_request(model, text, grid, version=version, budget=budget, top_k=top_k)
        self._check_open()
        return self._stream(request, timeout_s, chosen_request_id(request_id))

    async def close(self) -> None:
        """Closes the channel; a later call raises ClientClosed."""
        self._closed.set()
        await self._channel.close()

    async def __aenter__(self) -> AsyncTRMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise ClientClosed("AsyncTRMClient")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("this AsyncTRMClient was made in another event loop (another asyncio.run), to which "
                               "its gRPC channel belongs: make one in each loop")

    async def _unary(
        self,
        rpc: Callable[..., Awaitable[Response]],
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
                call = rpc(request, timeout=deadline.attempt_timeout(rid), metadata=metadata)
                return await _cancelled_with_caller(call, call), rid
            except grpc.RpcError as error:
                await self._wait_to_retry(plan_retry(self.retry, error, attempt, deadline, rid))
                self._raise_if_closed_during_call(rid)  # close() came during the wait
                attempt += 1
            except asyncio.CancelledError:
                self._raise_if_closed_during_call(rid)
                raise

    async def _stream(
        self, request: trm_pb2.ReasonRequest, timeout_s: float | None, rid: str
    ) -> AsyncIterator[ReasonStep]:
        self._check_open()  # a stream made before close() and read after it
        metadata = call_metadata(self._metadata, rid)
        deadline = Deadline(self.timeout_s if timeout_s is None else timeout_s)
        attempt = 1
        while True:
            call = self._stub.ReasonStream(request, timeout=deadline.attempt_timeout(rid), metadata=metadata)
            try:
                message = await _cancelled_with_caller(call.read(), call)
                break
            except grpc.RpcError as error:
                await self._wait_to_retry(plan_retry(self.retry, error, attempt, deadline, rid))
                self._raise_if_closed_during_call(rid)  # close() came during the wait
                attempt += 1
            except asyncio.CancelledError:
                self._raise_if_closed_during_call(rid)
                raise
        try:
            while message is not grpc.aio.EOF:
                yield ReasonStep.from_proto(message, rid)
                message = await _cancelled_with_caller(call.read(), call)
        except grpc.RpcError as error:
            raise from_rpc_error(error, rid) from error
        except asyncio.CancelledError:
            self._raise_if_closed_during_call(rid)
            raise
        finally:
            call.cancel()

    async def _wait_to_retry(self, delay_s: float) -> None:
        """Wait `delay_s` before the next attempt, or until close()."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), delay_s)

    def _raise_if_closed_during_call(self, rid: str) -> None:
        """CANCELLED, as TRMClient raises it, for a call that close() ended: grpc.aio cancels the channel's calls,
        and the caller would see asyncio.CancelledError as if its own task had been cancelled (which, when it
        was, is left to propagate)."""
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)  # Python 3.11 on; 3.10 cannot tell, and takes the close
        if self._closed.is_set() and not (cancelling and cancelling()):
            raise error_for(grpc.StatusCode.CANCELLED, CLOSED_DURING_CALL, rid) from None
