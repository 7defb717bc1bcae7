"""One request inside a model's scheduler: input, budget, recursion state and the latest step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from trm.v1 import trm_pb2

from trm_service.scheduler.halting import StepBudget, TimeLimit


@dataclass(frozen=True)
class StepResult:
    """What one supervision step produced for one request."""

    step: int
    logits: np.ndarray
    halt_probability: float
    elapsed_ms: float
    halt_reason: trm_pb2.HaltReason = trm_pb2.HALT_REASON_UNSPECIFIED

    @property
    def final(self) -> bool:
        return self.halt_reason != trm_pb2.HALT_REASON_UNSPECIFIED


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
    ) -> None:
        self.tokens = tokens
        self.length = len(tokens)  # tokens the step needs; the scheduler trims padding on submit
        self.budget = budget
        self.arrival = arrival
        self.limits = limits
        self.y: np.ndarray | None = None
        self.z: np.ndarray | None = None
        self.steps_done = 0
        self.latest: StepResult | None = None
        self.queue_wait_s: float | None = None
        self.cancelled = False
        self.finished: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        self._updates: asyncio.Queue[StepResult | BaseException] | None = asyncio.Queue() if stream else None

    def publish(self, result: StepResult) -> None:
        """Record a completed step; a final one also resolves `finished`."""
        self.latest = result
        if self._updates is not None:
            self._updates.put_nowait(result)
        if result.final and not self.finished.done():
            self.finished.set_result(result)

    def fail(self, error: BaseException) -> None:
        """End the request with a server error."""
        if self._updates is not None:
            self._updates.put_nowait(error)
        elif not self.finished.done():
            self.finished.set_exception(error)

    async def next_update(self) -> StepResult:
        """The next step of a streaming request (raises the server error if the request failed)."""
        if self._updates is None:
            raise RuntimeError("next_update() is only for streaming tickets")
        item = await self._updates.get()
        if isinstance(item, BaseException):
            raise item
        return item
