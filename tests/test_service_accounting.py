"""The per-request accounting's fast paths keep their meaning: memoised metric children count into
the same series (written on the event loop's turn after the answer), request ids stay unique, and the collector
tuning applies."""

from __future__ import annotations

import asyncio
import gc
import re

import grpc
from prometheus_client import CollectorRegistry

from trm_bundle.manifest import load_bundle
from trm_service.api.call_record import CallRecord, new_request_id
from trm_service.config import DEFAULT_MODELS_DIR as MODELS_DIR
from trm_service.observability.metrics import ServiceMetrics
from trm_service.scheduler.halting import HaltReason
from trm_service.server import GC_YOUNG_THRESHOLD, tune_garbage_collector


def test_memoised_children_count_into_the_labelled_series() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    first = metrics.child(metrics.requests, "intent", "Reason", "OK")
    assert metrics.child(metrics.requests, "intent", "Reason", "OK") is first
    assert metrics.child(metrics.requests, "intent", "Reason", "NOT_FOUND") is not first

    async def three_calls() -> None:
        for _ in range(3):
            record = CallRecord("Reason", metrics, log_inputs=False)
            record.model = "intent"
            record.finish(grpc.StatusCode.OK)
        assert registry.get_sample_value("trm_requests_total", labels) == 0  # written on the loop's next turn
        await asyncio.sleep(0)

    labels = {"model": "intent", "method": "Reason", "code": "OK"}
    asyncio.run(three_calls())
    metrics.requests.labels("intent", "Reason", "OK").inc()  # the unmemoised path: the same series
    assert registry.get_sample_value("trm_requests_total", labels) == 4
    assert registry.get_sample_value("trm_request_latency_seconds_count", {"model": "intent", "method": "Reason"}) == 3


def test_calls_refused_at_once_are_counted_and_not_timed() -> None:
    """QA: RESOURCE_EXHAUSTED refusals of about 0.1 ms each pulled Sudoku's p50 latency on the dashboard from 259 ms
    (its answered calls) to 18 ms."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    async def calls() -> None:
        for code in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            record = CallRecord("Reason", metrics, log_inputs=False)
            record.model = "sudoku"
            record.finish(code)
        await asyncio.sleep(0)

    asyncio.run(calls())
    counted = registry.get_sample_value
    assert sum(counted("trm_requests_total", {"model": "sudoku", "method": "Reason", "code": code})
               for code in ("OK", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "NOT_FOUND", "DEADLINE_EXCEEDED",
                            "CANCELLED")) == 6
    assert counted("trm_request_latency_seconds_count", {"model": "sudoku", "method": "Reason"}) == 3


def test_an_answer_that_flags_itself_is_counted_under_its_flag() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    async def calls() -> None:
        for flag in ("unsure", None, "unsure", "out_of_scope"):
            record = CallRecord("Reason", metrics, log_inputs=False)
            record.model, record.flag = "m", flag
            record.finish(grpc.StatusCode.OK)
        await asyncio.sleep(0)

    asyncio.run(calls())
    flagged = {flag: registry.get_sample_value("trm_flagged_answers_total", {"model": "m", "flag": flag})
               for flag in ("unsure", "out_of_scope", "unverified")}
    assert flagged == {"unsure": 2, "out_of_scope": 1, "unverified": None}


def test_an_answer_the_caller_never_received_counts_in_no_answer_metric() -> None:
    """Probe: 20 intent calls of a 1 ms deadline all failed DEADLINE_EXCEEDED at the caller, and 8 of them counted in
    trm_halt_reasons_total, trm_steps_used and trm_flagged_answers_total (their answers were ready too late)."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)

    async def calls() -> None:
        for code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.OK):
            record = CallRecord("Reason", metrics, log_inputs=False)
            record.model, record.steps, record.halt_reason, record.flag = "m", 3, HaltReason.HALTED, "out_of_scope"
            record.finish(code)
        await asyncio.sleep(0)

    asyncio.run(calls())
    counted = registry.get_sample_value
    assert counted("trm_halt_reasons_total", {"model": "m", "reason": "HALT_REASON_HALTED"}) == 1
    assert counted("trm_steps_used_count", {"model": "m"}) == 1
    assert counted("trm_flagged_answers_total", {"model": "m", "flag": "out_of_scope"}) == 1
    assert counted("trm_requests_total", {"model": "m", "method": "Reason", "code": "DEADLINE_EXCEEDED"}) == 1


def test_request_ids_are_unique_32_hex_digits() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_garbage_collector_tuning_raises_the_young_threshold_and_freezes_startup_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def _prometheus_median(registry: CollectorRegistry, model: str) -> float:
    """histogram_quantile(0.5, trm_steps_used_bucket): linear inside the bucket that holds the median rank."""
    samples = [sample for metric in registry.collect() if metric.name == "trm_steps_used"
               for sample in metric.samples if sample.name.endswith("_bucket") and sample.labels["model"] == model]
    bounds = [(float(sample.labels["le"]), sample.value) for sample in samples]
    rank = bounds[-1][1] / 2
    below_bound, below_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            return below_bound + (bound - below_bound) * (rank - below_count) / (count - below_count)
        below_bound, below_count = bound, count
    raise AssertionError("no bucket holds the median")


def test_a_whole_number_of_steps_is_its_own_median_up_to_sudokus_steps_and_a_dictation_answer_has_a_bucket() -> None:
    """The median of requests that all ran k steps reads k on a dashboard for every k up to Sudoku's N_sup (8);
    the longest code-dictation answer (N_sup steps for each of its most characters) stays below the last bound."""
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    sudoku = load_bundle(MODELS_DIR / "sudoku").manifest.recursion.N_sup
    for steps in range(1, sudoku + 1):
        for _ in range(5):
            metrics.steps.labels(f"ran-{steps}").observe(steps)
        assert _prometheus_median(registry, f"ran-{steps}") == steps
    dictation = load_bundle(MODELS_DIR / "code-dictation").manifest
    most = dictation.recursion.N_sup * dictation.sequence.max_tokens
    metrics.steps.labels("dictation").observe(most)
    assert _prometheus_median(registry, "dictation") <= most + 0.5 < float("inf")
