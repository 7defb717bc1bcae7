"""The scheduler's estimates: step times by batch size class (scheduler/step_times.py) and the steps requests
run (scheduler/step_counts.py)."""

from __future__ import annotations

import numpy as np
import pytest

from trm_service.scheduler.step_counts import StepCounts
from trm_service.scheduler.step_times import StepTimes


def test_each_size_class_keeps_its_own_smoothed_time() -> None:
    times = StepTimes(lone_step_s=0.02, smoothing=0.5)
    times.observe(64, 1.0)
    times.observe(1, 0.04)
    assert times.expected(64) == 1.0 and times.expected(100) == 1.0  # 64-127: one class
    assert times.expected(1) == pytest.approx(0.03)  # the lone step's estimate, smoothed toward 0.04
    times.observe(70, 2.0)
    assert times.expected(64) == pytest.approx(1.5)


def test_a_time_is_measured_near_a_size_where_its_class_or_the_one_below_was_timed() -> None:
    times = StepTimes(lone_step_s=0.01, smoothing=0.2)
    assert not times.measured_near(1) and not times.measured_near(64)  # the lone step's start estimate only
    times.observe(40, 0.02)  # 32-63
    assert times.measured_near(64) and times.measured_near(40) and not times.measured_near(128)


def test_a_class_not_measured_is_estimated_from_the_nearest_measured_one() -> None:
    times = StepTimes(lone_step_s=0.01, smoothing=0.2)
    assert [times.size_class(batch) for batch in (0, 1, 2, 3, 4, 63, 64)] == [0, 0, 1, 1, 2, 5, 6]
    assert times.expected(8) == pytest.approx(0.08)  # larger: scaled with the rows
    times.observe(16, 0.1)
    assert times.expected(32) == pytest.approx(0.2)
    assert times.expected(12) == pytest.approx(0.1)  # smaller than a measured class: no longer than it
    assert times.expected(2) == pytest.approx(0.02)  # nearer the lone step's class (ties go to the smaller)


def test_a_running_request_is_expected_to_run_as_long_as_recent_ones_that_got_as_far() -> None:
    counts = StepCounts()
    assert counts.typical() == 1  # no history
    assert list(counts.remaining(np.array([0, 3]), np.array([8, 8]))) == [8, 5]  # nothing says it stops sooner
    for steps in (1, 1, 2, 6, 8):
        counts.add(steps)
    assert counts.typical() == 4  # 18 / 5, rounded up
    done, most = np.array([0, 1, 2, 6, 8, 9]), np.array([16] * 6)
    # past 0: all five (mean 3.6 -> 4); past 1: 2, 6, 8 (16 / 3 -> 6); past 2: 6, 8 (7); past 6: 8; past 8, 9: none
    assert list(counts.remaining(done, most)) == [4, 5, 5, 2, 8, 7]
