"""Load-adaptive compute end to end: an overloaded model answers with fewer steps (HALT_REASON_LOAD) instead of
refusing, through a real server, the SDK and the Prometheus metrics."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from test_service_support import LONG_MODEL
from trm_client import Budget, TRMClient
from trm_client.results import HaltReason

from trm_service.testing import ServerProcess

CALLERS = 24
MAX_STEPS = 40


def run_overloaded(bundle: Path, load_wait_ms: int) -> tuple[list, str]:
    """CALLERS concurrent never-halting requests against a batch of 2; the results and the metrics page."""
    flags = ["--max-batch-size", "2", "--max-queue", "64", "--load-wait-ms", str(load_wait_ms)]
    with ServerProcess([bundle], extra_args=flags) as server, TRMClient(server.target, timeout_s=120) as client:
        budget = Budget(max_steps=MAX_STEPS, halt_threshold=1.0)

        def call(index: int):
            return client.reason(LONG_MODEL, f"document {index} " * 50, budget=budget)

        with ThreadPoolExecutor(CALLERS) as pool:
            results = list(pool.map(call, range(CALLERS)))
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return results, page


def test_an_overloaded_model_answers_with_fewer_steps_instead_of_refusing(long_bundle: Path) -> None:
    results, page = run_overloaded(long_bundle, load_wait_ms=1)
    loaded = [r for r in results if r.halt_reason is HaltReason.LOAD]
    assert len(results) == CALLERS  # every request answered, none refused
    assert loaded and all(1 <= r.steps < MAX_STEPS for r in loaded)
    assert any(r.halt_reason is HaltReason.MAX_STEPS and r.steps == MAX_STEPS for r in results)  # as it drains
    assert f'trm_halt_reasons_total{{model="{LONG_MODEL}",reason="HALT_REASON_LOAD"}} {float(len(loaded))}' in page


def test_with_the_cap_off_every_request_runs_all_its_steps(long_bundle: Path) -> None:
    results, _ = run_overloaded(long_bundle, load_wait_ms=0)
    assert all((r.halt_reason, r.steps) == (HaltReason.MAX_STEPS, MAX_STEPS) for r in results)
