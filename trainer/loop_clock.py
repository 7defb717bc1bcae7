"""The clock of a training loop with a time limit: when it may start a step and when it must evaluate.

A loop that its minutes end stops early by the work that follows it, counted in progress evaluations
(`evaluations_after`: the export's passes over held-out rows, the end's own evaluation) and timed at the last
progress evaluation's measured time, so that this work ends within the minutes too. So that there is a measured
time also where `eval_every` steps take longer than planned (a machine slower than the plan), an evaluation is due
by MEASURED_BY_SHARE of the minutes at the latest. Both trainers' loops run on it (trainer/train.py,
trainer/sequence/train.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MIN_PLANNED_SHARE = 0.5
"""A loop timed to end by a given time (`timed_minutes`) still trains at least this share of its planned minutes,
however late it starts; and the work it reserves for after it leaves it this share of its minutes at least."""
MEASURED_BY_SHARE = 0.5
"""A loop with a time limit evaluates by this share of its minutes at the latest, even before `eval_every` steps."""


def timed_minutes(planned_minutes: float, elapsed_s: float, ends_by: float) -> float:
    """The max_minutes of a loop that is to end by `ends_by` (a `time.monotonic()`): the `elapsed_s` trained so far
    plus the time left until then, and at least MIN_PLANNED_SHARE of `planned_minutes`."""
    total_s = max(elapsed_s + ends_by - time.monotonic(), MIN_PLANNED_SHARE * planned_minutes * 60)
    return round(total_s / 60, 2)


def timed_sentence(minutes: float, planned_minutes: float, elapsed_s: float, ends_by: float, before: str) -> str:
    """What a loop timed by `timed_minutes` to `minutes` in all (`before`: the part of them before this command)
    tells: that the fit ends within its time budget, or, where the budget left less than MIN_PLANNED_SHARE of the
    planned minutes, that it does not (QA: a fit whose preparing used up its budget said it would end within it,
    trained 14 steps and ended 0.8 min past it)."""
    if elapsed_s + ends_by - time.monotonic() >= minutes * 60 - 1:
        return f"{minutes:.2f} min in all{before}, so that the fit ends within its time budget"
    return (f"{minutes:.2f} min in all{before}, the least a fit trains ({MIN_PLANNED_SHARE:.0%} of the "
            f"{planned_minutes:g} planned): preparing used up the time budget, so the fit ends past it (a longer "
            "--time-budget gives training its minutes)")


class LoopClock:
    """The seconds a loop has trained (from `elapsed_s` on, read now) against its `max_minutes` (0: no limit),
    less the measured time of the work it reserves: `evaluations_after` (the export's) and, with `evaluates_end`,
    the end's own evaluation (which a loop that stops right after an evaluation skips)."""

    def __init__(self, max_minutes: float, elapsed_s: float, evaluations_after: float, *, evaluates_end: bool,
                 warn: Callable[[str], None], ends_by: float | None = None) -> None:
        self.limit_s = max_minutes * 60
        self.evaluations_after, self.evaluates_end = evaluations_after, evaluates_end
        self.warn = warn
        self.ends_by = ends_by  # the time budget's end (a `time.monotonic()`), where the fit has one
        self.evaluation_s: float | None = None  # the last progress evaluation's measured time
        self._base_s, self._started = elapsed_s, time.monotonic()

    def trained_s(self) -> float:
        """Seconds trained so far, read now: a checkpoint's or an evaluation's time counts too."""
        return self._base_s + time.monotonic() - self._started

    def out_of_time(self) -> bool:
        """Whether no step may start: the minutes, less the reserved evaluations' measured time, are used up. The
        reserve takes at most 1 - MIN_PLANNED_SHARE of the minutes: a loop trains at least MIN_PLANNED_SHARE of them
        even where the work after it then ends past them (a machine much slower than the plan, or a first evaluation
        timed on a busy one: a sequence fit whose evaluation before its first step was timed at 15 times its usual
        speed reserved more than its minutes, trained no step and shipped its starting weights)."""
        return bool(self.limit_s) and self.trained_s() + self._reserve_taken_s() >= self.limit_s

    def _reserved_s(self) -> float:
        """The work after the loop at the last evaluation's measured time: the export's and the end's evaluations."""
        return (self.evaluations_after + self.evaluates_end) * (self.evaluation_s or 0.0)

    def _reserve_taken_s(self) -> float:
        """The part of the minutes the loop leaves to the work after it (at most 1 - MIN_PLANNED_SHARE of them)."""
        return min(self._reserved_s(), (1 - MIN_PLANNED_SHARE) * self.limit_s)

    def evaluation_due(self, step: int, every: int) -> bool:
        """Whether the loop evaluates after `step`: every `every` steps, and by MEASURED_BY_SHARE of the minutes
        if none has been measured."""
        unmeasured = self.evaluation_s is None and bool(self.limit_s)
        return step % every == 0 or (unmeasured and self.trained_s() >= MEASURED_BY_SHARE * self.limit_s)

    def timed(self, evaluate: Callable[[], None]) -> None:
        """Run a progress evaluation and keep its measured time. The first one says so (`warn`) where the work
        after the loop (the export's, at that time) would end past the minutes even if the loop stopped now: a
        machine so much slower than the plan that the export outlasts the budget."""
        first = self.evaluation_s is None
        started = time.monotonic()
        evaluate()
        self.evaluation_s = time.monotonic() - started
        if first and self.limit_s and (over_s := self._over_s()) > 0:
            past = "its time budget" if self.ends_by is not None else "them"
            self.warn(f"the work after training takes about {self._reserved_s() / 60:.1f} min on this machine (at "
                      f"this evaluation's speed), more than its minutes leave: the fit will end about "
                      f"{over_s / 60:.1f} min past {past} (this machine trains slower than the plan expects; a longer "
                      "--time-budget gives the work after training its room and more training)")

    def _over_s(self) -> float:
        """How long after the minutes' end (the time budget's, `ends_by`, where given) the fit ends at the measured
        evaluation time: the loop trains on until its minutes less the reserve it may take, then the work after it
        runs (QA: this counted from now, as if the loop stopped, and said "0.0 min past" of a fit 0.8 min over)."""
        loop_left_s = max(0.0, self.limit_s - self.trained_s() - self._reserve_taken_s())
        ends_in_s = loop_left_s + self._reserved_s()
        if self.ends_by is not None:
            return time.monotonic() + ends_in_s - self.ends_by
        return self.trained_s() + ends_in_s - self.limit_s
