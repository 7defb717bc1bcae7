"""The per-request stopping rule: halting head, step budget, time limits."""

from __future__ import annotations

from trm_service.scheduler.halting import HaltReason, StepBudget, TimeLimit, stop_reason

BUDGET = StepBudget(max_steps=8, min_steps=2, halt_threshold=0.6)


def _reason(steps: int, p: float, *, budget: StepBudget = BUDGET, now: float = 0.0, step_s: float = 0.01,
            limits: tuple[TimeLimit, ...] = ()) -> HaltReason | None:
    return stop_reason(steps_done=steps, halt_probability=p, budget=budget, now=now, next_step_s=step_s,
                       limits=limits)


def test_confidence_halts_only_after_min_steps():
    assert _reason(1, 0.99) is None
    assert _reason(2, 0.6) == HaltReason.HALTED
    assert _reason(2, 0.59) is None


def test_max_steps_stops_and_confidence_wins_when_both_apply():
    assert _reason(8, 0.1) == HaltReason.MAX_STEPS
    assert _reason(8, 0.9) == HaltReason.HALTED


def test_threshold_one_never_halts_on_confidence():
    never = StepBudget(max_steps=8, min_steps=1, halt_threshold=1.0)
    assert _reason(3, 1.0, budget=never) is None


def test_a_time_limit_stops_when_the_next_step_would_end_after_it():
    budget = TimeLimit(at=1.0, reason=HaltReason.BUDGET)
    assert _reason(1, 0.1, now=0.95, step_s=0.01, limits=(budget,)) is None
    assert _reason(1, 0.1, now=0.995, step_s=0.01, limits=(budget,)) == HaltReason.BUDGET


def test_the_earliest_limit_names_the_reason():
    limits = (
        TimeLimit(at=2.0, reason=HaltReason.BUDGET),
        TimeLimit(at=1.5, reason=HaltReason.DEADLINE),
        TimeLimit(at=3.0, reason=HaltReason.SHUTDOWN),
    )
    assert _reason(1, 0.1, now=1.6, limits=limits) == HaltReason.DEADLINE
    assert _reason(1, 0.1, now=1.0, limits=limits) is None


def test_a_verified_answer_stops_after_min_steps_before_confidence_and_max_steps():
    def reason(steps: int, p: float, verified: bool) -> HaltReason | None:
        return stop_reason(steps_done=steps, halt_probability=p, budget=BUDGET, now=0.0, next_step_s=0.01,
                           limits=(), verified=verified)

    assert reason(1, 0.1, verified=True) is None  # min_steps 2 first
    assert reason(2, 0.1, verified=True) == HaltReason.VERIFIED
    assert reason(2, 0.9, verified=True) == HaltReason.VERIFIED
    assert reason(8, 0.9, verified=True) == HaltReason.VERIFIED
    assert reason(2, 0.1, verified=False) is None


def test_under_load_the_cap_stops_a_request_after_its_min_steps_and_max_steps_names_itself_first():
    def reason(steps: int, cap: int | None) -> HaltReason | None:
        return stop_reason(steps_done=steps, halt_probability=0.1, budget=BUDGET, now=0.0, next_step_s=0.01,
                           limits=(), load_cap=cap)

    assert reason(1, 1) is None  # min_steps 2 first
    assert reason(2, 1) == HaltReason.LOAD
    assert reason(2, 3) is None and reason(3, 3) == HaltReason.LOAD
    assert reason(8, 3) == HaltReason.MAX_STEPS
    assert reason(5, None) is None


def test_an_unchanged_answer_halts_like_confidence_after_min_steps_unless_halting_is_off():
    def reason(steps: int, unchanged: bool, budget: StepBudget = BUDGET) -> HaltReason | None:
        return stop_reason(steps_done=steps, halt_probability=0.1, budget=budget, now=0.0, next_step_s=0.01,
                           limits=(), unchanged=unchanged)

    assert reason(1, True) is None  # min_steps 2 first
    assert reason(2, True) == HaltReason.HALTED
    assert reason(2, False) is None
    assert reason(3, True, StepBudget(max_steps=8, min_steps=1, halt_threshold=1.0)) is None
