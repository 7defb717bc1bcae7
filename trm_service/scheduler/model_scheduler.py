"""Step-level continuous batching for one model version.

One asyncio task per model version loops: admit waiting requests into the batch (up to
max_batch), run ONE supervision step for the whole batch on the model's own executor thread
(ONNX Runtime releases the GIL, so models never wait on each other), hand every request its
step, and release the ones that stopped. A request that needs 2 steps therefore leaves after 2
steps even if it shares the batch with one that needs 16. The step's batch runs as ONNX Runtime
calls of at most max_rows_per_run rows, sorted by input length, each trimmed to its own longest
input when the bundle allows it: memory stays bounded and short inputs run short.

Lanes: a model with a heavy step (runtime/loader.py) has `Lanes`, a one-thread session and a count. A
step of one call runs on the model's session (on every CPU where that is faster); a step of more requests
is cut into at least as many calls as there are lanes, and the calls run side by side on the one-thread
session, one lane per thread (the model's thread and `count - 1` more): its compute-bound calls use every core as
separate runs, which beat one run on every core (Sudoku at 8 and 64 callers: 9-17 % more requests/s,
docs/EXPERIMENTS.md, 2026-12-01, "Sudoku against the plain server").

The idle fast path: the first step of a request whose call found the server idle (no other reasoning
call in flight, none ended just before: `Ticket.arrived_idle`, api/occupancy.py) runs on the event loop
thread itself when one request's step is short (ONNX Runtime's own time per request, a few milliseconds
at most), without the hand-over to the model's thread and back. Every other step, and every step of a
busy model, goes to the model's thread. Either way the step is the same ONNX Runtime call on the same
inputs.

Step times: a step's wall time is smoothed by the batch's size class (scheduler/step_times.py), and every
plan uses the time of the step it is about: a request's next step that of the batch it is in, a wait that of
a full batch.

Waiting: free slots go to the waiting calls in turn, the call with the fewest requests in the batch first
(scheduler/waiting.py: a lone Reason is a call of one, a ReasonBatch's requests one call; with lone calls
only, first come first served). A request that finds no free slot starts when as many requests have left
the batch as get a slot before it, plus one. `expected_wait_s` expects each request in the batch to run the
steps that recent requests which got as far ran (scheduler/step_counts.py), a request that takes a free
slot or a slot freed after them the recent mean, each step a full batch's time, less the part of the
running step already done. Requests that came together (a ReasonBatch) leave together, so a newcomer waits
for their remaining steps, not for one step's share of them.

Places: a model version holds at most max_batch + max_queue requests, in the batch and waiting; a request
of a call that already holds one (a ReasonBatch's after its first) only while it holds fewer than max_queue.
The last max_batch places are thus kept for other calls' first requests, which the turns by call (and
parking) start soon, so one caller's batch jobs cannot shut every other caller out until they drain.

Load-adaptive compute: while more calls with no request in the batch wait than the batch has free slots
(`overflow`, the calls that will not start at the next step boundary, neither in a free slot nor by parking,
below; a ReasonBatch's own queue behind its running requests is not load on anyone else), every request in
the batch runs at most

    cap = max(1, floor(load_wait_s * max_batch / ((overflow + 1) * step_s)))

steps (never fewer than its min_steps), step_s a full batch's: the step count at which a new request
would start within `load_wait_s` if the batch's requests left evenly spread over their steps, as they do
under steady load. The cap is computed once at every step boundary, for all of the step's calls alike, after
the requests that stop for their own reasons have left the batch (their slots go to waiting calls), so it
rises again as the queue drains; a request it stops ends with HaltReason.LOAD. None turns it off.

Parking: the requests of a batch job (a ReasonBatch) leave together, and a batch full of them would hold a
newcomer for all their steps. So turns by call apply inside a full batch too: at a step boundary, a call
with nothing in the batch whose first request has not started and would not start within `load_wait_s` of
its arrival takes a slot of the call with the most requests in the batch, if it has two or more. Of that
call, the request that has run the most steps is parked: it leaves the batch with its state (y, z and its
last step) and waits first among its call's requests for a free slot, where it goes on from the step it had
reached, with the answer it would have had (steps are exact whatever the batch). A lone call is never
parked, so with lone calls only nothing changes. While a request is parked, the step cap and its time
limits apply to it at every step boundary, and one they stop ends with its last step's answer. Off with the
cap (load_wait_s None), and for sequence models, whose requests hold a prefix cache each (one per slot
bounds their memory).

A cancelled request leaves the batch at once. When every request of a call has been cancelled, the
call is stopped (ONNX Runtime's terminate flag, checked between graph nodes) or, not yet started,
skipped: the model's thread is free for the next requests within one graph node, not one step.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog

from trm_bundle.probabilities import sigmoid
from trm_service.cpu_affinity import free_thread
from trm_service.observability.metrics import ServiceMetrics
from trm_service.runtime.session import Lanes, RunHandle, StepOutputs, StepSession, StepStopped
from trm_service.scheduler.halting import HaltReason, TimeLimit, load_cap_reached, stop_reason, time_limit_reason
from trm_service.scheduler.step_counts import StepCounts
from trm_service.scheduler.step_times import StepTimes
from trm_service.scheduler.ticket import StepResult, Ticket
from trm_service.scheduler.waiting import WaitingQueue

_log = structlog.get_logger("trm_service.scheduler")
_SMOOTHING = 0.2
STEP_TIME_SAFETY = 1.5  # a time limit stops a request when the next step, at this many smoothed steps, would pass it
INLINE_STEP_S = 0.002
"""The longest step that may run on the event loop thread, which it holds meanwhile: ONNX Runtime's own
time per request (smoothed), not the batch's wall time, which under load includes the hand-over and
would keep the fast path off once it is off."""


@dataclass(eq=False)
class PlannedCall:
    """One ONNX Runtime call of a step: some of the batch's requests, and the handle that stops the call."""

    tickets: list[Ticket]
    handle: RunHandle = field(default_factory=RunHandle)


class QueueFull(Exception):
    """The model's batch and queue are both full."""


class SchedulerClosed(Exception):
    """The model version is being retired or the server is stopping."""


class ModelScheduler:
    """Runs the supervision steps of every request of one model version, batched step by step."""

    PARKS_REQUESTS = True  # see "Parking" in the module docstring
    # whether a full batch's wait may refuse a request before any request finished and a full batch's step was
    # timed, on the step limits and the step time scaled with the rows (sequence models: no, below)
    REFUSES_ON_PRIORS = True

    def __init__(
        self,
        name: str,
        version: str,
        session: StepSession,
        *,
        max_batch: int,
        max_queue: int,
        max_rows_per_run: int,
        metrics: ServiceMetrics,
        initial_step_s: float,
        load_wait_s: float | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_rows_per_run = max_rows_per_run
        self.load_wait_s = load_wait_s
        self._session = session
        self._batch_size = metrics.batch_size.labels(name)
        self._step_latency = metrics.step_latency.labels(name)
        self._steps_on_loop = metrics.steps_on_loop.labels(name)
        self._queue_wait = metrics.queue_wait.labels(name)
        self._parked = metrics.parked.labels(name)
        self._inflight = metrics.inflight.labels(name, version)
        self._queued = metrics.queued.labels(name, version)
        self._counted = (0, 0)  # (in the batch, queued) as this scheduler last added them to the gauges
        self._step_times = StepTimes(initial_step_s, _SMOOTHING)
        self._step_started: float | None = None  # time.monotonic() when the running step started
        self._request_compute_s = initial_step_s  # smoothed ONNX Runtime seconds per request of a step
        self._step_counts = StepCounts()
        self._active: list[Ticket] = []
        self._waiting = WaitingQueue()
        self._runs: list[PlannedCall] = []  # the calls of the step in flight
        self._wakeup = asyncio.Event()
        self._closing = False
        self._shutdown_at: float | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"step-{name}", initializer=free_thread)
        self._lanes = lanes
        self._lane_executor = None
        if lanes is not None and lanes.count > 1:
            self._lane_executor = ThreadPoolExecutor(max_workers=lanes.count - 1, thread_name_prefix=f"lane-{name}",
                                                     initializer=free_thread)
        self._task: asyncio.Task[None] | None = None

    @property
    def expected_step_s(self) -> float:
        """The expected wall time of the next step: a batch of the requests in it and queued (at least one,
        at most max_batch), what the time limits plan with."""
        return self._step_times.expected(min(self.max_batch, len(self._active) + len(self._waiting)))

    def start(self) -> None:
        """Start the step loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"scheduler-{self.name}")
        self._update_gauges()

    def expected_wait_s(self, call: object = None) -> float:
        """How long a request of `call` (None: a new call) submitted now would wait for its first step (see the
        module docstring)."""
        if len(self._waiting) + len(self._active) < self.max_batch:
            return 0.0
        in_batch = self._in_batch()
        wait = self._departures_wait(self._waiting.ahead_of_new(call, in_batch))
        if self._parks and wait > self.load_wait_s and not in_batch[call] and not self._waiting.queued(call):
            firsts = self._waiting.firsts_with_nothing_in_batch(in_batch)
            calls_ahead = sum(not ticket.steps_done for ticket in firsts)  # each is seated by parking first
            if calls_ahead < self._seats_by_parking(in_batch):
                return self._running_left_s()  # it takes a parked request's slot at the next step boundary
        return wait

    def _departures_wait(self, ahead: int) -> float:
        """How long until a slot is free for a request with `ahead` waiting requests before it."""
        departures_ahead = ahead + len(self._active) - self.max_batch  # before a slot is free for it
        if departures_ahead < 0:
            return 0.0
        typical = self._step_counts.typical()
        remaining = np.full(self.max_batch, typical, dtype=np.int64)  # a free slot: a newcomer's steps
        if self._active:
            done = np.array([ticket.steps_done for ticket in self._active], dtype=np.int64)
            most = np.array([self._most_steps(ticket) for ticket in self._active], dtype=np.int64)
            remaining[: len(self._active)] = self._step_counts.remaining(done, most)
        remaining.sort()
        rounds, index = divmod(departures_ahead, self.max_batch)
        steps = int(remaining[index]) + rounds * typical
        return max(0.0, steps * self._step_times.expected(self.max_batch) - self._running_s())

    def _running_s(self) -> float:
        """How long the running step has run (0 between steps)."""
        return 0.0 if self._step_started is None else time.monotonic() - self._step_started

    def _running_left_s(self) -> float:
        """How long until the running step is expected to end."""
        return max(0.0, self._step_times.expected(len(self._active)) - self._running_s())

    def _refuse_if_late(self, limit: float, call: object) -> None:
        """Raise QueueFull where a new request of `call` would end its first step after `limit`
        (time.monotonic()), planned as a time limit plans a next step (STEP_TIME_SAFETY times the expected wait and
        step): in a full batch after its wait for a slot, or, with a slot free, after the running step in the batch
        it joins; there a request whose limit is shorter than a step alone is admitted (a deadline shorter than one
        step is the caller's to fix, and gets DEADLINE_EXCEEDED), and so is a request alone, and one joining a full
        batch of a scheduler that does not refuse on priors (REFUSES_ON_PRIORS) before a request has finished and a
        near-full batch's step was timed."""
        held = len(self._active) + len(self._waiting)
        if not held:
            return  # its step is a step alone: nothing to check on the way of a lone caller
        now = time.monotonic()
        if held >= self.max_batch:
            measured = self.REFUSES_ON_PRIORS or (self._step_counts and self._step_times.measured_near(self.max_batch))
            if not measured:
                return  # the estimates still rest on priors alone
            wait, joins = self.expected_wait_s(call), self.max_batch
        else:
            wait, joins = (0.0 if self._step_started is None else self._running_left_s()), held + 1
            if now + self._step_times.expected(1) > limit:
                return
        step_s = self._step_times.expected(joins)
        if now + (wait + step_s) * STEP_TIME_SAFETY > limit:  # QA: planned at 1.0x, 12 of 17 admitted timed out
            raise QueueFull(
                f"model {self.name!r} is busy: a new request would wait about {wait * 1000:.0f} ms for its first "
                f"step, which takes about {step_s * 1000:.0f} ms in a batch of {joins}, and would end past its "
                "deadline or time budget; retry with backoff or allow more time"
            )

    def load_step_cap(self) -> int | None:
        """The step cap under load (see the module docstring), or None while every waiting call gets a slot
        at the next step boundary, or the cap is off."""
        if self.load_wait_s is None or len(self._waiting) + len(self._active) <= self.max_batch:
            return None
        in_batch = self._in_batch()
        firsts = self._waiting.firsts_with_nothing_in_batch(in_batch)
        unstarted = sum(not ticket.steps_done for ticket in firsts)  # the calls parking seats
        overflow = len(firsts) - min(unstarted, self._seats_by_parking(in_batch)) + len(self._active) - self.max_batch
        if overflow <= 0:
            return None
        step_s = self._step_times.expected(self.max_batch)
        return max(1, math.floor(self.load_wait_s * self.max_batch / ((overflow + 1) * step_s)))

    @property
    def _parks(self) -> bool:
        """Whether this scheduler parks requests (see the module docstring)."""
        return self.load_wait_s is not None and self.PARKS_REQUESTS

    def _seats_by_parking(self, in_batch: collections.Counter[object]) -> int:
        """How many calls parking could seat at the next step boundary: each call with two or more requests in
        the batch gives up all but one (by then every request now in the batch has run a step); 0 when this
        scheduler does not park."""
        if not self._parks:
            return 0
        return sum(count - 1 for count in in_batch.values() if count >= 2)

    def _to_park(self, in_batch: collections.Counter[object]) -> Ticket | None:
        """The request to park for a waiting call: of the call with the most requests in the batch (at least
        two), the one that has run the most steps (at least one); None if there is none."""
        shared = [ticket for ticket in self._active if ticket.steps_done and in_batch[ticket.call] >= 2]
        return max(shared, key=lambda ticket: (in_batch[ticket.call], ticket.steps_done), default=None)

    def _holds(self, call: object) -> int:
        """How many places `call`'s requests hold: waiting or in the batch."""
        return self._waiting.queued(call) + sum(ticket.call is call for ticket in self._active)

    def _in_batch(self) -> collections.Counter[object]:
        """The batch's requests by call."""
        return collections.Counter(ticket.call for ticket in self._active)

    def _most_steps(self, ticket: Ticket) -> int:
        """The most supervision steps `ticket` may run."""
        return ticket.budget.max_steps

    def submit(self, ticket: Ticket) -> None:
        """Queue a request; raise QueueFull or SchedulerClosed at once instead of waiting.

        QueueFull where no place is left for it (see "Places" in the module docstring).

        A request with a time limit (deadline or time budget) is refused with QueueFull too where its first
        step would end after its earliest limit (`_refuse_if_late`): admitting it would only turn into a
        DEADLINE_EXCEEDED later.
        """
        if self._closing:
            raise SchedulerClosed(f"model {self.name!r} version {self.version} is being unloaded")
        held = len(self._active) + len(self._waiting)
        if held >= self.max_batch + self.max_queue:
            raise QueueFull(
                f"model {self.name!r} is at capacity: it holds {self.max_batch + self.max_queue} requests at once "
                f"(--max-batch-size {self.max_batch} plus --max-queue {self.max_queue}), {len(self._active)} in its "
                f"running step and {len(self._waiting)} waiting for the next; retry with backoff"
            )
        own = self._holds(ticket.call) if held >= self.max_queue else 0
        if own:
            raise QueueFull(
                f"model {self.name!r} holds {held} requests, {own} of them this call's: a call's further requests are "
                f"taken while it holds fewer than {self.max_queue} (--max-queue), the last {self.max_batch} places "
                "(--max-batch-size) being kept for other calls; retry the rest with backoff"
            )
        limit = min((limit.at for limit in ticket.limits), default=None)
        if limit is not None:
            self._refuse_if_late(limit, ticket.call)
        ticket.length = self._session.input_length(ticket.tokens)
        self._waiting.add(ticket)
        self._update_gauges()
        self._wakeup.set()

    def cancel(self, ticket: Ticket) -> None:
        """Remove a request at once: its slot is free for the next step boundary, and the running step's
        call that holds it stops if no request in that call is left."""
        if ticket.cancelled:
            return
        ticket.cancelled = True
        if not self._waiting.remove(ticket):
            if ticket not in self._active:
                return  # it had finished: the gauges already count it out
            self._active.remove(ticket)
            for run in self._runs:
                if ticket in run.tickets and all(t.cancelled for t in run.tickets):
                    run.handle.stop()
        self._update_gauges()

    def shutdown_by(self, at: float) -> None:
        """Stop every request (anytime answer, HaltReason.SHUTDOWN) before time.monotonic() reaches `at`."""
        self._shutdown_at = at
        self._wakeup.set()

    async def close(self) -> None:
        """Refuse new requests, let the submitted ones finish, then stop the loop and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
        if self._lane_executor is not None:
            self._lane_executor.shutdown(wait=True)
        self._update_gauges()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._admit()
            if not self._active:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = list(self._active)
            self._step_started = started = time.monotonic()
            self._runs = runs = self._plan_runs(batch)
            try:
                inputs = [self._batch_inputs(run.tickets) for run in runs]
                if self._runs_inline(batch):
                    self._steps_on_loop.inc()
                    outputs, compute_s = self._run_all(runs, inputs)
                else:
                    outputs, compute_s = await loop.run_in_executor(self._executor, self._run_all, runs, inputs)
                self._record_step([(run.tickets, run_outputs) for run, run_outputs in zip(runs, outputs, strict=True)
                                   if run_outputs is not None], time.monotonic())
                stopped = sum(run_outputs is None for run_outputs in outputs)
            except Exception as exc:
                _log.exception("step_failed", model=self.name, version=self.version, batch=len(batch))
                self._fail(batch, exc)
                continue
            finally:
                self._runs = []
                self._step_started = None
            self._batch_size.observe(len(batch))
            if stopped:  # a cut-short step says nothing about how long a step takes
                _log.info("cancelled_calls_stopped", model=self.name, version=self.version, calls=len(runs),
                          stopped=stopped)
                continue
            self._step_times.observe(len(batch), time.monotonic() - started)
            self._request_compute_s += _SMOOTHING * (compute_s / len(batch) - self._request_compute_s)
            self._step_latency.observe(time.monotonic() - started)

    def _runs_inline(self, batch: list[Ticket]) -> bool:
        """Whether this step runs on the event loop thread instead of the model's thread: the first step of a
        lone request whose call found the server idle, when a request's step is short (INLINE_STEP_S). It
        saves the two thread wake-ups of the hand-over, which cost more than a small step itself."""
        if len(batch) != 1:
            return False
        ticket = batch[0]
        return ticket.arrived_idle and not ticket.steps_done and self._request_compute_s <= INLINE_STEP_S

    def _plan_runs(self, batch: list[Ticket]) -> list[PlannedCall]:
        """The step's batch as ONNX Runtime calls of at most max_rows_per_run rows (and at least one call per
        lane where the batch allows), shortest inputs first, so each call is trimmed to its own longest input
        and its memory stays bounded."""
        ordered = sorted(batch, key=lambda ticket: ticket.length)
        size = min(self.max_rows_per_run, -(-len(ordered) // (self._lanes.count if self._lanes else 1)))
        return [PlannedCall(ordered[i : i + size]) for i in range(0, len(ordered), size)]

    def _run_all(
        self, runs: list[PlannedCall], inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> tuple[list[StepOutputs | None], float]:
        """Runs on the model's executor thread: one session call per planned run (None for a call
        stopped because all of its requests were cancelled), and the seconds the calls took. Several calls
        of a model with lanes run side by side, call i on lane i % lanes (lane 0 on this thread)."""
        started = time.perf_counter()
        executor = self._lane_executor
        if len(runs) == 1 or self._lanes is None or executor is None:
            return self._run_calls(self._session, runs, inputs), time.perf_counter() - started
        lanes, lane_session = self._lanes.count, self._lanes.session
        others = [executor.submit(self._run_calls, lane_session, runs[lane::lanes], inputs[lane::lanes])
                  for lane in range(1, lanes)]  # fmt: skip
        by_lane = [self._run_calls(lane_session, runs[::lanes], inputs[::lanes])]
        by_lane += [other.result() for other in others]
        return [by_lane[i % lanes][i // lanes] for i in range(len(runs))], time.perf_counter() - started

    @staticmethod
    def _run_calls(
        session: StepSession, runs: list[PlannedCall], inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> list[StepOutputs | None]:
        """`runs` one after another on `session` (None for a stopped call)."""
        outputs: list[StepOutputs | None] = []
        for run, (tokens, y, z) in zip(runs, inputs, strict=True):
            try:
                outputs.append(session.run(tokens, y, z, run.handle))
            except StepStopped:
                outputs.append(None)
        return outputs

    def _batch_inputs(self, batch: list[Ticket]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tokens and states of `batch`, trimmed to its longest input (shorter ones padded back)."""
        length = max(t.length for t in batch)
        tokens = np.stack([t.tokens[:length] for t in batch])
        y = self._session.initial_state(len(batch), self._session.state_rows(length))
        z = np.zeros_like(y)
        for row, ticket in enumerate(batch):
            if ticket.y is not None:
                rows = ticket.y.shape[0]
                y[row, :rows], z[row, :rows] = ticket.y, ticket.z
        return tokens, y, z

    def _admit(self) -> None:
        """At a step boundary: end the parked requests that must stop, fill the batch's free slots from the
        waiting calls in turn (scheduler/waiting.py), then park for the calls that would wait too long."""
        if not self._waiting:
            return
        now = time.monotonic()
        if self._shutdown_at is not None:
            self._fail_unstarted_past_shutdown(now)
        if self._parks:
            self._end_parked(now)
        free = self.max_batch - len(self._active)
        if free > 0:
            in_batch = self._in_batch() if free < len(self._waiting) else collections.Counter()
            for ticket in self._waiting.take(free, in_batch):
                self._join_batch(ticket, now)
        if self._parks and self._waiting and len(self._active) >= self.max_batch:
            self._park_for_waiting(now)
        self._update_gauges()

    def _fail_unstarted_past_shutdown(self, now: float) -> None:
        """While the server stops: each waiting request that never started and whose first step would end after
        the stop fails now (SchedulerClosed: retry elsewhere), so that its call (a ReasonBatch's other answers
        with it) can be answered before the grace period ends."""
        if now + self.expected_step_s <= self._shutdown_at:
            return
        unstarted = [ticket for ticket in self._waiting if not ticket.steps_done]
        for ticket in unstarted:
            self._waiting.remove(ticket)
            ticket.fail(SchedulerClosed(f"the server is stopping, before the first step of this request to model "
                                        f"{self.name!r}"))

    def _join_batch(self, ticket: Ticket, now: float) -> None:
        """Put `ticket` in the batch (a parked one goes on where it stopped)."""
        if ticket.queue_wait_s is None:
            ticket.queue_wait_s = now - ticket.arrival
            self._queue_wait.observe(ticket.queue_wait_s)
        self._active.append(ticket)

    def _park_for_waiting(self, now: float) -> None:
        """Each call with nothing in the batch whose first request has not started and would not start
        within load_wait_s of its arrival takes the slot of a request it parks (see the module docstring)."""
        in_batch = self._in_batch()
        for ticket in self._waiting.firsts_with_nothing_in_batch(in_batch):
            if ticket.steps_done:  # parked itself: it waits for a free slot
                continue
            wait = self._departures_wait(self._waiting.ahead_of(ticket.call, 0, in_batch))
            parked = self._to_park(in_batch)
            if parked is None:
                return
            if now + wait <= ticket.arrival + self.load_wait_s:
                continue
            in_batch[parked.call] -= 1
            in_batch[ticket.call] += 1
            self._active.remove(parked)
            self._waiting.put_back(parked)
            self._parked.inc()
            self._waiting.remove(ticket)
            self._join_batch(ticket, now)

    def _end_parked(self, now: float) -> None:
        """End each parked request that the step cap or a time limit stops, with its last step's answer."""
        parked = self._waiting.parked()
        if not parked:
            return
        cap = self.load_step_cap()
        next_step_s = self._step_times.expected(self.max_batch) * STEP_TIME_SAFETY
        ended = set()
        for ticket in parked:
            reason = (HaltReason.LOAD if load_cap_reached(ticket.steps_done, ticket.budget, cap)
                      else time_limit_reason(now=now, next_step_s=next_step_s, limits=self._limits(ticket)))
            if reason is not None:
                self._waiting.remove(ticket)
                ticket.publish(dataclasses.replace(ticket.latest, halt_reason=reason,
                                                   elapsed_ms=(now - ticket.arrival) * 1000.0))
                ended.add(ticket)
        self._retire(ended)

    def _record_step(self, calls: list[tuple[list[Ticket], StepOutputs]], now: float) -> None:
        """Publish the step of every request of the step's calls. Each request's own reasons to stop come first
        (halting, its step budget, its time limits); then the step cap, computed once for the whole step with
        the requests that stop anyway out of the batch (their slots go to waiting calls at this boundary)."""
        next_step_s = self.expected_step_s * STEP_TIME_SAFETY
        results: list[tuple[Ticket, StepResult]] = []
        for batch, outputs in calls:
            halt_probability = sigmoid(outputs.halt_logit)
            for row, ticket in enumerate(batch):
                if ticket.cancelled:
                    continue
                rows = self._session.state_rows(ticket.length)
                ticket.y, ticket.z = outputs.y_next[row, :rows], outputs.z_next[row, :rows]
                step = ticket.steps_done + 1
                reason = stop_reason(
                    steps_done=step,
                    halt_probability=float(halt_probability[row]),
                    budget=ticket.budget,
                    now=now,
                    next_step_s=next_step_s,
                    limits=self._limits(ticket),
                    verified=ticket.verify is not None and ticket.verify(outputs.logits[row]),
                )
                results.append((ticket, StepResult(
                    step=step,
                    logits=outputs.logits[row].copy(),
                    halt_probability=float(halt_probability[row]),
                    elapsed_ms=(now - ticket.arrival) * 1000.0,
                    halt_reason=reason,
                )))
        stopped = {ticket for ticket, result in results if result.halt_reason is not None}
        self._active = [t for t in self._active if t not in stopped]
        load_cap = self.load_step_cap()
        for ticket, result in results:
            if result.halt_reason is None and load_cap_reached(result.step, ticket.budget, load_cap):
                result = dataclasses.replace(result, halt_reason=HaltReason.LOAD)
                stopped.add(ticket)
            ticket.publish(result)
        self._retire(stopped)

    def _retire(self, stopped: set[Ticket]) -> None:
        """Take requests that gave their final step out of the batch (their slots are free), and count their
        steps."""
        for ticket in stopped:
            self._step_counts.add(ticket.steps_done)
        if stopped:
            self._active = [t for t in self._active if t not in stopped]
            self._update_gauges()

    def _limits(self, ticket: Ticket) -> list[TimeLimit]:
        if self._shutdown_at is None:
            return ticket.limits
        return [*ticket.limits, TimeLimit(self._shutdown_at, HaltReason.SHUTDOWN)]

    def _fail(self, batch: list[Ticket], error: Exception) -> None:
        for ticket in batch:
            if not ticket.cancelled and not ticket.finished.done():
                ticket.fail(error)
        failed = set(batch)
        self._active = [t for t in self._active if t not in failed]
        self._update_gauges()

    def _update_gauges(self) -> None:
        """Add the change in this scheduler's counts to the gauges: a bundle replaced in place (same name and
        version) has a successor whose scheduler shares them while this one drains."""
        active, pending = len(self._active), len(self._waiting)
        self._inflight.inc(active - self._counted[0])
        self._queued.inc(pending - self._counted[1])
        self._counted = (active, pending)
