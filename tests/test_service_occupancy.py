"""When a reasoning call counts as arriving at an idle server (the idle fast path's signal)."""

from __future__ import annotations

import time

from trm_service.api.occupancy import IDLE_GAP_S, Occupancy


def test_a_call_into_an_idle_server_is_idle_and_one_beside_it_is_not() -> None:
    occupancy = Occupancy()
    assert occupancy.enter(time.monotonic())
    assert not occupancy.enter(time.monotonic())  # the first is still in flight
    occupancy.leave()
    assert not occupancy.enter(time.monotonic())  # one is still in flight


def test_a_call_right_after_the_last_one_ended_is_not_idle_one_after_the_gap_is() -> None:
    occupancy = Occupancy()
    occupancy.enter(time.monotonic())
    before_the_end = time.monotonic()  # the call ends at this time or later
    occupancy.leave()
    assert not occupancy.enter(before_the_end + IDLE_GAP_S / 2)  # most likely it waited in gRPC behind the last one
    occupancy.leave()
    assert occupancy.enter(time.monotonic() + IDLE_GAP_S * 2)
