"""Read the calls JSON a headless Locust run wrote (loadtests.call_stats) and summarise it in one line."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EntryStats:
    """The figures of one request type and model name."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LocustResult:
    """A run's per-entry stats, failed calls by gRPC status name, and per-call and accepted-call figures."""

    entries: list[EntryStats]
    failures_by_error: Counter[str]
    calls: dict
    accepted: dict

    def accepted_of(self, request_type: str) -> dict:
        """Figures of the successful calls of one request type ("all": every type), zeros if none."""
        return self.accepted.get(request_type, {"requests": 0, "failures": 0, "rps": 0, "p50_ms": 0, "p99_ms": 0})


def read_result(prefix: Path) -> LocustResult:
    """Parse <prefix>.calls.json."""
    figures = json.loads(Path(f"{prefix}.calls.json").read_text())
    entries = [EntryStats(**entry) for entry in figures["entries"]]
    return LocustResult(entries, Counter(figures["failures"]), figures["calls"], figures["accepted"])


def summary_line(label: str, result: LocustResult) -> str:
    """One line: calls/s, p50, p99 and failures (with their share and gRPC status names)."""
    calls = result.calls
    share = 100.0 * calls["failures"] / calls["requests"] if calls["requests"] else 0.0
    line = (
        f"{label}: {calls['rps']:.1f} requests/s, p50 {calls['p50_ms']} ms, p99 {calls['p99_ms']} ms, "
        f"failures {calls['failures']} ({share:.2f}%)"
    )
    if result.failures_by_error:
        line += " [" + ", ".join(f"{code} {n}" for code, n in result.failures_by_error.most_common()) + "]"
    return line
