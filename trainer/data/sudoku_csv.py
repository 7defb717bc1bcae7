"""Sudoku CSV files: a header with question,answer columns (other columns ignored), one puzzle a row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from trainer.data.containers import GridSplit
from trainer.data.errors import DataError
from trainer.data.reading import read_nonempty_text
from trainer.data.sudoku_rules import CELLS, valid_solutions

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


def load_sudoku_csv(path: Path) -> GridSplit:
    """Load puzzles (81 chars of 1-9, 0 or '.') and their solutions (81 digits 1-9) from a CSV file.

    The answer must be a valid Sudoku solution that agrees with every given of its question.
    """
    path = Path(path)
    lines, questions, answers = _read_columns(path)
    puzzles = _parse_cells(path, lines, questions, "question", QUESTION_TABLE, "1-9, 0 or '.'")
    solutions = _parse_cells(path, lines, answers, "answer", ANSWER_TABLE, "1-9")
    contradicted = (puzzles != 0) & (puzzles != solutions)
    bad_rows = np.flatnonzero(contradicted.any(axis=1))
    if bad_rows.size:
        row = bad_rows[0]
        cell = int(np.argmax(contradicted[row]))
        raise DataError(
            path,
            lines[row],
            f"answer contradicts the given {puzzles[row, cell]} at position {cell + 1} "
            f"(the answer has {solutions[row, cell]})",
        )
    bad_rows = np.flatnonzero(~valid_solutions(solutions))
    if bad_rows.size:
        raise DataError(path, lines[bad_rows[0]], "answer is not a valid Sudoku solution")
    return GridSplit(puzzles, solutions)


def _read_columns(path: Path) -> tuple[list[int], list[str], list[str]]:
    """(1-based line, question, answer) of every row, as three lists."""
    reader = csv.reader(io.StringIO(read_nonempty_text(path), newline=""))
    lines: list[int] = []
    questions: list[str] = []
    answers: list[str] = []
    try:
        header = [name.strip() for name in next(reader)]
        for column in ("question", "answer"):
            if column not in header:
                raise DataError(path, 1, f"missing column '{column}' (the header has: {', '.join(header)})")
        question_at, answer_at = header.index("question"), header.index("answer")
        end_of_previous = reader.line_num
        for fields in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(path, line, f"row has {len(fields)} fields but the header has {len(header)}")
            lines.append(line)
            questions.append(fields[question_at].strip())
            answers.append(fields[answer_at].strip())
    except csv.Error as exc:
        raise DataError(path, reader.line_num, f"malformed CSV: {exc}") from exc
    if not lines:
        raise DataError(path, None, "no puzzles after the header")
    return lines, questions, answers


def _parse_cells(
    path: Path, lines: list[int], strings: list[str], column: str, table: np.ndarray, allowed: str
) -> np.ndarray:
    """uint8 [N, 81] cell values of 81-character strings, looked up in `table`."""
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    bad_rows = np.flatnonzero(lengths != CELLS)
    if bad_rows.size:
        row = bad_rows[0]
        raise DataError(path, lines[row], f"{column} has {lengths[row]} characters, expected {CELLS}")
    codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype="<u4").reshape(-1, CELLS)
    values = np.where(codes < len(table), table[np.minimum(codes, len(table) - 1)], ILLEGAL)
    illegal = values == ILLEGAL
    bad_rows = np.flatnonzero(illegal.any(axis=1))
    if bad_rows.size:
        row = bad_rows[0]
        cell = int(np.argmax(illegal[row]))
        raise DataError(
            path,
            lines[row],
            f"{column} has illegal character {chr(codes[row, cell])!r} at position {cell + 1} "
            f"(allowed: {allowed})",
        )
    return values.astype(np.uint8)
