"""One request inside a model's scheduler: input, budget, recursion state and the latest step."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trm_service.scheduler.halting import HaltReason, StepBudget, TimeLimit


@dataclass(frozen=True)
class TokenProgress:
    """Sequence models: where a request's answer stands after a step (the step refined one token)."""

    token_index: int
    token_step: int
    emitted: tuple[int, ...]
    """Token ids emitted so far (the end mark included once emitted)."""
    token_emitted: bool
    """This step settled its token: it is the last of `emitted`."""
    emitted_steps: int
    """Refinement steps the emitted tokens took, in all."""
    confidence: float
    """The product of the emitted tokens' probabilities, each at the step that emitted it (1.0 before the first)."""


@dataclass(frozen=True)
class StepResult:
    """What one supervision step produced for one request."""

    step: int
    logits: np.ndarray
    halt_probability: float
    elapsed_ms: float
    halt_reason: HaltReason | None = None
    """Why the request stopped after this step; None while it goes on."""
    progress: TokenProgress | None = None
    """Sequence models only: the token this step refined and the answer so far (`logits` are that token's)."""

    @property
    def final(self) -> bool:
        return self.halt_reason is not None


class Ticket:
    """A request's place in a scheduler.

    Unary callers await `finished` (the final StepResult); streaming callers read every step with
    `next_update()`. `latest` always holds the last completed step, the anytime answer.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        budget: StepBudget,
        *,
        arrival: float,
        limits: list[TimeLimit],
        stream: bool,
        verify: Callable[[np.ndarray], bool] | None = None,
        arrived_idle: bool = False,
        batch_call: object = None,
    ) -> None:
        self.tokens = tokens
        self._batch_call = batch_call  # the ReasonBatch call this request is part of (None: a lone call)
        self.arrived_idle = arrived_idle  # its call found the server idle: its first step may run on the loop
        self.verify = verify  # logits -> whether the answer passes the model's check (VERIFIED halting)
        self.length = len(tokens)  # tokens the step needs; the scheduler trims padding on submit
        self.budget = budget
        self.arrival = arrival
        self.limits = limits
        self.y: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.decoding: Any = None  # sequence models: the answer's decoding state, owned by the scheduler
        self.latest: StepResult | None = None
        self.queue_wait_s: float | None = None
        self.cancelled = False
        self.finished: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        self._updates: asyncio.Queue[StepResult | BaseException] | None = asyncio.Queue() if stream else None

    @property
    def call(self) -> object:
        """The call this request came with: a ReasonBatch's requests share it, a lone request is its own
        (the scheduler's turns go by call: scheduler/waiting.py)."""
        return self if self._batch_call is None else self._batch_call

    @property
    def steps_done(self) -> int:
        """Supervision steps completed so far."""
        return 0 if self.latest is None else self.latest.step

    def publish(self, result: StepResult) -> None:
        """Record a completed step; a final one also resolves `finished`."""
        self.latest = result
        if self._updates is not None:
            self._updates.put_nowait(result)
        if result.final and not self.finished.done():
            self.finished.set_result(result)

    def time_out(self) -> None:
        """Wake the caller waiting for this request's next (unary: final) step with TimeoutError: its
        deadline passed first. The request stays in its scheduler until the caller cancels it."""
        if self._updates is not None:
            self._updates.put_nowait(TimeoutError())
        elif not self.finished.done():
            self.finished.set_exception(TimeoutError())

    def drop_unread_error(self) -> None:
        """The caller is done without reading `finished`: an error set there (a deadline that came as its call was
        cancelled) is taken here, where asyncio would report it as never retrieved."""
        if self.finished.done() and not self.finished.cancelled():
            self.finished.exception()

    def fail(self, error: BaseException) -> None:
        """End the request with a server error."""
        if self._updates is not None:
            self._updates.put_nowait(error)
        elif not self.finished.done():
            self.finished.set_exception(error)

    async def next_update(self) -> StepResult:
        """The next step of a streaming request (raises the server error if the request failed, and
        TimeoutError once `time_out` was called)."""
        if self._updates is None:
            raise RuntimeError("next_update() is only for streaming tickets")
        item = await self._updates.get()
        if isinstance(item, BaseException):
            raise item
        return item
