"""Sudoku rules on row-major grids of ints: 0 is a blank, 1..size a digit."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence


def _units(size: int) -> Iterator[tuple[str, list[int]]]:
    """Every row, column and box as (human name, cell indices)."""
    box = math.isqrt(size)
    for r in range(size):
        yield f"row {r + 1}", [r * size + c for c in range(size)]
    for c in range(size):
        yield f"column {c + 1}", [r * size + c for r in range(size)]
    for b in range(size):
        top, left = (b // box) * box, (b % box) * box
        yield f"box {b + 1}", [(top + i) * size + left + j for i in range(box) for j in range(box)]


def rule_violations(values: Sequence[int], size: int) -> list[str]:
    """Describe every digit that appears twice in a row, column or box, e.g. 'row 1 has two 5s'."""
    problems = []
    for unit, cells in _units(size):
        digits = [values[i] for i in cells if values[i]]
        for digit in sorted({d for d in digits if digits.count(d) > 1}):
            problems.append(f"{unit} has two {digit}s")
    return problems


def is_solution(givens: Sequence[int], answer: Sequence[int], size: int) -> bool:
    """True when `answer` is complete, breaks no rule and keeps every non-blank given."""
    if len(answer) != size * size or len(givens) != size * size:
        return False
    if any(not 1 <= v <= size for v in answer):
        return False
    if any(g and g != a for g, a in zip(givens, answer, strict=True)):
        return False
    return not rule_violations(answer, size)
