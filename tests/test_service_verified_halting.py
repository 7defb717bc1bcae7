"""Verified halting end to end: the shipped Sudoku model behind a real server, called through the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from trm_client import Budget, TRMClient
from trm_client.results import HaltReason

from trm_service.runtime.sudoku import is_solution
from trm_service.testing import ServerProcess

SUDOKU = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "sudoku"
SOLUTION = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"
# the solution with 12 cells blanked: every blank is the only digit its row misses
PUZZLE = "".join("." if index % 7 == 0 else cell for index, cell in enumerate(SOLUTION))


@pytest.fixture(scope="module")
def client() -> Iterator[TRMClient]:
    with ServerProcess([SUDOKU]) as server, TRMClient(server.target) as sdk:
        yield sdk


def test_a_verified_answer_stops_at_once(client: TRMClient) -> None:
    result = client.reason("sudoku", grid=PUZZLE, budget=Budget(halt_threshold=1.0))  # never halts on confidence
    assert result.halt_reason is HaltReason.VERIFIED
    assert result.answer.cells == SOLUTION and result.answer.verified
    assert result.steps < client.model("sudoku").limits.max_steps


def test_min_steps_come_before_the_check(client: TRMClient) -> None:
    result = client.reason("sudoku", grid=PUZZLE, budget=Budget(min_steps=3, halt_threshold=1.0))
    assert (result.halt_reason, result.steps) == (HaltReason.VERIFIED, 3)


def test_a_request_may_refine_past_a_verified_answer(client: TRMClient) -> None:
    budget = Budget(max_steps=4, halt_threshold=1.0, continue_when_verified=True)
    result = client.reason("sudoku", grid=PUZZLE, budget=budget)
    assert (result.halt_reason, result.steps) == (HaltReason.MAX_STEPS, 4)
    givens = [0 if cell == "." else int(cell) for cell in PUZZLE]
    assert is_solution(givens, [int(cell) for cell in result.answer.cells], 9)


def test_the_stream_ends_on_the_verified_step(client: TRMClient) -> None:
    steps = list(client.reason_stream("sudoku", grid=PUZZLE, budget=Budget(halt_threshold=1.0)))
    assert steps[-1].final and steps[-1].halt_reason is HaltReason.VERIFIED
    assert [step.final for step in steps[:-1]] == [False] * (len(steps) - 1)
    assert steps[-1].answer.verified and not any(step.answer.verified for step in steps[:-1])
