"""How many steps the requests of one model run, from the last requests that finished.

A newcomer to a full batch waits until requests leave it, so its wait depends on how many steps the
requests in the batch still have to run. A request that has run s steps is expected to run as many as
the recent requests that ran more than s did on average; where none of them did (a burst of inputs the
model never halts on, or no history yet), as many as it may (its step limit): nothing yet says it stops sooner.
"""

from __future__ import annotations

import collections
import math

import numpy as np

RECENT_REQUESTS = 256


class StepCounts:
    """The step counts of the last RECENT_REQUESTS finished requests (see the module docstring)."""

    def __init__(self) -> None:
        self._recent: collections.deque[int] = collections.deque(maxlen=RECENT_REQUESTS)

    def add(self, steps: int) -> None:
        """Counts a finished request's steps."""
        self._recent.append(steps)

    def __len__(self) -> int:
        """How many finished requests the estimates read (at most RECENT_REQUESTS)."""
        return len(self._recent)

    def typical(self) -> int:
        """Steps a request that has not started is expected to run: the recent mean, rounded up (1 without
        history)."""
        return math.ceil(sum(self._recent) / len(self._recent)) if self._recent else 1

    def remaining(self, steps_done: np.ndarray, most: np.ndarray) -> np.ndarray:
        """Steps each running request is expected to run still (at least 1), given the steps each has done
        and the most each may run."""
        recent = np.sort(np.fromiter(self._recent, dtype=np.int64, count=len(self._recent)))
        tail_sums = np.append(np.cumsum(recent[::-1])[::-1], 0)  # tail_sums[i]: the sum of recent[i:]
        first_longer = np.searchsorted(recent, steps_done, side="right")
        longer = len(recent) - first_longer
        mean_longer = tail_sums[first_longer] / np.maximum(longer, 1)
        expected = np.where(longer > 0, np.ceil(mean_longer), most)
        return np.maximum(1, expected - steps_done).astype(np.int64)
