"""The step-level batching scheduler with real ONNX Runtime sessions (in process, no gRPC)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from test_service_support import SlowHandOver

from trm_service.observability.metrics import ServiceMetrics
from trm_service.runtime.loader import LoadedModel, LoadOptions, load_model
from trm_service.runtime.session import Lanes, RunHandle, SessionSettings, StepSession, StepStopped
from trm_service.runtime.text_codec import TextCodec
from trm_service.scheduler.halting import HaltReason, StepBudget, TimeLimit
from trm_service.scheduler.model_scheduler import (
    INLINE_STEP_S,
    ModelScheduler,
    QueueFull,
    SchedulerClosed,
)
from trm_service.scheduler.ticket import StepResult, Ticket

TEXTS = (
    "play some jazz", "wake me at seven", "weather in paris", "translate hello", "tell me a joke",
    "set an alarm", "is it raining", "put on music", "say thanks in german", "what time is it",
)
NEVER_HALT = 1.0


@pytest.fixture(scope="module")
def text_model(text_bundle: Path) -> LoadedModel:
    return load_model(text_bundle, LoadOptions(SessionSettings(intra_op_threads=1)))


@pytest.fixture(scope="module")
def long_model(long_bundle: Path) -> LoadedModel:
    return load_model(long_bundle, LoadOptions(SessionSettings(intra_op_threads=1)))


@pytest.fixture(scope="module")
def grid_model(grid_bundle: Path) -> LoadedModel:
    return load_model(grid_bundle, LoadOptions(SessionSettings(intra_op_threads=1)))


class Harness:
    """A started scheduler with its own metrics registry."""

    def __init__(self, model: LoadedModel, *, max_batch: int = 64, max_queue: int = 64, max_rows_per_run: int = 16,
                 session: StepSession | None = None, load_wait_s: float | None = None,
                 lanes: Lanes | None = None) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        manifest = model.bundle.manifest
        self.scheduler = ModelScheduler(
            manifest.name, manifest.version, session or model.session, max_batch=max_batch, max_queue=max_queue,
            max_rows_per_run=max_rows_per_run, metrics=ServiceMetrics(self.registry),
            initial_step_s=model.warm_step_s, load_wait_s=load_wait_s, lanes=lanes,
        )
        self.scheduler.start()

    def ticket(self, text: str, *, max_steps: int, min_steps: int = 1, threshold: float = NEVER_HALT,
               limits: list[TimeLimit] | None = None, stream: bool = False, arrived_idle: bool = False,
               batch_call: object = None) -> Ticket:
        assert isinstance(self.model.codec, TextCodec)
        budget = StepBudget(max_steps=max_steps, min_steps=min_steps, halt_threshold=threshold)
        return Ticket(self.model.codec.tokenize(text), budget, arrival=time.monotonic(), limits=limits or [],
                      stream=stream, arrived_idle=arrived_idle, batch_call=batch_call)

    def submit(self, ticket: Ticket) -> Ticket:
        self.scheduler.submit(ticket)
        return ticket

    def sample(self, name: str, **labels: str) -> float:
        name_label = {"model": self.scheduler.name}
        return self.registry.get_sample_value(name, {**name_label, **labels}) or 0.0

    def gauges(self) -> tuple[float, float]:
        version = {"version": self.scheduler.version}
        return self.sample("trm_inflight_requests", **version), self.sample("trm_queued_requests", **version)


async def _run_alone(harness: Harness, texts, **budget) -> list[StepResult]:
    return [await harness.submit(harness.ticket(text, **budget)).finished for text in texts]


async def _run_together(harness: Harness, texts, **budget) -> list[StepResult]:
    tickets = [harness.submit(harness.ticket(text, **budget)) for text in texts]
    return list(await asyncio.gather(*(t.finished for t in tickets)))


@pytest.mark.parametrize("budget", [{"max_steps": 6}, {"max_steps": 6, "min_steps": 3, "threshold": 0.001}])
async def test_batched_results_equal_unbatched_results(text_model: LoadedModel, budget):
    harness = Harness(text_model)
    alone = await _run_alone(harness, TEXTS, **budget)
    batches_before = harness.sample("trm_batch_size_count")
    rows_before = harness.sample("trm_batch_size_sum")
    together = await _run_together(harness, TEXTS, **budget)
    batch_steps = harness.sample("trm_batch_size_count") - batches_before
    assert batch_steps == together[0].step  # one batched step per supervision step, for all ten
    assert harness.sample("trm_batch_size_sum") - rows_before == len(TEXTS) * batch_steps
    for one, batched in zip(alone, together, strict=True):
        assert (batched.step, batched.halt_reason) == (one.step, one.halt_reason)
        np.testing.assert_allclose(batched.logits, one.logits, rtol=0, atol=1e-5)
        assert batched.halt_probability == pytest.approx(one.halt_probability, abs=1e-6)
    assert {r.halt_reason for r in alone} == {
        HaltReason.MAX_STEPS if "threshold" not in budget else HaltReason.HALTED
    }
    await harness.scheduler.close()


class ThreadRecordingSession:
    """A model's real StepSession that records which thread ran each call."""

    def __init__(self, session: StepSession) -> None:
        self._session = session
        self.threads: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def run(self, tokens, y, z, handle=None):
        self.threads.append(threading.get_ident())
        return self._session.run(tokens, y, z, handle)


async def test_a_lone_request_whose_call_found_the_server_idle_steps_on_the_event_loop_thread(
    text_model: LoadedModel,
):
    """The idle fast path: the first step of a lone request that arrived at an idle server runs on the loop's
    own thread, later steps and batched steps on the model's thread, with the same answers."""
    session = ThreadRecordingSession(text_model.session)
    harness = Harness(text_model, session=session)
    loop_thread = threading.get_ident()
    alone = await harness.submit(harness.ticket(TEXTS[0], max_steps=3, arrived_idle=True)).finished
    assert session.threads[0] == loop_thread and loop_thread not in session.threads[1:]
    session.threads.clear()
    together = await _run_together(harness, TEXTS[:2], max_steps=3)
    assert len(session.threads) == 3 and loop_thread not in session.threads  # one batched call per step
    assert (together[0].step, together[0].halt_reason) == (alone.step, alone.halt_reason)
    np.testing.assert_allclose(together[0].logits, alone.logits, rtol=0, atol=1e-5)
    await harness.scheduler.close()


@pytest.mark.parametrize("threads", [2, 1], ids=["threaded-session", "one-thread-session"])
async def test_a_model_with_lanes_runs_a_steps_calls_side_by_side_with_the_same_answers(
    text_model: LoadedModel, text_bundle: Path, threads: int
):
    """A heavy model with two lanes on a one-thread session, its own session on `threads` threads (with one,
    the lanes' session itself, as where more threads made no step faster): a lone request's step runs on its
    own session; a step of ten requests runs as two calls side by side on the lane session, on two threads
    other than the loop's; the answers are those of the requests alone."""
    manifest = text_model.bundle.manifest
    lane = ThreadRecordingSession(StepSession(text_bundle / text_model.onnx_file, manifest,
                                              SessionSettings(intra_op_threads=1)))  # fmt: skip
    session = lane if threads == 1 else ThreadRecordingSession(
        StepSession(text_bundle / text_model.onnx_file, manifest, SessionSettings(intra_op_threads=threads)))
    harness = Harness(text_model, session=session, lanes=Lanes(lane, 2))  # type: ignore[arg-type]
    alone = await _run_alone(harness, TEXTS, max_steps=3)
    assert len(session.threads) == 3 * len(TEXTS) and (session is lane or not lane.threads)
    lane.threads.clear()
    together = await _run_together(harness, TEXTS, max_steps=3)
    assert len(lane.threads) == 3 * 2 and len(set(lane.threads)) == 2  # two calls of five rows per step
    assert threading.get_ident() not in lane.threads
    for one, batched in zip(alone, together, strict=True):
        assert (batched.step, batched.halt_reason) == (one.step, one.halt_reason)
        np.testing.assert_allclose(batched.logits, one.logits, rtol=0, atol=1e-5)
    await harness.scheduler.close()


async def test_a_slow_hand_over_does_not_turn_the_fast_path_off(text_model: LoadedModel):
    """Batched steps that take long from hand-over to result (a loaded machine) leave a lone request's step
    as short as it was: it still runs on the event loop thread."""
    session = ThreadRecordingSession(text_model.session)
    harness = Harness(text_model, session=session)
    harness.scheduler._executor = SlowHandOver(delay_s=INLINE_STEP_S * 3)
    await _run_together(harness, TEXTS[:2], max_steps=4)
    steps = harness.sample("trm_step_seconds_count")
    assert harness.sample("trm_step_seconds_sum") / steps > INLINE_STEP_S  # the wall time includes the hand-over
    session.threads.clear()
    await harness.submit(harness.ticket(TEXTS[0], max_steps=1, arrived_idle=True)).finished
    assert session.threads == [threading.get_ident()]
    await harness.scheduler.close()


async def test_a_lone_request_whose_call_did_not_find_the_server_idle_goes_to_the_models_thread(
    text_model: LoadedModel,
):
    """Alone in an idle model but not at an idle server (other calls in flight, or one ended just before: most
    likely more wait in gRPC): its step runs on the model's thread, so that the loop stays free for them."""
    session = ThreadRecordingSession(text_model.session)
    harness = Harness(text_model, session=session)
    await harness.submit(harness.ticket(TEXTS[0], max_steps=1, arrived_idle=False)).finished
    await harness.submit(harness.ticket(TEXTS[1], max_steps=1, arrived_idle=True)).finished
    assert session.threads[0] != threading.get_ident() and session.threads[1] == threading.get_ident()
    await harness.scheduler.close()


async def test_a_step_runs_as_length_sorted_calls_of_bounded_rows(
    long_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
):
    """Ten requests, at most 4 rows per ONNX Runtime call: 3 calls per step, shortest inputs first, each
    trimmed to its own longest input (multiples of the bundle's 4-token pooling), same answers as alone."""
    texts = [" ".join(["word"] * (1 + (7 * i) % 13)) for i in range(10)]
    alone = await _run_alone(Harness(long_model), texts, max_steps=2)
    session, calls = long_model.session, []
    real_run = session.run
    monkeypatch.setattr(session, "run", lambda tokens, y, z, handle=None: calls.append(tokens.shape)
                        or real_run(tokens, y, z, handle))
    together = await _run_together(Harness(long_model, max_rows_per_run=4), texts, max_steps=2)
    assert [rows for rows, _ in calls] == [4, 4, 2, 4, 4, 2]
    lengths = [length for _, length in calls[:3]]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1] and all(n % 4 == 0 for n in lengths)
    for one, batched in zip(alone, together, strict=True):
        np.testing.assert_allclose(batched.logits, one.logits, rtol=0, atol=1e-5)


async def test_a_short_request_leaves_the_batch_while_a_long_one_keeps_stepping(long_model: LoadedModel):
    harness = Harness(long_model)
    long = harness.submit(harness.ticket("a long question", max_steps=400, stream=True))
    while (await long.next_update()).step < 3:
        pass
    late = harness.submit(harness.ticket("a quick one", max_steps=2))
    result = await late.finished
    assert result.step == 2 and result.halt_reason == HaltReason.MAX_STEPS
    assert not long.finished.done() and 3 < long.steps_done < 400  # admitted mid-flight, released first
    bucket = "trm_batch_size_bucket"
    pairs = harness.sample(bucket, le="2.5") - harness.sample(bucket, le="1.5")
    assert pairs == 2  # the quick request's two steps ran batched with the long one
    harness.scheduler.cancel(long)
    await harness.scheduler.close()


async def test_batch_size_never_exceeds_max_batch_and_all_requests_finish(text_model: LoadedModel):
    harness = Harness(text_model, max_batch=3, max_queue=10)
    results = await _run_together(harness, TEXTS, max_steps=4)
    assert all(r.step == 4 for r in results)
    total = harness.sample("trm_batch_size_count")
    assert harness.sample("trm_batch_size_bucket", le="4.5") == total
    assert harness.sample("trm_batch_size_bucket", le="2.5") < total  # batches of 3 did happen
    await harness.scheduler.close()


async def test_a_full_queue_is_refused_at_once(long_model: LoadedModel):
    harness = Harness(long_model, max_batch=1, max_queue=1)
    first = harness.submit(harness.ticket("one", max_steps=5000))
    for _ in range(10_000):  # until the first is in the batch, running (10 s at most)
        if harness.gauges()[0]:
            break
        await asyncio.sleep(0.001)
    second = harness.submit(harness.ticket("two", max_steps=5000))
    expected = ("at capacity: it holds 2 requests at once (--max-batch-size 1 plus --max-queue 1), 1 in its running "
                "step and 1 waiting for the next; retry with backoff")
    with pytest.raises(QueueFull, match=re.escape(expected)):
        harness.submit(harness.ticket("three", max_steps=5000))
    harness.scheduler.cancel(first)
    harness.scheduler.cancel(second)
    await harness.scheduler.close()


async def test_one_callers_batch_jobs_leave_the_last_batch_of_places_to_other_calls(long_model: LoadedModel):
    """QA: a ReasonBatch of 256 Sudoku grids and one of 64 from one caller took a model's 64 + 256 places, and
    every other caller was refused RESOURCE_EXHAUSTED for about 6 s, until they drained. A call's further requests
    now fill at most --max-queue places; the last --max-batch-size go to other calls' first requests."""
    harness = Harness(long_model, max_batch=2, max_queue=4)
    job, other_job = object(), object()
    taken = []
    for index in range(8):
        try:
            taken.append(harness.submit(harness.ticket(f"job {index}", max_steps=5000, batch_call=job)))
        except QueueFull as refused:
            message = str(refused)
    assert len(taken) == 4  # --max-queue places
    assert message == ("model 'svc-long' holds 4 requests, 4 of them this call's: a call's further requests are "
                       "taken while it holds fewer than 4 (--max-queue), the last 2 places (--max-batch-size) being "
                       "kept for other calls; retry the rest with backoff")
    taken.append(harness.submit(harness.ticket("other job 0", max_steps=5000, batch_call=other_job)))
    with pytest.raises(QueueFull, match="5 requests, 1 of them this call's"):
        harness.submit(harness.ticket("other job 1", max_steps=5000, batch_call=other_job))
    lone = harness.submit(harness.ticket("a lone call", max_steps=3))
    with pytest.raises(QueueFull, match="at capacity: it holds 6 requests at once"):
        harness.submit(harness.ticket("one too many", max_steps=3))
    for ticket in taken:
        harness.scheduler.cancel(ticket)
    assert (await lone.finished).step == 3
    await harness.scheduler.close()


async def test_a_request_that_could_not_start_before_its_deadline_is_refused_at_once(long_model: LoadedModel):
    harness = Harness(long_model, max_batch=1, max_queue=8)
    for _ in range(10):  # the scheduler learns that requests of this model run about 50 steps
        await harness.submit(harness.ticket("warm", max_steps=50)).finished
    running = harness.submit(harness.ticket("running", max_steps=5000))
    wait = harness.scheduler.expected_wait_s()
    assert wait > 20 * harness.scheduler.expected_step_s
    soon = [TimeLimit(time.monotonic() + wait / 2, HaltReason.DEADLINE)]
    with pytest.raises(QueueFull, match="past its deadline or time budget"):
        harness.submit(harness.ticket("late", max_steps=5, limits=soon))
    later = [TimeLimit(time.monotonic() + 60, HaltReason.DEADLINE)]
    queued = harness.submit(harness.ticket("in time", max_steps=5, limits=later))
    harness.scheduler.cancel(running)
    assert (await queued.finished).step == 5
    await harness.scheduler.close()


async def test_requests_that_came_together_are_expected_to_leave_together(text_model: LoadedModel):
    """A full batch whose requests started together (a ReasonBatch) frees no slot until they have run their
    steps: a newcomer's expected wait counts their remaining steps, not one step's share of them, and a
    deadline that wait would pass is refused at once (it was admitted, and timed out waiting)."""
    harness = Harness(text_model, max_batch=4, max_queue=8)
    harness.scheduler._executor = SlowHandOver(delay_s=0.2)  # steps long enough to look at one while it runs
    await _run_together(harness, TEXTS[:4], max_steps=6)  # the scheduler learns: requests run 6 steps
    running = [harness.submit(harness.ticket(text, max_steps=6, stream=True)) for text in TEXTS[:4]]
    for ticket in running:
        assert (await ticket.next_update()).step == 1
    step_s = harness.scheduler.expected_step_s  # a full batch's, measured
    assert harness.scheduler.expected_wait_s() > 3.9 * step_s  # 5 steps to go, less the running one's part
    soon = [TimeLimit(time.monotonic() + 2.8 * step_s, HaltReason.DEADLINE)]
    with pytest.raises(QueueFull, match="past its deadline"):
        harness.submit(harness.ticket("late", max_steps=1, limits=soon))
    for ticket in running:
        harness.scheduler.cancel(ticket)
    await harness.scheduler.close()


async def test_a_lone_request_after_a_burst_plans_with_a_lone_steps_time(text_model: LoadedModel):
    """Step times are kept by batch size: slow steps of a full batch leave a lone request's next step planned
    at a lone step's time (one smoothed time for all stopped lone requests after one step, their deadline
    mostly unused)."""
    harness = Harness(text_model, max_batch=8)
    own_executor = harness.scheduler._executor
    harness.scheduler._executor = SlowHandOver(delay_s=0.15)
    await _run_together(harness, TEXTS[:8], max_steps=6)
    harness.scheduler._executor = own_executor
    deadline = [TimeLimit(time.monotonic() + 0.12, HaltReason.DEADLINE)]
    result = await harness.submit(harness.ticket(TEXTS[0], max_steps=5, limits=deadline)).finished
    assert (result.step, result.halt_reason) == (5, HaltReason.MAX_STEPS)
    await harness.scheduler.close()


async def test_cancellation_frees_the_slot_and_the_gauges_at_once(long_model: LoadedModel):
    harness = Harness(long_model, max_batch=1, max_queue=4)
    running = harness.submit(harness.ticket("running", max_steps=5000, stream=True))
    await running.next_update()
    queued = harness.submit(harness.ticket("queued", max_steps=5000))
    assert harness.gauges() == (1.0, 1.0)
    harness.scheduler.cancel(queued)
    assert harness.gauges() == (1.0, 0.0)
    harness.scheduler.cancel(running)
    assert harness.gauges() == (0.0, 0.0)
    replacement = harness.submit(harness.ticket("next", max_steps=2))
    assert (await replacement.finished).step == 2
    await harness.scheduler.close()


class HeldSession:
    """A model's real StepSession whose call number `hold_call` waits, before it runs, until `release` is
    set: the test acts while the model's thread is inside that call. Counts finished and stopped calls."""

    def __init__(self, session: StepSession, hold_call: int) -> None:
        self._session = session
        self._hold_call = hold_call
        self._calls = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.finished = 0
        self.stopped = 0

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def run(self, tokens, y, z, handle=None):
        self._calls += 1
        if self._calls == self._hold_call:
            self.holding.set()
            self.release.wait(timeout=60)
        try:
            outputs = self._session.run(tokens, y, z, handle)
        except StepStopped:
            self.stopped += 1
            raise
        self.finished += 1
        return outputs


async def _six_requests_held_in_their_second_step(model: LoadedModel) -> tuple[Harness, HeldSession, list[Ticket]]:
    """Six never-halting requests of two steps in calls of two rows (three calls a step); returns once their
    first step finished and the model's thread holds the first call of the second. (Two steps, so that no
    third step's calls can finish while a test counts the second's.)"""
    held = HeldSession(model.session, hold_call=4)
    harness = Harness(model, max_rows_per_run=2, session=held)
    tickets = [harness.submit(harness.ticket("the same question", max_steps=2, stream=True)) for _ in range(6)]
    assert [(await t.next_update()).step for t in tickets] == [1] * 6
    await asyncio.to_thread(held.holding.wait, 60)
    return harness, held, tickets


async def test_a_step_whose_requests_were_all_cancelled_stops_and_frees_the_model(long_model: LoadedModel):
    harness, held, tickets = await _six_requests_held_in_their_second_step(long_model)
    for ticket in tickets:
        harness.scheduler.cancel(ticket)
    held.release.set()
    after = harness.submit(harness.ticket("next", max_steps=1))
    assert (await after.finished).step == 1
    assert (held.finished, held.stopped) == (3 + 1, 3)  # step 1 and the next request ran; step 2 was stopped
    assert all(t.steps_done == 1 for t in tickets)
    assert harness.sample("trm_step_seconds_count") == 2  # a stopped step is not timed
    await harness.scheduler.close()


async def test_only_calls_whose_requests_were_all_cancelled_stop(long_model: LoadedModel):
    harness, held, tickets = await _six_requests_held_in_their_second_step(long_model)
    for ticket in tickets[:3]:  # both rows of the held first call, one row of the second
        harness.scheduler.cancel(ticket)
    held.release.set()
    assert [(await t.next_update()).step for t in tickets[3:]] == [2] * 3
    assert (held.finished, held.stopped) == (3 + 2, 1)
    assert [t.steps_done for t in tickets] == [1, 1, 1, 2, 2, 2]
    for ticket in tickets[3:]:
        harness.scheduler.cancel(ticket)
    await harness.scheduler.close()


async def test_cancelling_a_step_that_runs_in_lanes_stops_its_calls(long_model: LoadedModel, long_bundle: Path):
    """A heavy model's step of six requests in calls of two rows runs as three calls over two lanes; with the
    first call of the second step held and every request cancelled, the held call is stopped, none of the
    requests gets a second step, and the model serves the next request."""
    manifest = long_model.bundle.manifest
    threaded, single = (StepSession(long_bundle / long_model.onnx_file, manifest,
                                    SessionSettings(intra_op_threads=threads)) for threads in (2, 1))  # fmt: skip
    held = HeldSession(single, hold_call=4)
    harness = Harness(long_model, max_rows_per_run=2, session=threaded, lanes=Lanes(held, 2))  # type: ignore[arg-type]
    tickets = [harness.submit(harness.ticket("the same question", max_steps=2, stream=True)) for _ in range(6)]
    assert [(await t.next_update()).step for t in tickets] == [1] * 6
    await asyncio.to_thread(held.holding.wait, 60)
    for ticket in tickets:
        harness.scheduler.cancel(ticket)
    held.release.set()
    after = harness.submit(harness.ticket("next", max_steps=1))
    assert (await after.finished).step == 1  # a step of one call: on the two-thread session
    assert held.stopped >= 1 and held.finished + held.stopped == 3 + 3
    assert all(t.steps_done == 1 for t in tickets)
    await harness.scheduler.close()


def test_a_stopped_handle_ends_a_call_that_is_running(grid_model: LoadedModel):
    session = grid_model.session
    rows = 512  # a call of seconds on a shared CPU core, far longer than the 20 ms before the stop
    tokens = np.zeros((rows, session.sequence_length), dtype=np.int64)
    state = session.initial_state(rows)
    handle, started = RunHandle(), threading.Event()

    def run():
        started.set()
        return session.run(tokens, state, state, handle)

    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(run)
        started.wait(timeout=60)
        time.sleep(0.02)
        handle.stop()
        with pytest.raises(StepStopped):
            call.result(timeout=60)
    assert session.run(tokens[:1], state[:1], state[:1], RunHandle()).logits.shape[0] == 1  # still usable


async def test_time_limits_return_the_anytime_answer_with_their_reason(long_model: LoadedModel):
    harness = Harness(long_model)
    now = time.monotonic()
    budget = harness.submit(harness.ticket(
        "budget", max_steps=5000, limits=[TimeLimit(now + 0.3, HaltReason.BUDGET)]))
    deadline = harness.submit(harness.ticket(
        "deadline", max_steps=5000, limits=[TimeLimit(now + 0.2, HaltReason.DEADLINE)]))
    by_budget, by_deadline = await budget.finished, await deadline.finished
    assert by_budget.halt_reason == HaltReason.BUDGET and 1 <= by_budget.step < 5000
    assert by_deadline.halt_reason == HaltReason.DEADLINE and 1 <= by_deadline.step <= by_budget.step
    assert by_budget.logits.shape == (len(long_model.bundle.manifest.labels),)
    await harness.scheduler.close()


async def test_shutdown_stops_running_requests_with_their_best_answer(long_model: LoadedModel):
    harness = Harness(long_model)
    ticket = harness.submit(harness.ticket("stop me", max_steps=5000, stream=True))
    await ticket.next_update()
    harness.scheduler.shutdown_by(time.monotonic() + 0.1)
    result = await ticket.finished
    assert result.halt_reason == HaltReason.SHUTDOWN and 1 <= result.step < 5000
    await harness.scheduler.close()


async def test_at_shutdown_requests_that_cannot_start_in_time_fail_alone_and_the_started_answer(
        long_model: LoadedModel):
    """Probe: a ReasonBatch of 256 Sudoku grids at SIGTERM: its 61 unstarted requests still ran their first steps past
    the stop, so gRPC cancelled the call at the grace period's end and its 195 ready answers were lost. Now the
    requests that cannot start before the stop fail (retry elsewhere) and the call can answer in time."""
    harness = Harness(long_model, max_batch=2, max_queue=8)
    harness.scheduler._executor = SlowHandOver(delay_s=0.1)  # steps of 0.1 s
    job = object()
    tickets = [harness.submit(harness.ticket(f"grid {i}", max_steps=5000, batch_call=job)) for i in range(6)]
    while not tickets[0].steps_done:
        await asyncio.sleep(0.01)
    stop_at = time.monotonic() + 0.35
    harness.scheduler.shutdown_by(stop_at)
    outcomes = await asyncio.gather(*(ticket.finished for ticket in tickets), return_exceptions=True)
    answered = [o for o in outcomes if isinstance(o, StepResult)]
    assert len(answered) >= 2 and {o.halt_reason for o in answered} == {HaltReason.SHUTDOWN}
    failed = [o for o in outcomes if not isinstance(o, StepResult)]
    assert failed and all(isinstance(o, SchedulerClosed) and "the server is stopping" in str(o) for o in failed)
    assert time.monotonic() < stop_at + 0.15  # no step of an unstarted request ran past the stop
    await harness.scheduler.close()


async def test_close_refuses_new_requests_and_lets_submitted_ones_finish(text_model: LoadedModel):
    harness = Harness(text_model)
    submitted = harness.submit(harness.ticket("finish me", max_steps=8))
    await harness.scheduler.close()
    assert submitted.finished.done() and submitted.finished.result().step == 8
    with pytest.raises(SchedulerClosed):
        harness.submit(harness.ticket("too late", max_steps=1))


async def test_a_failing_step_fails_its_batch_and_the_loop_keeps_serving(text_model: LoadedModel):
    harness = Harness(text_model)
    poisoned = harness.ticket("poison", max_steps=2)
    poisoned.tokens = np.full_like(poisoned.tokens, 10**6)  # out of the embedding table: ONNX Runtime raises
    harness.submit(poisoned)
    with pytest.raises(Exception, match="out of"):
        await poisoned.finished
    healthy = harness.submit(harness.ticket("fine", max_steps=2))
    assert (await healthy.finished).step == 2
    assert harness.gauges() == (0.0, 0.0)
    await harness.scheduler.close()


async def test_under_load_the_step_cap_drops_while_requests_queue_and_rises_as_they_drain(text_model: LoadedModel):
    harness = Harness(text_model, max_batch=2, max_queue=16, load_wait_s=1e-6)  # any queue: a cap of 1 step
    tickets = [harness.submit(harness.ticket(text, max_steps=6, min_steps=2)) for text in TEXTS]
    assert harness.scheduler.load_step_cap() == 1
    results = [await t.finished for t in tickets]
    loaded = [r for r in results if r.halt_reason is HaltReason.LOAD]
    assert loaded and all(r.step == 2 for r in loaded)  # never below min_steps
    assert [(r.halt_reason, r.step) for r in results[-2:]] == [(HaltReason.MAX_STEPS, 6)] * 2  # queue drained
    assert harness.scheduler.load_step_cap() is None
    await harness.scheduler.close()


async def test_the_cap_follows_the_wait_model_and_is_off_without_a_bound(text_model: LoadedModel):
    harness = Harness(text_model, max_batch=4, max_queue=64, load_wait_s=0.5)
    full_batch_s = 4 * harness.scheduler.expected_step_s  # not measured yet: a lone step's time, 4 rows
    tickets = [harness.submit(harness.ticket(text, max_steps=6)) for text in TEXTS[:4]]
    assert harness.scheduler.load_step_cap() is None  # waiting, but each will have a slot at the next step
    tickets += [harness.submit(harness.ticket(text, max_steps=6)) for text in TEXTS * 2]
    overflow = len(tickets) - 4  # nothing admitted yet (the loop has not run): all but 4 must wait longer
    assert harness.scheduler.load_step_cap() == max(1, int(0.5 * 4 / ((overflow + 1) * full_batch_s)))
    for ticket in tickets:
        harness.scheduler.cancel(ticket)
    await harness.scheduler.close()
    unbounded = Harness(text_model, max_batch=2, max_queue=16)
    results = await _run_together(unbounded, TEXTS, max_steps=3)
    assert all((r.halt_reason, r.step) == (HaltReason.MAX_STEPS, 3) for r in results)
    await unbounded.scheduler.close()


async def test_a_batch_jobs_own_queue_does_not_lower_its_step_cap(text_model: LoadedModel):
    """The requests of one ReasonBatch wait behind each other by their caller's choice: that is no load on
    anyone else, and they run the steps they would run alone (a job of 256 Sudoku grids ran 192 of them one
    step, and solved 4)."""
    harness = Harness(text_model, max_batch=2, max_queue=16, load_wait_s=1e-6)  # any load: a cap of 1 step
    job = object()
    tickets = [harness.submit(harness.ticket(text, max_steps=6, min_steps=2, batch_call=job)) for text in TEXTS]
    results = [await t.finished for t in tickets]
    assert all((r.halt_reason, r.step) == (HaltReason.MAX_STEPS, 6) for r in results)
    lone = [harness.submit(harness.ticket(text, max_steps=6, min_steps=2)) for text in TEXTS]
    assert {(await t.finished).halt_reason for t in lone} >= {HaltReason.LOAD}  # lone calls waiting are load
    await harness.scheduler.close()


async def test_a_lone_call_gets_the_next_free_slot_before_a_batch_jobs_own_queue(text_model: LoadedModel):
    harness = Harness(text_model, max_batch=2, max_queue=16)
    job = object()
    queued = [harness.submit(harness.ticket(text, max_steps=4, batch_call=job)) for text in TEXTS[:6]]
    lone = harness.submit(harness.ticket(TEXTS[6], max_steps=1))
    await asyncio.gather(*(t.finished for t in [*queued, lone]))
    admitted = {id(t): t.arrival + t.queue_wait_s for t in [*queued, lone]}
    # the job's first two leave together: the lone call takes one of their slots, not the job's sixth
    assert admitted[id(lone)] < admitted[id(queued[3])] < admitted[id(queued[5])]
    await harness.scheduler.close()


async def test_the_expected_wait_of_a_queue_counts_full_batches(text_model: LoadedModel):
    """200 requests of one job queued before the loop admits any: the 201st waits for two full batches to
    turn over, and a new lone call for none (it takes a slot of the first batch); it was 137 steps, each
    request ahead counted as a batch of its own."""
    harness = Harness(text_model, max_batch=64, max_queue=256)
    job = object()
    tickets = [harness.submit(harness.ticket("queued", max_steps=1, batch_call=job)) for _ in range(200)]
    step_s = harness.scheduler.expected_step_s  # a full batch's
    assert harness.scheduler.expected_wait_s(job) == pytest.approx(3 * step_s)  # 1 step each: rounds 2 + its own
    assert harness.scheduler.expected_wait_s() == 0.0
    await asyncio.gather(*(t.finished for t in tickets))
    await harness.scheduler.close()


async def _steps_of(ticket: Ticket) -> list[StepResult]:
    """Every step a streaming ticket publishes, up to its final one."""
    steps = [await ticket.next_update()]
    while not steps[-1].final:
        steps.append(await ticket.next_update())
    return steps


async def test_a_newcomer_takes_a_parked_requests_slot_and_the_parked_one_goes_on_as_alone(text_model: LoadedModel):
    """A batch job fills the batch; a lone call with a deadline shorter than the job's remaining steps is
    not refused: it takes the slot of a job request, which is parked, resumes when a slot frees, and ends
    with the steps and answer it gets alone."""
    alone = await _run_alone(Harness(text_model), TEXTS[:1], max_steps=20)
    harness = Harness(text_model, max_batch=8, max_queue=8, load_wait_s=0.3)  # a step cap of 24: none here
    harness.scheduler._executor = SlowHandOver(delay_s=0.05)
    job = object()
    streams = [harness.submit(harness.ticket(TEXTS[0], max_steps=20, stream=True, batch_call=job))
               for _ in range(8)]
    steps = [asyncio.ensure_future(_steps_of(ticket)) for ticket in streams]
    while streams[0].steps_done < 3:
        await asyncio.sleep(0.01)
    deadline = [TimeLimit(time.monotonic() + 0.6, HaltReason.DEADLINE)]  # the job has 17 steps of 50 ms to go
    lone = harness.submit(harness.ticket(TEXTS[1], max_steps=2, limits=deadline))
    assert (await lone.finished).halt_reason is HaltReason.MAX_STEPS
    assert not any(task.done() for task in steps)  # it finished while the job ran
    assert harness.sample("trm_requests_parked_total") == 1
    for published in await asyncio.gather(*steps):
        assert [s.step for s in published] == list(range(1, 21))  # the parked one too: no step lost or repeated
        assert published[-1].halt_reason is HaltReason.MAX_STEPS
        np.testing.assert_allclose(published[-1].logits, alone[0].logits, rtol=0, atol=1e-5)
    await harness.scheduler.close()


async def test_a_parked_request_ends_at_its_time_budget_with_its_last_step(text_model: LoadedModel):
    harness = Harness(text_model, max_batch=8, max_queue=8, load_wait_s=0.3)
    harness.scheduler._executor = SlowHandOver(delay_s=0.05)
    job = object()
    budget = [TimeLimit(time.monotonic() + 0.6, HaltReason.BUDGET)]
    first = harness.submit(harness.ticket(TEXTS[0], max_steps=20, limits=budget, batch_call=job))
    while first.steps_done < 2:
        await asyncio.sleep(0.01)
    rest = [harness.submit(harness.ticket(text, max_steps=20, batch_call=job)) for text in TEXTS[1:8]]
    while rest[0].steps_done < 1:
        await asyncio.sleep(0.01)
    lone = harness.submit(harness.ticket(TEXTS[8], max_steps=20))

    async def parked() -> None:  # at the next step boundary: it has run the most steps of the job
        while first not in list(harness.scheduler._waiting):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(parked(), timeout=5)
    steps_when_parked = first.steps_done
    ended = await first.finished
    assert (ended.halt_reason, ended.step) == (HaltReason.BUDGET, steps_when_parked)
    assert harness.sample("trm_requests_parked_total") == 1
    assert not lone.finished.done()  # it ended while parked, the batch still full
    assert ended.elapsed_ms <= 600
    await asyncio.gather(lone.finished, *(t.finished for t in rest))
    await harness.scheduler.close()


async def test_only_a_call_that_parking_seats_is_told_it_starts_at_the_next_step(text_model: LoadedModel):
    """Parking seats a call's first request only: the second job's other requests, with a deadline the job's
    steps would pass, are refused at once (they were admitted, told one step, and waited 2 s)."""
    harness = Harness(text_model, max_batch=8, max_queue=64, load_wait_s=0.3)
    harness.scheduler._executor = SlowHandOver(delay_s=0.05)
    job, second = object(), object()
    running = [harness.submit(harness.ticket(text, max_steps=40, batch_call=job)) for text in TEXTS[:8]]
    while running[0].steps_done < 2:
        await asyncio.sleep(0.01)
    first = harness.submit(harness.ticket(TEXTS[8], max_steps=40, batch_call=second))
    soon = [TimeLimit(time.monotonic() + 0.5, HaltReason.DEADLINE)]
    with pytest.raises(QueueFull, match="past its deadline"):
        harness.submit(harness.ticket(TEXTS[9], max_steps=40, limits=soon, batch_call=second))
    await asyncio.gather(first.finished, *(t.finished for t in running))
    await harness.scheduler.close()


async def test_callers_that_parking_seats_are_no_load_for_the_step_cap(text_model: LoadedModel):
    """Three lone calls during a job of 8 are seated by parking: the job's requests run their 40 steps (the
    cap counted the three as waiting and cut all 8 at step 11)."""
    harness = Harness(text_model, max_batch=8, max_queue=16, load_wait_s=0.3)
    harness.scheduler._executor = SlowHandOver(delay_s=0.05)
    job = object()
    running = [harness.submit(harness.ticket(text, max_steps=40, batch_call=job)) for text in TEXTS[:8]]
    while running[0].steps_done < 10:
        await asyncio.sleep(0.01)
    lone = [harness.submit(harness.ticket(text, max_steps=3)) for text in TEXTS[:3]]
    results = await asyncio.gather(*(t.finished for t in running))
    assert {(r.halt_reason, r.step) for r in results} == {(HaltReason.MAX_STEPS, 40)}
    assert {r.halt_reason for r in await asyncio.gather(*(t.finished for t in lone))} == {HaltReason.MAX_STEPS}
    assert harness.sample("trm_requests_parked_total") >= 1
    await harness.scheduler.close()


async def test_the_step_cap_is_one_for_the_whole_step_and_counts_the_slots_it_frees(text_model: LoadedModel):
    """Two of four requests end at step 1 and free their slots for the two waiting calls: no caller waits past
    the boundary, so the other two are not capped. The cap was computed anew for each ONNX Runtime call of the
    step, before the requests of later calls had left: the first call's rows were cut at step 1."""
    harness = Harness(text_model, max_batch=4, max_queue=16, max_rows_per_run=2, load_wait_s=1e-6)
    going_on = [harness.submit(harness.ticket(text, max_steps=6)) for text in ("hi", "yo")]  # shortest: first call
    ending = [harness.submit(harness.ticket(text, max_steps=1))
              for text in ("please say thanks in german to my friend", "what time is it in tokyo right now")]
    waiting = [harness.submit(harness.ticket(text, max_steps=1)) for text in TEXTS[:2]]
    results = await asyncio.gather(*(t.finished for t in [*going_on, *ending, *waiting]))
    steps = [(r.halt_reason, r.step) for r in results]
    assert steps == [(HaltReason.MAX_STEPS, 6)] * 2 + [(HaltReason.MAX_STEPS, 1)] * 4
    await harness.scheduler.close()


async def test_a_request_that_joins_a_full_batch_is_refused_when_its_first_step_cannot_end_in_time(
        text_model: LoadedModel):
    """A lone call parking would seat while the running step has overrun its expected time: its wait reads
    0 ms, yet its first step is a full batch's. It was admitted and ended past its deadline (2 of 4 lone
    Sudoku calls with a 0.5 s deadline during a job of 64, whose steps take 0.5 s); now it is refused at once."""
    harness = Harness(text_model, max_batch=8, max_queue=8, load_wait_s=0.3)
    slow = SlowHandOver(delay_s=0.05)
    harness.scheduler._executor = slow
    job = object()
    running = [harness.submit(harness.ticket(text, max_steps=40, batch_call=job)) for text in TEXTS[:8]]
    while running[0].steps_done < 3:
        await asyncio.sleep(0.01)
    slow.delay_s = 0.5
    while running[0].steps_done < 4 or harness.scheduler.expected_wait_s() > 0:  # a 0.5 s step past its 50 ms
        await asyncio.sleep(0.01)
    too_soon = [TimeLimit(time.monotonic() + 0.04, HaltReason.DEADLINE)]  # shorter than a full batch's step
    with pytest.raises(QueueFull, match=r"takes about \d+ ms in a batch of 8"):
        harness.submit(harness.ticket(TEXTS[8], max_steps=2, limits=too_soon))
    slow.delay_s = 0.0
    in_time = [TimeLimit(time.monotonic() + 30, HaltReason.DEADLINE)]
    assert (await harness.submit(harness.ticket(TEXTS[8], max_steps=2, limits=in_time)).finished).step == 2
    for ticket in running:
        harness.scheduler.cancel(ticket)
    await harness.scheduler.close()


async def test_admission_plans_a_first_step_with_the_margin_a_time_limit_plans_the_next_with(text_model: LoadedModel):
    """QA: beside a Sudoku flood, lone calls whose first step was expected to end just before their deadline were
    admitted and 12 of 17 ended DEADLINE_EXCEEDED at the full deadline (admission planned at 1.0x the expected
    step, stopping at STEP_TIME_SAFETY x); now one is refused at once where its first step, planned as the next
    step is, would pass its deadline."""
    harness = Harness(text_model, max_batch=8, max_queue=8)
    harness.scheduler._step_times.observe(4, 0.4)  # a step of 4 to 7 rows: 0.4 s
    far = [TimeLimit(time.monotonic() + 60, HaltReason.DEADLINE)]
    admitted = [harness.submit(harness.ticket(text, max_steps=1, limits=far)) for text in TEXTS[:3]]
    just_past = [TimeLimit(time.monotonic() + 0.5, HaltReason.DEADLINE)]  # 0.4 s fits, 1.5 x 0.4 s does not
    with pytest.raises(QueueFull, match=r"takes about 400 ms in a batch of 4"):
        harness.submit(harness.ticket(TEXTS[3], max_steps=1, limits=just_past))
    with_room = [TimeLimit(time.monotonic() + 0.7, HaltReason.DEADLINE)]
    admitted.append(harness.submit(harness.ticket(TEXTS[3], max_steps=1, limits=with_room)))
    assert [result.step for result in await asyncio.gather(*(ticket.finished for ticket in admitted))] == [1] * 4
    await harness.scheduler.close()


async def test_a_request_is_refused_where_the_batch_it_joins_would_end_its_first_step_too_late(
        text_model: LoadedModel):
    """Probe: 64 Sudoku calls of a 0.5 s deadline sent at once (a step alone about 15 ms, of 64 rows about 1 s)
    were all admitted to free slots, and 63 of 64 ended DEADLINE_EXCEEDED; now those that would make the batch's
    step end past their deadline are refused at once (RESOURCE_EXHAUSTED: retry), and the others are answered."""
    harness = Harness(text_model, max_batch=8, max_queue=8)
    times = harness.scheduler._step_times
    times.observe(4, 0.4)  # a step of 4 to 7 rows: 0.4 s; of 1 to 3, the warm-up's measured time
    limits = [TimeLimit(time.monotonic() + 0.2, HaltReason.DEADLINE)]
    admitted = [harness.submit(harness.ticket(text, max_steps=1, limits=limits)) for text in TEXTS[:3]]
    with pytest.raises(QueueFull, match=r"takes about 400 ms in a batch of 4, and would end past its deadline"):
        harness.submit(harness.ticket(TEXTS[3], max_steps=1, limits=limits))
    shorter_than_a_step = [TimeLimit(time.monotonic() + times.expected(1) / 2, HaltReason.DEADLINE)]  # caller's to fix
    admitted.append(harness.submit(harness.ticket(TEXTS[3], max_steps=1, limits=shorter_than_a_step)))
    results = await asyncio.gather(*(ticket.finished for ticket in admitted))
    assert [result.step for result in results] == [1, 1, 1, 1]
    await harness.scheduler.close()
