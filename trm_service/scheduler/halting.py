"""When a request stops: the halting head, its step budget, its time budget, the deadline, or shutdown."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class HaltReason(enum.Enum):
    """Why a request stopped refining its answer (the API maps these to trm.v1.HaltReason)."""

    HALTED = "halted"
    """The halting head was confident enough, or the answer was unchanged by its last step where the
    bundle halts so (after min_steps)."""
    MAX_STEPS = "max_steps"
    BUDGET = "budget"
    """The request's own time budget."""
    DEADLINE = "deadline"
    """The caller's gRPC deadline."""
    SHUTDOWN = "shutdown"
    """The server is draining and answers with what it has."""
    VERIFIED = "verified"
    """The answer passed the model's deterministic check (Sudoku rules), after min_steps."""
    LOAD = "load"
    """The model was overloaded and the request reached the lowered step cap (after min_steps)."""


@dataclass(frozen=True)
class StepBudget:
    """A request's resolved limits (validated against the model's)."""

    max_steps: int
    min_steps: int
    halt_threshold: float
    """Halt when sigmoid(q) >= this after min_steps; 1.0 or more never halts on confidence."""


@dataclass(frozen=True)
class TimeLimit:
    """A point in time (time.monotonic seconds) by which the request must have stopped, and why."""

    at: float
    reason: HaltReason


def stop_reason(
    *,
    steps_done: int,
    halt_probability: float,
    budget: StepBudget,
    now: float,
    next_step_s: float,
    limits: Iterable[TimeLimit],
    verified: bool = False,
    unchanged: bool = False,
    load_cap: int | None = None,
) -> HaltReason | None:
    """Why the request stops after `steps_done` steps, or None to run another step.

    After min_steps, a verified answer stops first, then confidence or an answer its last step left
    `unchanged` (a halting threshold of 1.0 turns both off); they win over max_steps, which wins
    over the step cap under load (`load_cap`, never below min_steps; the sequence scheduler passes it, the text
    and grid scheduler applies its cap after this function, to the requests it does not stop, so there a time
    limit wins over the cap). A time limit stops the request when another step, expected to take
    `next_step_s`, would end after it (the earliest such limit names the reason).
    """
    if steps_done >= budget.min_steps and verified:
        return HaltReason.VERIFIED
    halting = budget.halt_threshold < 1.0
    if steps_done >= budget.min_steps and halting and (halt_probability >= budget.halt_threshold or unchanged):
        return HaltReason.HALTED
    if steps_done >= budget.max_steps:
        return HaltReason.MAX_STEPS
    if load_cap_reached(steps_done, budget, load_cap):
        return HaltReason.LOAD
    return time_limit_reason(now=now, next_step_s=next_step_s, limits=limits)


def load_cap_reached(steps_done: int, budget: StepBudget, load_cap: int | None) -> bool:
    """Whether the step cap under load (None: no cap) stops a request after `steps_done` steps: never below
    its min_steps."""
    return load_cap is not None and steps_done >= max(load_cap, budget.min_steps)


def time_limit_reason(*, now: float, next_step_s: float, limits: Iterable[TimeLimit]) -> HaltReason | None:
    """The reason of the earliest time limit that another step, expected to take `next_step_s`, would end
    after; None when the step fits them all."""
    earliest = min(limits, key=lambda limit: limit.at, default=None)
    if earliest is not None and now + next_step_s > earliest.at:
        return earliest.reason
    return None
