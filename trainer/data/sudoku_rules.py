"""Sudoku rules on flat grids (81 cells, row by row, 0 = blank), vectorised over batches."""

from __future__ import annotations

import numpy as np

CELLS = 81
DIGITS = np.arange(1, 10)


def _unit_cells() -> np.ndarray:
    """The 27 units (9 rows, 9 columns, 9 boxes) as an int array [27, 9] of cell indices."""
    grid = np.arange(CELLS).reshape(9, 9)
    boxes = grid.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return np.concatenate([grid, grid.T, boxes])


UNITS = _unit_cells()


def valid_solutions(grids: np.ndarray) -> np.ndarray:
    """bool [N]: each grid of [N, 81] is complete and every row, column and box holds 1..9 once."""
    units = np.sort(np.asarray(grids)[:, UNITS], axis=-1)
    return np.all(units == DIGITS, axis=(1, 2))


def rule_violations(puzzles: np.ndarray) -> np.ndarray:
    """bool [N]: the givens of each puzzle of [N, 81] repeat a digit within a row, column or box."""
    units = np.sort(np.asarray(puzzles)[:, UNITS], axis=-1)
    repeated = (units[..., 1:] == units[..., :-1]) & (units[..., 1:] != 0)
    return np.any(repeated, axis=(1, 2))


def is_valid_sudoku_solution(grid: np.ndarray) -> bool:
    """True if the grid (81 cells or 9x9) is a complete, valid Sudoku solution."""
    return bool(valid_solutions(np.asarray(grid).reshape(1, CELLS))[0])


def violates_rules(puzzle: np.ndarray) -> bool:
    """True if the puzzle's givens (81 cells or 9x9, 0 = blank) break a row, column or box rule."""
    return bool(rule_violations(np.asarray(puzzle).reshape(1, CELLS))[0])
