"""In-memory dataset splits shared by the loaders and the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TextSplit:
    """Texts with their label names; `lines` optionally gives each row's 1-based line in its source file."""

    texts: list[str]
    labels: list[str]
    lines: list[int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if self.lines is not None and len(self.lines) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.lines)} line numbers")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray) -> TextSplit:
        """The rows at `indices`, in that order."""
        lines = None if self.lines is None else [self.lines[i] for i in indices]
        return TextSplit([self.texts[i] for i in indices], [self.labels[i] for i in indices], lines)


@dataclass(frozen=True, eq=False)
class GridSplit:
    """Sudoku puzzles (uint8 [N, 81], 0 = blank) and their solutions (uint8 [N, 81], digits 1..9)."""

    puzzles: np.ndarray
    solutions: np.ndarray

    def __post_init__(self) -> None:
        if self.puzzles.shape != self.solutions.shape or self.puzzles.ndim != 2:
            raise ValueError(f"puzzles {self.puzzles.shape} and solutions {self.solutions.shape} must match")

    def __len__(self) -> int:
        return len(self.puzzles)
