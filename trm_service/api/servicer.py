"""The trm.v1.ReasoningService implementation on grpc.aio.

Requests arrive as raw bytes and are parsed here, so a malformed body is INVALID_ARGUMENT rather
than the INTERNAL that a failing deserializer would give. Every RPC ends with exactly one request
log line and its metrics (CallRecord), whatever the outcome; a ReasonBatch also gives each of its
requests the line and metrics of a Reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import structlog
from trm.v1 import trm_pb2

from trm_service.api.call_record import CallRecord
from trm_service.api.halt_reasons import answer_flag, wire_halt_reason
from trm_service.api.model_info import model_info
from trm_service.api.occupancy import Occupancy
from trm_service.api.validation import (
    RequestError,
    check_request_id,
    invalid,
    parse_message,
    validate_reason_request,
)
from trm_service.caller_strings import listed_names
from trm_service.observability.metrics import BATCH_REQUEST_METHOD, ServiceMetrics
from trm_service.registry import HostedModel, ModelNotFound, ModelRegistry
from trm_service.runtime.codec import StepReader
from trm_service.scheduler.halting import HaltReason, TimeLimit
from trm_service.scheduler.model_scheduler import QueueFull, SchedulerClosed
from trm_service.scheduler.ticket import StepResult, Ticket

SERVICE_NAME = trm_pb2.DESCRIPTOR.services_by_name["ReasoningService"].full_name
REQUEST_ID_KEY = "x-request-id"
# A ReasonBatch answers this much earlier per request it carries, on top of --deadline-margin-ms: its answers are
# read and sent together after the margin (a Sudoku grid's 47 us on a loaded 2-core machine, plus its task's wake-up
# and the loop's lateness); with the margin alone, 2 of 6 calls of 256 grids at a 5 s deadline beside a routing flood
# ended DEADLINE_EXCEEDED and lost every answer (QA, 2026-12-07).
BATCH_ANSWER_MARGIN_S = 0.0005
_log = structlog.get_logger("trm_service.api")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServingLimits:
    """Server-wide request limits and options."""

    max_time_budget_ms: int
    deadline_margin_s: float
    log_inputs: bool
    max_batch_requests: int = 256


@dataclass
class _Admitted:
    model: HostedModel
    ticket: Ticket
    reader: StepReader
    deadline_timer: asyncio.TimerHandle | None
    """Calls ticket.time_out() at the deadline; cancelled by `_release`."""


class ReasoningServicer:
    """Reason, ReasonStream, ListModels and GetModel over the model registry."""

    def __init__(self, registry: ModelRegistry, limits: ServingLimits, metrics: ServiceMetrics) -> None:
        self._registry = registry
        self._limits = limits
        self._metrics = metrics
        self._occupancy = Occupancy()

    async def reason(self, raw: bytes, context: grpc.aio.ServicerContext) -> trm_pb2.ReasonResponse:
        """Run the recursion to its end and return the final (or anytime) answer."""
        record = self._record("Reason", context)
        with self._occupancy.call(record.started) as idle:
            return await self._account(record, context, lambda: self._reason(raw, context, record, idle))

    async def reason_stream(
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[trm_pb2.ReasonStep]:
        """Stream one message per supervision step; the last one is final and carries the reason."""
        record = self._record("ReasonStream", context)
        with self._occupancy.call(record.started) as idle:
            steps = self._reason_stream(raw, context, record, idle)
            try:
                async for step in steps:
                    record.steps = step.step  # the step reached, for the log line of a stream ended before its answer
                    yield step
                record.finish(grpc.StatusCode.OK)
            except RequestError as exc:
                record.finish(exc.code, exc.message)
                await context.abort(exc.code, exc.message)
            except Exception:
                await self._internal_error(record, context)
            finally:
                await steps.aclose()  # frees the request's batch slot now, also when the client went away
                if not record.finished:  # gRPC ended the call: nothing above finished the record
                    record.finish(self._ended_by_grpc(context))

    async def reason_batch(self, raw: bytes, context: grpc.aio.ServicerContext) -> trm_pb2.ReasonBatchResponse:
        """Run every request of the batch as Reason would alone, all submitted at once; one result each."""
        record = self._record("ReasonBatch", context)
        with self._occupancy.call(record.started):  # its requests never step on the loop: they come many at once
            return await self._account(
                record, context, lambda: self._reason_batch(raw, context, record), late_checked=True)

    async def list_models(self, raw: bytes, context: grpc.aio.ServicerContext) -> trm_pb2.ListModelsResponse:
        """Every hosted model version, by name, newest first."""
        record = self._record("ListModels", context)

        async def run() -> trm_pb2.ListModelsResponse:
            parse_message(trm_pb2.ListModelsRequest, raw)
            return trm_pb2.ListModelsResponse(models=[self._info(m) for m in self._registry.models()])

        return await self._account(record, context, run)

    async def get_model(self, raw: bytes, context: grpc.aio.ServicerContext) -> trm_pb2.ModelInfo:
        """Describe one model (newest version unless one is named)."""
        record = self._record("GetModel", context)

        async def run() -> trm_pb2.ModelInfo:
            request = parse_message(trm_pb2.GetModelRequest, raw)
            model = self._resolve(request.name, request.version, record, field="name")
            return self._info(model)

        return await self._account(record, context, run)

    async def _reason(
        self, raw: bytes, context: grpc.aio.ServicerContext, record: CallRecord, arrived_idle: bool
    ) -> trm_pb2.ReasonResponse:
        request = parse_message(trm_pb2.ReasonRequest, raw)
        admitted = self._admit(request, context, record, stream=False, arrived_idle=arrived_idle)
        return _response(record, admitted, await self._final_result(admitted))

    async def _reason_batch(
        self, raw: bytes, context: grpc.aio.ServicerContext, record: CallRecord
    ) -> trm_pb2.ReasonBatchResponse:
        """Each request gets its own record (method Reason, request id `<call's id>.<index>`), as if sent alone;
        the call's record counts the call."""
        requests = parse_message(trm_pb2.ReasonBatchRequest, raw).requests
        limit = self._limits.max_batch_requests
        if not 1 <= len(requests) <= limit:
            self._name_common_model(requests, record)
            raise invalid(f"a ReasonBatch carries 1 to {limit} requests (the server's --max-batch-requests), got "
                          f"{len(requests)}" + (f"; split the job into calls of at most {limit}" if requests else ""))
        margin_s = self._limits.deadline_margin_s + len(requests) * BATCH_ANSWER_MARGIN_S
        items = [self._batch_item(request, index, context, record, margin_s) for index, request in enumerate(requests)]
        record.model, record.version = _common_model({(item.model, item.version) for item, _ in items})
        try:
            results = await asyncio.gather(*(self._batch_result(item, admitted, context) for item, admitted in items))
            _refuse_if_late(context)
        except asyncio.CancelledError:  # also before the requests' own tasks first ran: account for them here
            ended = self._ended_by_grpc(context)
            for item, admitted in items:
                if isinstance(admitted, _Admitted):
                    _release(admitted)
                item.finish(ended)  # a request that failed keeps its own record; an answer was never sent
            raise
        except RequestError as late:
            for item, _ in items:
                item.finish(late.code, late.message)
            raise
        for item, _ in items:
            item.finish(grpc.StatusCode.OK)  # the answers go out together, now
        return trm_pb2.ReasonBatchResponse(results=results)

    def _name_common_model(self, requests: Sequence[trm_pb2.ReasonRequest], record: CallRecord) -> None:
        """A refused batch call's record under the model its requests all name, where that name resolves (as a
        Reason's record stays under model="" for an unknown name)."""
        named = {(request.model, request.version) for request in requests}
        if len(named) == 1:
            with contextlib.suppress(RequestError):
                self._resolve(*named.pop(), record, field="model")

    def _batch_item(
        self, request: trm_pb2.ReasonRequest, index: int, context: grpc.aio.ServicerContext, call: CallRecord,
        margin_s: float,
    ) -> tuple[CallRecord, _Admitted | Exception]:
        """Admit one request of a batch under its own record, to answer `margin_s` before the call's deadline; its
        error, if any, stays its own (the requests admitted before it keep their places)."""
        record = CallRecord(BATCH_REQUEST_METHOD, self._metrics, log_inputs=self._limits.log_inputs,
                            request_id=f"{call.request_id}.{index}")
        try:
            return record, self._admit(request, context, record, stream=False, batch_call=call, margin_s=margin_s)
        except Exception as exc:  # reported in its own result by _batch_result
            return record, exc

    async def _batch_result(
        self, record: CallRecord, admitted: _Admitted | Exception, context: grpc.aio.ServicerContext
    ) -> trm_pb2.ReasonBatchResult:
        try:
            if isinstance(admitted, Exception):
                raise admitted
            response = _response(record, admitted, await self._final_result(admitted))
        except RequestError as exc:
            record.finish(exc.code, exc.message)
            return _failure(exc.code, exc.message)
        except asyncio.CancelledError:
            record.finish(self._ended_by_grpc(context))
            raise
        except Exception:
            _log.exception("request_failed", request_id=record.request_id, method=record.method)
            message = _internal_message(record)
            record.finish(grpc.StatusCode.INTERNAL, message)
            return _failure(grpc.StatusCode.INTERNAL, message)
        return trm_pb2.ReasonBatchResult(response=response)  # its record is finished with the call's answer

    async def _reason_stream(
        self, raw: bytes, context: grpc.aio.ServicerContext, record: CallRecord, arrived_idle: bool
    ) -> AsyncGenerator[trm_pb2.ReasonStep, None]:
        self._adopt_request_id(record, context)
        request = parse_message(trm_pb2.ReasonRequest, raw)
        admitted = self._admit(request, context, record, stream=True, arrived_idle=arrived_idle)
        previous = None
        try:
            while True:
                result = await self._until_deadline(admitted, admitted.ticket.next_update())
                decoded = admitted.reader.read(result)
                if result.final:
                    _note_final(record, admitted, result, decoded.answer)
                    _refuse_if_late(context)
                yield trm_pb2.ReasonStep(
                    step=result.step,
                    answer=decoded.answer,
                    halt_confidence=result.halt_probability,
                    change=decoded.change_from(previous),
                    elapsed_ms=result.elapsed_ms,
                    final=result.final,
                    halt_reason=wire_halt_reason(result.halt_reason),
                    request_id=record.request_id,
                    model_version=admitted.model.version,
                )
                if result.final:
                    return
                previous = decoded
        finally:
            _release(admitted)

    def _admit(
        self,
        request: trm_pb2.ReasonRequest,
        context: grpc.aio.ServicerContext,
        record: CallRecord,
        *,
        stream: bool,
        arrived_idle: bool = False,
        batch_call: CallRecord | None = None,
        margin_s: float | None = None,
    ) -> _Admitted:
        """Validate and encode a ReasonRequest and submit it to its model's scheduler (`arrived_idle`: the call
        found the server idle, see api/occupancy.py; `batch_call`: the ReasonBatch call it is part of; `margin_s`:
        how long before the deadline it answers, the server's --deadline-margin-ms unless given)."""
        margin_s = self._limits.deadline_margin_s if margin_s is None else margin_s
        model = self._resolve(request.model, request.version, record, field="model")
        valid = validate_reason_request(
            request, model.loaded.codec, model.manifest, self._limits.max_time_budget_ms
        )
        record.input = valid.input.logged_input
        limits = []
        if valid.time_budget_ms:
            limits.append(TimeLimit(record.started + valid.time_budget_ms / 1000.0, HaltReason.BUDGET))
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        if deadline is not None:
            limits.append(TimeLimit(deadline - margin_s, HaltReason.DEADLINE))
        verify = None if request.budget.continue_when_verified else valid.input.verifier
        ticket = Ticket(valid.input.tokens, valid.budget, arrival=record.started, limits=limits, stream=stream,
                        verify=verify, arrived_idle=arrived_idle, batch_call=batch_call)
        try:
            model.scheduler.submit(ticket)
        except QueueFull as exc:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
        except SchedulerClosed as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry") from exc
        admitted = _Admitted(model=model, ticket=ticket, reader=valid.input.reader, deadline_timer=None)
        if deadline is not None:
            at_margin = deadline - margin_s - time.monotonic()
            # A ReasonBatch answers by the margin: a request of it that waited for its first step past the margin
            # would make the whole call late and lose its other answers. Only where the call came within the margin
            # (a deadline shorter than it) does each wait for its first step, as alone: answering at once, none
            # would have one.
            first_step_by = deadline if batch_call is None or at_margin <= 0 else None
            admitted.deadline_timer = asyncio.get_running_loop().call_later(
                max(0.0, at_margin), _at_deadline, admitted, first_step_by)
        return admitted

    async def _final_result(self, admitted: _Admitted) -> StepResult:
        try:
            return await self._until_deadline(admitted, admitted.ticket.finished)
        finally:
            _release(admitted)

    async def _until_deadline(self, admitted: _Admitted, step: Awaitable[StepResult]) -> StepResult:
        """Await the next step; if the gRPC deadline comes first (the ticket times out), return the last
        step as the answer."""
        try:
            return await step
        except SchedulerClosed as exc:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry") from exc
        except TimeoutError:
            latest = admitted.ticket.latest
            if latest is None:
                raise RequestError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the deadline passed before the first supervision step finished; allow more time "
                    f"(one step of {admitted.model.name!r} takes about "
                    f"{admitted.model.scheduler.expected_step_s * 1000:.1f} ms plus queueing)",
                ) from None
            return dataclasses.replace(
                latest,
                halt_reason=HaltReason.DEADLINE,
                elapsed_ms=(time.monotonic() - admitted.ticket.arrival) * 1000.0,
            )

    def _resolve(self, name: str, version: str, record: CallRecord, *, field: str) -> HostedModel:
        if not name:
            raise invalid(f"{field} is required: name one of the hosted models "
                          f"({listed_names(self._registry.names(), empty='none are loaded')})")
        try:
            model = self._registry.resolve(name, version)
        except ModelNotFound as exc:
            raise RequestError(grpc.StatusCode.NOT_FOUND, str(exc)) from exc
        record.model, record.version = model.name, model.version
        return model

    def _info(self, model: HostedModel) -> trm_pb2.ModelInfo:
        return model_info(model, self._registry.versions(model.name), self._limits.max_time_budget_ms)

    def _record(self, method: str, context: grpc.aio.ServicerContext) -> CallRecord:
        """A record under a server-made request id, which the trailing metadata carries until the
        caller's own id passes validation (`_adopt_request_id`)."""
        record = CallRecord(method, self._metrics, log_inputs=self._limits.log_inputs)
        context.set_trailing_metadata(((REQUEST_ID_KEY, record.request_id),))
        return record

    @staticmethod
    def _adopt_request_id(record: CallRecord, context: grpc.aio.ServicerContext) -> None:
        """Use the caller's x-request-id if it sent a valid one; raise INVALID_ARGUMENT for an invalid one,
        which is never echoed (gRPC would refuse to send an illegal header and turn the call INTERNAL)."""
        supplied = dict(context.invocation_metadata() or ()).get(REQUEST_ID_KEY)
        if supplied is not None:
            record.request_id = check_request_id(str(supplied))
            context.set_trailing_metadata(((REQUEST_ID_KEY, record.request_id),))

    async def _account(
        self, record: CallRecord, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[_T]],
        late_checked: bool = False,
    ) -> _T:
        """Run a unary RPC body, map its errors to statuses and finish its record; an answer ready after the
        deadline is refused here unless the body did that itself (`late_checked`: one reading of the clock
        decides for the call and its requests alike)."""
        try:
            self._adopt_request_id(record, context)
            result = await work()
            if not late_checked:
                _refuse_if_late(context)
        except RequestError as exc:
            record.finish(exc.code, exc.message)
            await context.abort(exc.code, exc.message)
        except asyncio.CancelledError:
            record.finish(self._ended_by_grpc(context))
            raise
        except Exception:
            await self._internal_error(record, context)
        record.finish(grpc.StatusCode.OK)
        return result

    def _ended_by_grpc(self, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
        """The status of a call that gRPC ended before its answer: DEADLINE_EXCEEDED once less than the deadline
        margin was left (gRPC's deadline came before the server's answer at the margin, as when the event loop runs
        late; the caller's own deadline, whose gRPC then cancels the call, comes before the server's by the
        request's time on the wire), otherwise CANCELLED (the caller went away, or the server stopped)."""
        remaining = context.time_remaining()
        late = remaining is not None and remaining <= max(self._limits.deadline_margin_s, 0.0)
        return grpc.StatusCode.DEADLINE_EXCEEDED if late else grpc.StatusCode.CANCELLED

    async def _internal_error(self, record: CallRecord, context: grpc.aio.ServicerContext) -> None:
        _log.exception("request_failed", request_id=record.request_id, method=record.method)
        message = _internal_message(record)
        record.finish(grpc.StatusCode.INTERNAL, message)
        await context.abort(grpc.StatusCode.INTERNAL, message)


def _at_deadline(admitted: _Admitted, first_step_by: float | None) -> None:
    """The deadline less its margin has come: the request answers with its last step (`ticket.time_out`). One that
    has no step yet waits for its first until `first_step_by` (the deadline itself, time.monotonic()), as a lone
    call stepped at once on the event loop does (the first step always runs); with None (a request of a ReasonBatch
    that came before the margin) it fails now, alone, and the call's other answers go out in time."""
    left = 0.0 if first_step_by is None else first_step_by - time.monotonic()
    if admitted.ticket.latest is None and left > 0:
        admitted.deadline_timer = asyncio.get_running_loop().call_later(left, admitted.ticket.time_out)
    else:
        admitted.ticket.time_out()


def _release(admitted: _Admitted) -> None:
    """The caller is done with the request (answered, failed or gone): stop its deadline timer and free its
    place in the scheduler."""
    if admitted.deadline_timer is not None:
        admitted.deadline_timer.cancel()
    admitted.model.scheduler.cancel(admitted.ticket)
    admitted.ticket.drop_unread_error()


def _deadline_passed(context: grpc.aio.ServicerContext) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0




def _refuse_if_late(context: grpc.aio.ServicerContext) -> None:
    """Raise DEADLINE_EXCEEDED for an answer ready only after the call's deadline (a deadline shorter than the
    margin, whose first step still runs; a step that ran past it on a late loop): sent anyway, it would reach the
    caller or not as the caller's gRPC timer and the reply raced, and the log could not say which."""
    if _deadline_passed(context):
        raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "the answer came after the deadline; allow more time")


def _note_final(record: CallRecord, admitted: _Admitted, result: StepResult, answer: trm_pb2.Answer) -> None:
    record.steps, record.halt_reason, record.flag = result.step, result.halt_reason, answer_flag(answer)
    record.queue_wait_s = admitted.ticket.queue_wait_s


def _response(record: CallRecord, admitted: _Admitted, result: StepResult) -> trm_pb2.ReasonResponse:
    """A request's final answer as Reason returns it."""
    answer = admitted.reader.read(result).answer
    _note_final(record, admitted, result, answer)
    return trm_pb2.ReasonResponse(
        model=admitted.model.name,
        model_version=admitted.model.version,
        answer=answer,
        halt_confidence=result.halt_probability,
        steps=result.step,
        halt_reason=wire_halt_reason(result.halt_reason),
        latency_ms=record.elapsed_ms(),
        request_id=record.request_id,
    )


def _internal_message(record: CallRecord) -> str:
    return f"internal error while serving request {record.request_id}; the server log has the details"


def _failure(code: grpc.StatusCode, message: str) -> trm_pb2.ReasonBatchResult:
    return trm_pb2.ReasonBatchResult(failure=trm_pb2.RequestFailure(code=code.value[0], message=message))


def _common_model(models: set[tuple[str, str]]) -> tuple[str, str]:
    """A batch call's record of its requests' (model, version): the one pair, or empty strings for a mix."""
    return next(iter(models)) if len(models) == 1 else ("", "")


def reasoning_methods(servicer: ReasoningServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The servicer's methods by name, with raw-bytes requests (see the module docstring)."""
    serialize: Callable[[trm_pb2.ReasonResponse], bytes] = trm_pb2.ReasonResponse.SerializeToString
    return {
        "Reason": grpc.unary_unary_rpc_method_handler(servicer.reason, response_serializer=serialize),
        "ReasonStream": grpc.unary_stream_rpc_method_handler(
            servicer.reason_stream, response_serializer=trm_pb2.ReasonStep.SerializeToString
        ),
        "ReasonBatch": grpc.unary_unary_rpc_method_handler(
            servicer.reason_batch, response_serializer=trm_pb2.ReasonBatchResponse.SerializeToString
        ),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.list_models, response_serializer=trm_pb2.ListModelsResponse.SerializeToString
        ),
        "GetModel": grpc.unary_unary_rpc_method_handler(
            servicer.get_model, response_serializer=trm_pb2.ModelInfo.SerializeToString
        ),
    }
