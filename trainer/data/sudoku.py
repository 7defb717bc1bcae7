"""Sudoku grids: puzzles and solutions in memory, the rules of the game, and Sudoku CSV files.

Grids are flat: 81 cells, row by row, 0 for a blank and 1..9 for a digit (the model's input ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.data.files import DataError, read_records


@dataclass(frozen=True, eq=False)
class GridSplit:
    """Sudoku puzzles (uint8 [N, 81], 0 = blank) and their solutions (uint8 [N, 81], digits 1..9).

    `sources` names each puzzle's source file (its stem) where a split draws on several files, so
    figures can be reported per file."""

    puzzles: np.ndarray
    solutions: np.ndarray
    sources: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.puzzles.shape != self.solutions.shape or self.puzzles.ndim != 2:
            raise ValueError(f"puzzles {self.puzzles.shape} and solutions {self.solutions.shape} must match")
        if self.sources is not None and self.sources.shape != (len(self.puzzles),):
            raise ValueError(f"{len(self.puzzles)} puzzles but sources of shape {self.sources.shape}")

    def __len__(self) -> int:
        return len(self.puzzles)

    def take(self, indices: np.ndarray) -> GridSplit:
        """The puzzles at `indices`, in that order."""
        sources = None if self.sources is None else self.sources[indices]
        return GridSplit(self.puzzles[indices], self.solutions[indices], sources)


# --- the rules, vectorised over batches of flat grids ----------------------------------------------

CELLS = 81
GRID_COLUMNS = ("question", "answer")  # a user's grid file: the puzzle and its solution
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


# --- CSV files: a header with question,answer columns (other columns ignored), one puzzle a row ------

ILLEGAL = 255


def _cell_table(symbols: dict[str, int]) -> np.ndarray:
    """Lookup from ASCII code to cell value; ILLEGAL for every other character."""
    table = np.full(128, ILLEGAL, dtype=np.uint8)
    for symbol, value in symbols.items():
        table[ord(symbol)] = value
    return table


DIGIT_SYMBOLS = {str(d): d for d in range(1, 10)}
QUESTION_TABLE = _cell_table({**DIGIT_SYMBOLS, "0": 0, ".": 0})
ANSWER_TABLE = _cell_table(DIGIT_SYMBOLS)


def load_sudoku_file(path: Path) -> GridSplit:
    """Load puzzles (81 chars of 1-9, 0 or '.') and their solutions (81 digits 1-9) from a .csv or .tsv file (a
    header with question,answer) or a .jsonl or .json file (objects with string question and answer fields).

    The answer must be a valid Sudoku solution that agrees with every given of its question.
    """
    path = Path(path)
    lines, questions, answers = _read_columns(path)
    puzzles = _parse_cells(path, lines, questions, "question", QUESTION_TABLE, "1-9, 0 or '.'")
    solutions = _parse_cells(path, lines, answers, "answer", ANSWER_TABLE, "1-9")
    contradicted = _first_flagged_cell((puzzles != 0) & (puzzles != solutions))
    if contradicted is not None:
        row, cell = contradicted
        raise DataError(
            path,
            lines[row],
            f"answer contradicts the given {puzzles[row, cell]} at {_cell_name(cell)}: the answer has "
            f"{solutions[row, cell]}",
        )
    bad_rows = np.flatnonzero(~valid_solutions(solutions))
    if bad_rows.size:
        row = bad_rows[0]
        repeat = _repeat(solutions[row])
        latin = " (a Latin square? the grid preset trains Sudoku, whose 3x3 boxes hold 1-9 once too)" if (
            repeat.startswith("box")) else ""
        raise DataError(path, lines[row], f"answer is not a valid Sudoku solution: {repeat}{latin}")
    return GridSplit(puzzles, solutions)


def _cell_name(cell: int) -> str:
    """E.g. "position 18 (row 2, column 9)": a cell of the 81-character string, and where it is in the grid."""
    return f"position {cell + 1} (row {cell // 9 + 1}, column {cell % 9 + 1})"


_UNIT_NAMES = [f"{kind} {i}" for kind in ("row", "column", "box") for i in range(1, 10)]


def _repeat(solution: np.ndarray) -> str:
    """The first unit of a complete grid that repeats a digit, e.g. "row 1 has two 3s"."""
    for name, cells in zip(_UNIT_NAMES, UNITS, strict=True):
        digits, counts = np.unique(solution[cells], return_counts=True)
        if counts.max() > 1:
            return f"{name} has {counts.max()} {digits[counts.argmax()]}s"
    raise ValueError("the grid repeats no digit in any row, column or box")


def _read_columns(path: Path) -> tuple[list[int], list[str], list[str]]:
    """(1-based line, question, answer) of every row, as three lists."""
    lines: list[int] = []
    questions: list[str] = []
    answers: list[str] = []
    for line, (question, answer) in read_records(path, GRID_COLUMNS):
        lines.append(line)
        questions.append(question.strip())
        answers.append(answer.strip())
    return lines, questions, answers


def _parse_cells(
    path: Path, lines: list[int], strings: list[str], column: str, table: np.ndarray, allowed: str
) -> np.ndarray:
    """uint8 [N, 81] cell values of 81-character strings, looked up in `table`."""
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    bad_rows = np.flatnonzero(lengths != CELLS)
    if bad_rows.size:
        row = bad_rows[0]
        raise DataError(path, lines[row], f"{column} has {lengths[row]} characters, expected {CELLS}"
                                          + _length_hint(strings[row]))
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").reshape(-1, CELLS)
    values = np.where(codes < len(table), table[np.minimum(codes, len(table) - 1)], ILLEGAL)
    illegal = _first_flagged_cell(values == ILLEGAL)
    if illegal is not None:
        row, cell = illegal
        raise DataError(
            path,
            lines[row],
            f"{column} has illegal character {chr(codes[row, cell])!r} at {_cell_name(cell)}; allowed: {allowed}",
        )
    return values.astype(np.uint8)


def _length_hint(cells: str) -> str:
    """Why a grid's string is not 81 characters long, where its characters say: separators between the cells, a
    grid of another size, or leading zeros a spreadsheet dropped."""
    separators = sum(not (char.isalnum() or char == ".") for char in cells)
    if separators and len(cells) - separators == CELLS:
        return (f" ({separators} of them separators: line breaks, spaces or marks between the cells): write the 81 "
                "cells on one line, nothing between them")
    side = math.isqrt(len(cells))
    if side * side == len(cells) and side in (4, 6, 12, 16, 25):  # other Sudoku sizes
        return (f" (a {side}x{side} grid?): the grid preset trains 9x9 Sudoku only, 81 cells of 1-9 with '.' or "
                "'0' for a blank")
    if cells.isdigit() and len(cells) < CELLS:
        return (": a spreadsheet may have read the grid as a number and dropped its leading zeros; write blanks as "
                "'.', or store the column as text")
    return ""


def _first_flagged_cell(flags: np.ndarray) -> tuple[int, int] | None:
    """(row, cell) of the first flagged cell of bool [N, 81] `flags`, or None."""
    rows = np.flatnonzero(flags.any(axis=1))
    return None if rows.size == 0 else (int(rows[0]), int(np.argmax(flags[rows[0]])))
