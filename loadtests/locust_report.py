"""Read the files a headless Locust run wrote (the stats CSV, the calls JSON of loadtests.call_stats)
and summarise them in one line."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EntryStats:
    """One row of Locust's stats CSV: a request type and model name."""

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


def _number(text: str) -> float:
    return 0.0 if text in ("", "N/A") else float(text)


def _entry(row: dict[str, str]) -> EntryStats:
    return EntryStats(
        type=row["Type"],
        name=row["Name"],
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        rps=_number(row["Requests/s"]),
        p50_ms=_number(row["50%"]),
        p99_ms=_number(row["99%"]),
    )


def read_result(prefix: Path) -> LocustResult:
    """Parse <prefix>_stats.csv and <prefix>.calls.json."""
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as handle:
        entries = [_entry(row) for row in csv.DictReader(handle) if row["Name"] != "Aggregated"]
    figures = json.loads(Path(f"{prefix}.calls.json").read_text())
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
