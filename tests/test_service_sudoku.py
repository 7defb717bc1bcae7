"""Sudoku rules used for `verified` and for rejecting givens that already break a rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trm_service.runtime.sudoku import is_solution, rule_violations

SOLVED = [(r * 3 + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)]


def test_a_complete_valid_grid_that_keeps_its_givens_is_a_solution():
    givens = [v if i % 3 == 0 else 0 for i, v in enumerate(SOLVED)]
    assert rule_violations(SOLVED, 9) == []
    assert is_solution(givens, SOLVED, 9)


def test_a_changed_given_an_empty_cell_or_a_duplicate_is_not_a_solution():
    givens = [0] * 81
    givens[0] = SOLVED[0] % 9 + 1  # a given the answer does not keep
    assert not is_solution(givens, SOLVED, 9)
    with_blank = [0, *SOLVED[1:]]
    assert not is_solution([0] * 81, with_blank, 9)
    swapped = list(SOLVED)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # rows stay valid, columns and boxes break
    assert not is_solution([0] * 81, swapped, 9)


def test_violations_name_the_unit_and_the_digit():
    grid = [0] * 81
    grid[0] = grid[8] = 5  # row 1
    grid[9 * 4 + 2] = grid[9 * 7 + 2] = 3  # column 3
    grid[9 * 3 + 3] = grid[9 * 5 + 5] = 7  # box 5
    assert rule_violations(grid, 9) == ["row 1 has two 5s", "column 3 has two 3s", "box 5 has two 7s"]


def test_four_by_four_grids_use_two_by_two_boxes():
    solved = [1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]
    assert is_solution([0] * 16, solved, 4)
    broken = [1, 2, 3, 4, 2, 1, 4, 3, 3, 4, 1, 2, 4, 3, 2, 1]  # rows/columns fine, box 1 has 1,2,2,1
    assert "box 1 has two 1s" in rule_violations(broken, 4)


@given(st.permutations(range(1, 10)))
def test_relabelling_the_digits_of_a_solution_keeps_it_a_solution(permutation):
    relabelled = [permutation[v - 1] for v in SOLVED]
    assert is_solution([0] * 81, relabelled, 9)
