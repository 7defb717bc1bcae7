"""Three views of a Locust run, written when Locust quits (its stats CSV is written on a timer, and missed the
calls that ended in the last moments: 1,881 of 1,986 in one 20 s run):

- calls: every call counted once (a stream at its end), so calls/s is not inflated by the stream's
  extra first-step entry;
- accepted: successful calls only, per request type; Locust mixes the (fast) latencies of rejected
  calls into its percentiles, which would flatter an overload run;
- entries: every request type and model, as Locust's own stats have them.
"""

from __future__ import annotations

from locust.stats import RequestStats, StatsEntry

from loadtests.entry_names import STREAM_COMPLETE, UNARY

CALL_TYPES = (UNARY, STREAM_COMPLETE)
ALL_MODELS = "all models"


def _figures(entry: StatsEntry) -> dict:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "rps": round(entry.total_rps, 2),
        "p50_ms": entry.get_response_time_percentile(0.5),
        "p99_ms": entry.get_response_time_percentile(0.99),
    }


class CallStats:
    """Collects both views from Locust `request` events."""

    def __init__(self) -> None:
        self.calls = RequestStats()
        self.accepted = RequestStats()
        self.entries = RequestStats()

    def record(self, request_type: str, name: str, response_time: float, length: int, failure: str | None) -> None:
        """Account one `request` event."""
        self.entries.log_request(request_type, name, response_time, length)
        if failure is not None:
            self.entries.log_error(request_type, name, failure)
        if request_type in CALL_TYPES:
            self.calls.log_request("call", ALL_MODELS, response_time, length)
            if failure is not None:
                self.calls.log_error("call", ALL_MODELS, failure)
        if failure is None:
            self.accepted.log_request(request_type, ALL_MODELS, response_time, length)

    def to_json(self) -> dict:
        """{"calls": figures, "failures": {status: count}, "accepted": {request type or "all": figures},
        "entries": [{"type", "name", figures...}]}."""
        accepted = {entry.method: _figures(entry) for entry in self.accepted.entries.values()}
        accepted["all"] = _figures(self.accepted.total)
        failures = {str(error.error): error.occurrences for error in self.calls.errors.values()}
        entries = [{"type": entry.method, "name": entry.name, **_figures(entry)}
                   for entry in sorted(self.entries.entries.values(), key=lambda entry: (entry.method, entry.name))]
        return {"calls": _figures(self.calls.total), "failures": failures, "accepted": accepted, "entries": entries}
