"""Validity-preserving Sudoku augmentations, drawn independently for every row of a batch."""

from __future__ import annotations

import numpy as np

from trainer.data.sudoku import CELLS


def augment_sudoku(
    puzzles: np.ndarray, solutions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random Sudoku symmetry per row to puzzles and solutions (each [B, 81], 0 = blank).

    The symmetry relabels the digits 1..9, permutes rows within bands and the bands, columns within
    stacks and the stacks, and transposes with probability 0.5; puzzle and solution of a row get the
    same one, so valid solutions stay valid and consistent with their puzzles.
    """
    puzzles = np.asarray(puzzles)
    solutions = np.asarray(solutions)
    if puzzles.shape != solutions.shape or puzzles.ndim != 2 or puzzles.shape[1] != CELLS:
        raise ValueError(
            f"expected puzzles and solutions of shape [B, {CELLS}], got {puzzles.shape}, {solutions.shape}"
        )
    cells = _cell_permutations(len(puzzles), rng)
    digits = _digit_maps(len(puzzles), rng)
    return _transform(puzzles, cells, digits), _transform(solutions, cells, digits)


def _transform(grids: np.ndarray, cells: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Move every row's cells by `cells` and relabel their values by `digits`."""
    moved = np.take_along_axis(grids, cells, axis=1).astype(np.intp)
    return np.take_along_axis(digits, moved, axis=1)


def _line_permutations(batch: int, rng: np.random.Generator) -> np.ndarray:
    """[B, 9] orders of the 9 rows (or columns): bands shuffled, then the lines within each band."""
    bands = np.argsort(rng.random((batch, 3)), axis=1)
    within = np.argsort(rng.random((batch, 3, 3)), axis=2)
    return (3 * bands[:, :, None] + within).reshape(batch, 9)


def _cell_permutations(batch: int, rng: np.random.Generator) -> np.ndarray:
    """[B, 81] source cell of every output cell."""
    rows = _line_permutations(batch, rng)
    cols = _line_permutations(batch, rng)
    source = rows[:, :, None] * 9 + cols[:, None, :]
    transpose = rng.random(batch) < 0.5
    source = np.where(transpose[:, None, None], source.transpose(0, 2, 1), source)
    return source.reshape(batch, CELLS)


def _digit_maps(batch: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [B, 10]: a random relabelling of the digits 1..9, with 0 (blank) kept."""
    maps = np.zeros((batch, 10), dtype=np.uint8)
    maps[:, 1:] = 1 + np.argsort(rng.random((batch, 9)), axis=1)
    return maps
