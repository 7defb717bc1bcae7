"""Whether a reasoning call arrived at an idle server: the signal for the idle fast path.

grpc.aio accepts one call per event-loop turn, so calls that wait inside gRPC are invisible to the
service. What it can see is its own calls: a call that finds no other reasoning call in flight, and
none that ended within IDLE_GAP_S, did not wait behind a busy loop, and most likely has no call behind
it either. Its first step may then run on the event loop thread (ModelScheduler), which saves the two
thread wake-ups of the hand-over to the model's thread. Under load that same step would hold the loop
while calls wait in gRPC; a call that arrives within the gap was most likely one of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

IDLE_GAP_S = 0.0003
"""How long the server must have had no reasoning call in flight for an arriving call to count as idle.
Measured on the 2-core development machine (intent, closed-loop client, the event loop pinned and gRPC's
threads yielding to it, cpu_affinity.py): at one caller the next call starts 364-484 µs (1st-90th
percentile) after the last one ended; at 8 callers the 2.5 % of calls that find none in flight start
138-536 µs after, at 64 callers 0.8 % of calls, 137-780 µs. 0.4 ms missed 40 % of the lone calls; 0.3 ms
catches them all and answered 8-9 % more requests at one caller, level at 8 and 64, in two side-by-side
runs (docs/EXPERIMENTS.md, 2026-12-01)."""


class Occupancy:
    """Reasoning calls in flight on this server's event loop, and when the last one ended."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._last_end = -math.inf

    def enter(self, now: float) -> bool:
        """Count a call that arrived at `now` (time.monotonic()); return whether it found the server idle."""
        idle = self._in_flight == 0 and now - self._last_end > IDLE_GAP_S
        self._in_flight += 1
        return idle

    def leave(self) -> None:
        """A call has ended (answered, failed or cancelled): one fewer in flight."""
        self._in_flight -= 1
        self._last_end = time.monotonic()

    @contextmanager
    def call(self, now: float) -> Iterator[bool]:
        """A call from its arrival at `now` to its end, whatever the outcome; yields whether it found the
        server idle."""
        idle = self.enter(now)
        try:
            yield idle
        finally:
            self.leave()
