"""A call that gRPC's own deadline ends before the server's answer is recorded as DEADLINE_EXCEEDED, not CANCELLED,
nor OK.

The server answers a request `--deadline-margin-ms` before its deadline; when the event loop runs later than that
margin, gRPC's deadline ends the call first and the handler is cancelled. The servicer here is served in-process
with the margin negative (its own answer due half a second after the deadline), so gRPC's deadline always comes
first: the order a late loop gives, made certain. An answer that is ready only after the deadline, with no turn of
the loop between (a deadline shorter than the margin whose first step ran on the loop), is held here past the
deadline by a servicer that sleeps after its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from test_service_support import LONG_MODEL, SlowHandOver
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.api.servicer import SERVICE_NAME, ReasoningServicer, ServingLimits, reasoning_methods
from trm_service.observability.metrics import BATCH_REQUEST_METHOD as ITEM
from trm_service.observability.metrics import ServiceMetrics
from trm_service.registry import ModelRegistry, SchedulerLimits
from trm_service.runtime.loader import LoadOptions
from trm_service.runtime.session import SessionSettings

DEADLINE_S = 0.3
NEVER_HALT = trm_pb2.Budget(halt_threshold=1.0)  # the long model steps until a limit stops it


def _request() -> trm_pb2.ReasonRequest:
    return trm_pb2.ReasonRequest(model=LONG_MODEL, text="think past the deadline", budget=NEVER_HALT)


class _LateServicer(ReasoningServicer):
    """Holds the event loop past the deadline once a request's answer is ready (a step that ran late on it)."""

    async def _until_deadline(self, admitted: Any, step: Awaitable[Any]) -> Any:
        result = await super()._until_deadline(admitted, step)
        if result.final:
            time.sleep(DEADLINE_S + 0.2)
        return result


class _AwaitsPastTheDeadlineServicer(ReasoningServicer):
    """Holds a request's ready answer past the deadline without holding the event loop (other work ahead of it)."""

    async def _until_deadline(self, admitted: Any, step: Awaitable[Any]) -> Any:
        result = await super()._until_deadline(admitted, step)
        if result.final:
            await asyncio.sleep(2.0)
        return result


async def _served(
    bundle: Path,
    call: Callable[[trm_pb2_grpc.ReasoningServiceStub], Awaitable[grpc.StatusCode]],
    servicer: type[ReasoningServicer] = ReasoningServicer,
    margin_s: float = -0.5,
    one_step_at_a_time_s: float | None = None,
) -> tuple[grpc.StatusCode, CollectorRegistry]:
    """Serve the long model (by default its own answer due half a second after a deadline), make one call; the
    status the caller got and the server's metrics. `one_step_at_a_time_s`: a batch of one request, each step
    handed to the model's thread that much late (a loaded machine)."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    max_batch = 64 if one_step_at_a_time_s is None else 1
    models = ModelRegistry([bundle], LoadOptions(SessionSettings()), SchedulerLimits(max_batch, 64, 8), metrics)
    await models.reload()
    if one_step_at_a_time_s is not None:
        models.resolve(LONG_MODEL).scheduler._executor = SlowHandOver(one_step_at_a_time_s)
    limits = ServingLimits(max_time_budget_ms=60_000, deadline_margin_s=margin_s, log_inputs=False)
    methods = reasoning_methods(servicer(models, limits, metrics))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            code = await call(trm_pb2_grpc.ReasoningServiceStub(channel))
        await asyncio.sleep(0.2)  # the handler's cancellation reaches its record
    finally:
        await server.stop(None)
        await models.close()
    return code, registry


async def _status(call: grpc.aio.Call) -> grpc.StatusCode:
    """The status the caller gets, once the call has ended whatever way."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
        await call
    return await call.code()


def _count(registry: CollectorRegistry, method: str, code: str) -> float:
    value = registry.get_sample_value("trm_requests_total", {"model": LONG_MODEL, "method": method, "code": code})
    return value or 0.0


@pytest.mark.parametrize("method", ["Reason", "ReasonStream"])
def test_grpcs_deadline_before_the_answer_is_counted_as_deadline_exceeded(long_bundle: Path, method: str) -> None:
    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        if method == "Reason":
            return await _status(stub.Reason(_request(), timeout=DEADLINE_S))
        stream = stub.ReasonStream(_request(), timeout=DEADLINE_S)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in stream:
                pass
        return await stream.code()

    code, registry = asyncio.run(_served(long_bundle, call))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (_count(registry, method, "DEADLINE_EXCEEDED"), _count(registry, method, "CANCELLED")) == (1.0, 0.0)


def test_every_request_of_a_batch_that_grpcs_deadline_ended_is_counted_as_deadline_exceeded(long_bundle: Path) -> None:
    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        batch = trm_pb2.ReasonBatchRequest(requests=[_request()] * 3)
        return await _status(stub.ReasonBatch(batch, timeout=DEADLINE_S))

    code, registry = asyncio.run(_served(long_bundle, call))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _count(registry, "ReasonBatch", "DEADLINE_EXCEEDED") == 1.0
    assert (_count(registry, ITEM, "DEADLINE_EXCEEDED"), _count(registry, ITEM, "CANCELLED")) == (3.0, 0.0)


def test_a_cancel_within_the_margin_of_the_deadline_is_counted_as_deadline_exceeded(long_bundle: Path) -> None:
    """QA: on a loaded machine the caller's gRPC cancelled a late ReasonBatch at the caller's deadline, a few ms
    before the server's own (the request's time on the wire), and the call was logged CANCELLED, "the caller went
    away", while the caller got DEADLINE_EXCEEDED. Here: a 1 s deadline, a 0.5 s margin, the answer held past the
    deadline, a cancel at 0.7 s."""
    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        pending = stub.Reason(_request(), timeout=1.0)
        await asyncio.sleep(0.7)
        pending.cancel()
        return await _status(pending)

    code, registry = asyncio.run(_served(long_bundle, call, _AwaitsPastTheDeadlineServicer, margin_s=0.5))
    assert code == grpc.StatusCode.CANCELLED  # the caller's own view of its cancel
    assert (_count(registry, "Reason", "DEADLINE_EXCEEDED"), _count(registry, "Reason", "CANCELLED")) == (1.0, 0.0)


def test_a_caller_that_goes_away_before_its_deadline_is_still_counted_as_cancelled(long_bundle: Path) -> None:
    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        pending = stub.Reason(_request(), timeout=60.0)
        await asyncio.sleep(DEADLINE_S)
        pending.cancel()
        return await _status(pending)

    code, registry = asyncio.run(_served(long_bundle, call))
    assert code == grpc.StatusCode.CANCELLED
    assert (_count(registry, "Reason", "CANCELLED"), _count(registry, "Reason", "DEADLINE_EXCEEDED")) == (1.0, 0.0)


ONE_STEP = trm_pb2.Budget(max_steps=1)


@pytest.mark.parametrize("method", ["Reason", "ReasonStream", "ReasonBatch"])
def test_an_answer_ready_after_the_deadline_is_counted_as_deadline_exceeded(long_bundle: Path, method: str) -> None:
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="answer late", budget=ONE_STEP)

    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        if method == "Reason":
            return await _status(stub.Reason(request, timeout=DEADLINE_S))
        if method == "ReasonBatch":
            batch = trm_pb2.ReasonBatchRequest(requests=[request] * 2)
            return await _status(stub.ReasonBatch(batch, timeout=DEADLINE_S))
        stream = stub.ReasonStream(request, timeout=DEADLINE_S)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in stream:
                pass
        return await stream.code()

    code, registry = asyncio.run(_served(long_bundle, call, _LateServicer, margin_s=0.02))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (_count(registry, method, "DEADLINE_EXCEEDED"), _count(registry, method, "OK")) == (1.0, 0.0)
    if method == "ReasonBatch":
        assert (_count(registry, ITEM, "DEADLINE_EXCEEDED"), _count(registry, ITEM, "OK")) == (2.0, 0.0)


def test_an_answer_ready_before_the_deadline_is_still_counted_as_ok(long_bundle: Path) -> None:
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="answer in time", budget=ONE_STEP)

    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        return await _status(stub.Reason(request, timeout=60.0))

    code, registry = asyncio.run(_served(long_bundle, call, margin_s=0.02))
    assert code == grpc.StatusCode.OK
    assert (_count(registry, "Reason", "OK"), _count(registry, "Reason", "DEADLINE_EXCEEDED")) == (1.0, 0.0)


class _LateAfterFirstStepServicer(ReasoningServicer):
    """Holds the event loop past the deadline once an answer of more than one step is ready."""

    async def _until_deadline(self, admitted: Any, step: Awaitable[Any]) -> Any:
        result = await super()._until_deadline(admitted, step)
        if result.final and result.step > 1:
            time.sleep(DEADLINE_S + 0.2)
        return result


@pytest.mark.parametrize("ended_by", ["gRPC's deadline", "an answer after the deadline"])
def test_a_batch_that_ends_past_its_deadline_counts_its_answers_that_were_ready_in_time_as_never_sent(
    long_bundle: Path, ended_by: str
) -> None:
    """The caller gets none of a late call's answers: one request answered after one step, in time, and one still
    stepping when gRPC's deadline ends the call (or answered only after the deadline) are both DEADLINE_EXCEEDED."""
    in_time = trm_pb2.ReasonRequest(model=LONG_MODEL, text="answer in time", budget=ONE_STEP)
    last = _request() if ended_by == "gRPC's deadline" else trm_pb2.ReasonRequest(
        model=LONG_MODEL, text="answer late", budget=trm_pb2.Budget(halt_threshold=1.0, max_steps=3))

    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        batch = trm_pb2.ReasonBatchRequest(requests=[in_time, last])
        return await _status(stub.ReasonBatch(batch, timeout=DEADLINE_S))

    late = ended_by == "an answer after the deadline"
    servicer, margin_s = (_LateAfterFirstStepServicer, 0.02) if late else (ReasoningServicer, -0.5)
    code, registry = asyncio.run(_served(long_bundle, call, servicer, margin_s=margin_s))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _count(registry, "ReasonBatch", "DEADLINE_EXCEEDED") == 1.0
    assert (_count(registry, ITEM, "DEADLINE_EXCEEDED"), _count(registry, ITEM, "OK")) == (2.0, 0.0)


def test_a_batch_answers_at_the_margin_failing_alone_each_request_that_has_no_step_yet(long_bundle: Path) -> None:
    """One step at a time, each 0.5 s: the first request is answered at 0.5 s; at the margin (0.8 s) the second is
    in its first step and the third waits. Waiting for their first steps until the deadline (1.2 s; the third's
    ends at 1.5) would make the whole call late and lose the first answer too."""
    results: list[trm_pb2.ReasonBatchResult] = []

    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        batch = trm_pb2.ReasonBatchRequest(requests=[
            trm_pb2.ReasonRequest(model=LONG_MODEL, text=f"request {index}", budget=ONE_STEP) for index in range(3)])
        pending = stub.ReasonBatch(batch, timeout=1.2)
        with contextlib.suppress(grpc.aio.AioRpcError):
            results.extend((await pending).results)
        return await pending.code()

    code, registry = asyncio.run(_served(long_bundle, call, margin_s=0.4, one_step_at_a_time_s=0.5))
    assert code == grpc.StatusCode.OK
    assert results[0].response.steps == 1
    for late in results[1:]:
        assert late.failure.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert late.failure.message.startswith("the deadline passed before the first supervision step finished")
    assert (_count(registry, ITEM, "OK"), _count(registry, ITEM, "DEADLINE_EXCEEDED")) == (1.0, 2.0)
    assert _count(registry, "ReasonBatch", "OK") == 1.0


@pytest.mark.parametrize("method", ["Reason", "ReasonStream", "ReasonBatch"])
def test_a_deadline_shorter_than_the_margin_still_gets_the_first_steps_answer(long_bundle: Path, method: str) -> None:
    """The first step always runs: a lone call that found the server idle steps at once on the event loop, and
    the same request in a ReasonBatch (whose requests step on the model's thread) gets the same answer, not
    DEADLINE_EXCEEDED at the margin before its step could run."""
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="a short deadline", budget=NEVER_HALT)
    answers: list[tuple[str, int, int]] = []

    def keep(response: trm_pb2.ReasonResponse | trm_pb2.ReasonStep) -> None:
        answers.append((response.answer.classification.label,
                        response.steps if method != "ReasonStream" else response.step, response.halt_reason))

    async def call(stub: trm_pb2_grpc.ReasoningServiceStub) -> grpc.StatusCode:
        if method == "Reason":
            pending = stub.Reason(request, timeout=DEADLINE_S)
            with contextlib.suppress(grpc.aio.AioRpcError):
                keep(await pending)
            return await pending.code()
        if method == "ReasonBatch":
            pending = stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=[request] * 2), timeout=DEADLINE_S)
            with contextlib.suppress(grpc.aio.AioRpcError):
                for result in (await pending).results:
                    assert result.WhichOneof("result") == "response", result.failure.message
                    keep(result.response)
            return await pending.code()
        stream = stub.ReasonStream(request, timeout=DEADLINE_S)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for step in stream:
                keep(step)
        return await stream.code()

    code, registry = asyncio.run(_served(long_bundle, call, margin_s=DEADLINE_S + 0.2))
    assert code == grpc.StatusCode.OK
    assert answers and all(steps == 1 and reason == trm_pb2.HALT_REASON_DEADLINE for _, steps, reason in answers)
    assert _count(registry, method, "OK") == 1.0
