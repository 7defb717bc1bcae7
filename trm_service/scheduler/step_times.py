"""How long one step of a model takes, by the size of its batch.

A step's wall time grows with its batch: a lone Sudoku request's step takes about 20 ms, a step of 64 a
second. One smoothed time for every size plans a lone request's deadline with a burst's step time (it
stopped requests after one step with most of their deadline left) or a full batch's wait with a lone
request's. So there is one smoothed time per size class, the powers of two: 1, 2-3, 4-7, ..., 64-127.
A class not measured yet is estimated from the nearest measured one: a larger batch as that time scaled by
the ratio of the classes (a step's time grows at most in proportion to its rows), a smaller one as that
time (a smaller batch takes no longer).
"""

from __future__ import annotations


class StepTimes:
    """Smoothed wall time of one step, by batch size class (see the module docstring)."""

    def __init__(self, lone_step_s: float, smoothing: float) -> None:
        """`lone_step_s`: a one-request step's expected time until one is measured; `smoothing`: the weight
        of each new measurement."""
        self._smoothing = smoothing
        self._by_class: dict[int, float] = {0: lone_step_s}
        self._measured: set[int] = set()

    @staticmethod
    def size_class(batch: int) -> int:
        """The class of a batch of `batch` requests: floor(log2(batch)), 0 for a lone request."""
        return max(1, batch).bit_length() - 1

    def observe(self, batch: int, seconds: float) -> None:
        """Adds one step's measured wall time."""
        size = self.size_class(batch)
        known = self._by_class.get(size)
        self._by_class[size] = seconds if known is None else known + self._smoothing * (seconds - known)
        self._measured.add(size)

    def measured_near(self, batch: int) -> bool:
        """Whether a step of `batch` requests' size class, or of the class below it, has been timed (a lone step's
        start estimate is not): the time of such a step is estimated from a measurement at most twice smaller."""
        return any(size >= self.size_class(batch) - 1 for size in self._measured)

    def expected(self, batch: int) -> float:
        """The expected wall time of a step of `batch` requests."""
        size = self.size_class(batch)
        if size in self._by_class:
            return self._by_class[size]
        nearest = min(self._by_class, key=lambda known: (abs(known - size), known))
        return self._by_class[nearest] * 2 ** max(0, size - nearest)
