"""The bench's bars against the plain server: a ratio just under its bar reads as under it."""

from __future__ import annotations

from loadtests.bench import PLAIN_BAR_MODELS, PLAIN_BAR_RATIO, ServerFigures, plain_bars
from loadtests.closed_loop import LoadResult


def _figures(name: str, calls_per_s: dict[int, int]) -> ServerFigures:
    load = {c: LoadResult(c, latencies_ms=[10.0] * calls, elapsed_s=1.0) for c, calls in calls_per_s.items()}
    return ServerFigures(name, load={model: load for model in PLAIN_BAR_MODELS})


def test_a_ratio_a_hair_under_its_bar_fails_and_says_so_in_three_decimals():
    """bench38 printed 'FAIL: ... service 1.00x the plain server (bar >= 1.0x)' for 751.8 against 752.7 req/s."""
    plain = _figures("plain", {c: 1000 for c in PLAIN_BAR_RATIO})
    ours = _figures("service", {c: round(999 * bar) for c, bar in PLAIN_BAR_RATIO.items()})
    ratio_bars = [(line, passed) for line, passed in plain_bars(ours, plain) if "the plain server" in line]
    assert len(ratio_bars) == len(PLAIN_BAR_MODELS) * len(PLAIN_BAR_RATIO)
    for line, passed in ratio_bars:
        assert not passed and ("0.999x" in line or "1.998x" in line), line
    ours = _figures("service", {c: round(1000 * bar) for c, bar in PLAIN_BAR_RATIO.items()})
    assert all(passed for line, passed in plain_bars(ours, plain) if "the plain server" in line)
