"""Read the CSV and JSON files a headless Locust run wrote, and summarise them in one line."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EntryStats:
    """One row of Locust's stats CSV (a request type and name, or the Aggregated row)."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LocustResult:
    """A run's per-entry stats, total, failures by status name and latency of accepted calls."""

    entries: list[EntryStats]
    total: EntryStats
    failures_by_error: Counter[str]
    accepted: list[dict] = field(default_factory=list)

    def accepted_of(self, request_type: str) -> dict:
        """Count, p50_ms and p99_ms of the successful calls of one request type ("Aggregated": all)."""
        empty = {"type": request_type, "requests": 0, "p50_ms": 0, "p99_ms": 0}
        return next((row for row in self.accepted if row["type"] == request_type), empty)


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


def read_result(prefix: Path, accepted_json: Path | None = None) -> LocustResult:
    """Parse <prefix>_stats.csv, <prefix>_failures.csv and (optionally) the accepted-latency JSON."""
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as handle:
        rows = [_entry(row) for row in csv.DictReader(handle)]
    total = next(row for row in rows if row.name == "Aggregated")
    failures: Counter[str] = Counter()
    with open(f"{prefix}_failures.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            failures[row["Error"]] += int(row["Occurrences"])
    accepted = json.loads(accepted_json.read_text()) if accepted_json and accepted_json.exists() else []
    return LocustResult([row for row in rows if row is not total], total, failures, accepted)


def summary_line(label: str, result: LocustResult) -> str:
    """ "<label>: 123.4 req/s, p50 12 ms, p99 45 ms, failures 0 (0.00%)" plus the failures by status."""
    total = result.total
    share = 100.0 * total.failures / total.requests if total.requests else 0.0
    line = (
        f"{label}: {total.rps:.1f} req/s, p50 {total.p50_ms:.0f} ms, p99 {total.p99_ms:.0f} ms, "
        f"failures {total.failures} ({share:.2f}%)"
    )
    if result.failures_by_error:
        line += (
            " ["
            + ", ".join(f"{name} {count}" for name, count in result.failures_by_error.most_common())
            + "]"
        )
    return line
