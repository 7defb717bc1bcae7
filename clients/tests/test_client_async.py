"""Every call of the asyncio client against a real server hosting random bundles."""

from __future__ import annotations

import asyncio
import time

import anyio
import grpc
import pytest
from sdk_test_support import GRID_MODEL, N_SUP, SUDOKU, TEXT_MODEL, closed_port
from trm.v1 import trm_pb2, trm_pb2_grpc
from trm_client import (
    AsyncTRMClient,
    Budget,
    Classification,
    ClientClosed,
    DeadlineExceeded,
    GridSolution,
    HaltReason,
    InvalidArgument,
    NotFound,
    RetryPolicy,
    TRMError,
)

from trainer.testing import DEFAULT_TEXT_LABELS


@pytest.fixture
async def aclient(server):
    async with AsyncTRMClient(server.target, timeout_s=30.0) as client:
        yield client


async def test_a_closed_client_says_so(server):
    client = AsyncTRMClient(server.target)
    await client.close()
    with pytest.raises(ClientClosed, match=r"this AsyncTRMClient is closed .*: make a new AsyncTRMClient"):
        await client.models()
    with pytest.raises(ClientClosed):
        client.reason_stream(TEXT_MODEL, "hello")


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_call_that_close_ends_while_it_waits_to_retry_says_the_client_was_closed(streamed):
    """QA: close() between two attempts raised grpc.aio's UsageError ("Channel is closed.")."""
    slow_retries = RetryPolicy(initial_backoff_s=4.0, max_backoff_s=4.0)  # each wait 2-4 s
    client = AsyncTRMClient(f"127.0.0.1:{closed_port()}", timeout_s=20, retry=slow_retries)

    async def call() -> None:
        if streamed:
            async for _ in client.reason_stream(TEXT_MODEL, "hello"):
                pass
        else:
            await client.reason(TEXT_MODEL, "hello")

    calling = asyncio.create_task(call())
    await asyncio.sleep(0.5)
    await client.close()
    closed = time.monotonic()
    with pytest.raises(TRMError) as caught:
        await calling
    assert time.monotonic() - closed < 1.5  # at close(), not at the wait's end
    assert caught.value.code is grpc.StatusCode.CANCELLED
    assert caught.value.details == "the client was closed during the call (close(), or the end of its with-block)"


async def test_a_call_that_close_ends_says_the_client_was_closed_not_that_the_task_was_cancelled(server):
    """grpc.aio cancels a closed channel's calls: the caller gets CANCELLED, as from TRMClient, not
    asyncio.CancelledError (which still reaches a caller whose own task is cancelled)."""
    client = AsyncTRMClient(server.target)
    made_before = client.reason_stream(TEXT_MODEL, "hello")
    in_flight = client.reason_stream(GRID_MODEL, grid=SUDOKU, budget=Budget(max_steps=N_SUP, min_steps=N_SUP))
    assert (await anext(in_flight)).step == 1
    await client.close()
    with pytest.raises(ClientClosed):
        await anext(made_before)
    with pytest.raises(TRMError) as caught:
        async for _ in in_flight:
            pass
    assert caught.value.code is grpc.StatusCode.CANCELLED
    assert caught.value.details == "the client was closed during the call (close(), or the end of its with-block)"
    async with AsyncTRMClient(server.target) as other:
        own = asyncio.create_task(other.reason(GRID_MODEL, grid=SUDOKU))
        await asyncio.sleep(0)
        own.cancel()
        with pytest.raises(asyncio.CancelledError):
            await own


class _StalledService(trm_pb2_grpc.ReasoningServiceServicer):
    """Takes every Reason and ReasonStream call and never answers."""

    def __init__(self) -> None:
        self.calls = asyncio.Queue()

    async def Reason(self, request, context):
        await self.calls.put(request)
        await asyncio.Event().wait()

    async def ReasonStream(self, request, context):
        await self.calls.put(request)
        await asyncio.Event().wait()
        yield trm_pb2.ReasonStep()


async def test_a_caller_cancelled_during_a_call_gets_its_own_cancellation():
    """A task cancelled while its call is at the server gets its own CancelledError, message and all, and a timeout
    scope of anyio (the MCP SDK's) ends the call, not the program: grpc.aio alone puts a bare CancelledError in its
    place, which the scope does not take for its own."""
    stalled, server = _StalledService(), grpc.aio.server()
    trm_pb2_grpc.add_ReasoningServiceServicer_to_server(stalled, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncTRMClient(f"127.0.0.1:{port}", timeout_s=30.0) as client:
            own = asyncio.create_task(client.reason(TEXT_MODEL, "hello"))
            await stalled.calls.get()
            own.cancel("the caller's own")
            with pytest.raises(asyncio.CancelledError) as caught:
                await own
            assert caught.value.args == ("the caller's own",)
            with anyio.move_on_after(0.5) as unary_scope:
                await client.reason(TEXT_MODEL, "hello")
            with anyio.move_on_after(0.5) as stream_scope:
                async for _ in client.reason_stream(TEXT_MODEL, "hello"):
                    pass
            assert unary_scope.cancelled_caught and stream_scope.cancelled_caught
            assert stalled.calls.qsize() == 2  # both calls reached the server before their scopes ended them
    finally:
        await server.stop(0)


async def test_models_and_model(aclient):
    infos = {info.name: info for info in await aclient.models()}
    assert set(infos) == {TEXT_MODEL, GRID_MODEL}
    one = await aclient.model(GRID_MODEL)
    assert one == infos[GRID_MODEL]


async def test_unknown_model_raises_not_found_with_the_request_id(aclient):
    with pytest.raises(NotFound) as caught:
        await aclient.reason("no-such-model", "hello", request_id="async-missing")
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.request_id == "async-missing"


async def test_reason_on_text_and_grid(aclient):
    text = await aclient.reason(TEXT_MODEL, "what is the weather", top_k=2, request_id="async-1")
    assert isinstance(text.answer, Classification)
    assert text.prediction in DEFAULT_TEXT_LABELS
    assert len(text.answer.top) == 2
    assert text.request_id == "async-1"
    assert 1 <= text.steps <= N_SUP
    grid = await aclient.reason(GRID_MODEL, grid=SUDOKU)
    assert isinstance(grid.answer, GridSolution)
    assert len(grid.answer.cells) == 81


async def test_concurrent_calls_each_get_their_own_answer(aclient):
    texts = ["play jazz", "set an alarm for six", "will it rain", "translate hello"]
    results = await asyncio.gather(
        *(aclient.reason(TEXT_MODEL, t, request_id=f"c{i}") for i, t in enumerate(texts))
    )
    singles = [await aclient.reason(TEXT_MODEL, t) for t in texts]
    assert [r.request_id for r in results] == ["c0", "c1", "c2", "c3"]
    assert [r.prediction for r in results] == [s.prediction for s in singles]
    for batched, single in zip(results, singles, strict=True):  # each its own answer, not another call's
        assert [t.label for t in batched.answer.top] == [t.label for t in single.answer.top]
        assert [t.probability for t in batched.answer.top] == pytest.approx(
            [t.probability for t in single.answer.top], abs=1e-5)


@pytest.mark.parametrize(
    ("model", "inputs"), [(TEXT_MODEL, {"text": "play jazz"}), (GRID_MODEL, {"grid": SUDOKU})]
)
async def test_stream_ends_with_the_same_answer_as_unary(aclient, model, inputs):
    budget = Budget(max_steps=N_SUP, halt_threshold=1.0)
    steps = [step async for step in aclient.reason_stream(model, **inputs, budget=budget)]
    unary = await aclient.reason(model, **inputs, budget=budget)
    assert [s.step for s in steps] == list(range(1, N_SUP + 1))
    assert steps[-1].final and not any(s.final for s in steps[:-1])
    assert steps[-1].prediction == unary.prediction
    assert steps[-1].halt_reason is unary.halt_reason is HaltReason.MAX_STEPS


async def test_invalid_input_raises_invalid_argument_without_retrying(server):
    retries = []
    async with AsyncTRMClient(server.target, retry=RetryPolicy(on_retry=retries.append)) as client:
        with pytest.raises(InvalidArgument):
            await client.reason(GRID_MODEL, grid="12")
        with pytest.raises(InvalidArgument):
            [step async for step in client.reason_stream(GRID_MODEL, grid="12")]
    assert retries == []


async def test_expired_deadline_raises_deadline_exceeded(aclient):
    """A deadline that has passed fails every time, without a call (gRPC itself races one below its timer's
    resolution against a fast answer: a 1 µs timeout got the answer in most of 300 calls)."""
    with pytest.raises(DeadlineExceeded) as caught:
        await aclient.reason(TEXT_MODEL, "too late", timeout_s=0)
    assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(DeadlineExceeded):
        [step async for step in aclient.reason_stream(TEXT_MODEL, "too late", timeout_s=-1)]


def test_a_client_used_in_another_event_loop_says_to_make_one_there(server):
    made: list[AsyncTRMClient] = []

    async def make() -> None:
        made.append(AsyncTRMClient(server.target))
        await made[0].models()

    async def use_again() -> None:
        await made[0].models()

    asyncio.run(make())
    with pytest.raises(RuntimeError, match=r"made in another event loop .*: make one in each loop"):
        asyncio.run(use_again())


def test_a_client_made_outside_a_running_event_loop_says_where_to_make_it():
    with pytest.raises(RuntimeError, match="create an AsyncTRMClient inside a coroutine"):
        AsyncTRMClient("127.0.0.1:50051")
