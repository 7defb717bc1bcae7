"""Encoded examples: fixed evaluation sets, and the endless training streams the ACT carry draws from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainer.data.augment import augment_sudoku
from trainer.data.grids import reveal
from trainer.data.holdout import sample_indices
from trainer.data.sudoku import GridSplit
from trainer.data.tokenizer import UNK_ID


@dataclass
class EncodedSet:
    """A fixed, encoded evaluation set: tokens and exact targets (class ids, or cell symbols), and each
    example's source file where the set mixes files (figures are then also reported per source)."""

    tokens: np.ndarray  # int64 [N, L]
    targets: np.ndarray  # int64 [N] or [N, L]
    sources: np.ndarray | None = None  # str [N]

    def __len__(self) -> int:
        return len(self.tokens)

    def take(self, indices: np.ndarray) -> EncodedSet:
        """The examples at `indices`, in that order."""
        sources = None if self.sources is None else self.sources[indices]
        return EncodedSet(self.tokens[indices], self.targets[indices], sources)

    def head(self, count: int) -> EncodedSet:
        return self.take(np.arange(min(count, len(self))))

    def sample(self, limit: int, seed: int) -> EncodedSet:
        """A fixed random subset (seeded) of at most `limit` examples, in their order here."""
        return self.take(sample_indices(len(self), limit, seed))


def generator_at(state: dict[str, Any]) -> np.random.Generator:
    """A numpy generator (PCG64, `default_rng`'s) in the bit generator `state` a stream's `state()` recorded."""
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


class TextStream:
    """Epoch-shuffled stream of encoded texts, with optional teacher targets (`taught`: 1.0 for the rows they
    hold, 0.0 for rows the teacher did not read; None: every row)."""

    def __init__(
        self,
        tokens: np.ndarray,
        targets: np.ndarray,
        seed: int,
        soft_targets: np.ndarray | None = None,
        teacher_embeddings: np.ndarray | None = None,
        token_dropout: float = 0.0,
        taught: np.ndarray | None = None,
    ) -> None:
        self.tokens, self.targets = tokens, targets
        self.taught = taught
        self.token_dropout = token_dropout
        self.soft_targets, self.teacher_embeddings = soft_targets, teacher_embeddings
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(tokens))
        self.cursor = 0

    def state(self) -> dict[str, Any]:
        """Where the stream is (its generator's state, this epoch's order and the place in it), for a checkpoint: of
        numbers and tensors only, which a checkpoint is read back as (`checkpoint_file.read_checkpoint`)."""
        return {"rng": self.rng.bit_generator.state, "order": torch.from_numpy(self.order), "cursor": self.cursor}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()`: a resumed run draws the batches the uninterrupted one would have."""
        self.rng = generator_at(state["rng"])
        self.order, self.cursor = state["order"].cpu().numpy(), state["cursor"]

    def draw(self, count: int) -> dict[str, np.ndarray]:
        picked = []
        while len(picked) < count:
            if self.cursor == len(self.order):
                self.order, self.cursor = self.rng.permutation(len(self.tokens)), 0
            take = min(count - len(picked), len(self.order) - self.cursor)
            picked.extend(self.order[self.cursor : self.cursor + take])
            self.cursor += take
        idx = np.asarray(picked, dtype=np.int64)
        tokens = self.tokens[idx]
        if self.token_dropout:
            dropped = (tokens > UNK_ID) & (self.rng.random(tokens.shape) < self.token_dropout)
            tokens = np.where(dropped, UNK_ID, tokens)
        batch = {"tokens": tokens, "targets": self.targets[idx]}
        if self.soft_targets is not None:
            batch["soft_targets"] = self.soft_targets[idx]
        if self.teacher_embeddings is not None:
            batch["teacher_embeddings"] = self.teacher_embeddings[idx]
        if self.taught is not None:
            batch["taught"] = self.taught[idx]
        return batch


class SudokuStream:
    """Random training puzzles: revealed to a random number of givens, then augmented on the fly."""

    def __init__(
        self, split: GridSplit, seed: int, givens_min: int, givens_max: int, original_fraction: float
    ) -> None:
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.givens_min, self.givens_max = givens_min, givens_max
        self.original_fraction = original_fraction

    def state(self) -> dict[str, Any]:
        """The state of the generator every draw comes from, for a checkpoint."""
        return {"rng": self.rng.bit_generator.state}

    def restore(self, state: dict[str, Any]) -> None:
        self.rng = generator_at(state["rng"])

    def draw(self, count: int) -> dict[str, np.ndarray]:
        idx = self.rng.integers(0, len(self.split.puzzles), size=count)
        puzzles, solutions = self.split.puzzles[idx], self.split.solutions[idx]
        givens = self.rng.integers(self.givens_min, self.givens_max + 1, size=count)
        keep_original = self.rng.random(count) < self.original_fraction
        revealed = puzzles.copy()
        for target in np.unique(givens[~keep_original]):
            rows = np.flatnonzero((givens == target) & ~keep_original)
            revealed[rows] = reveal(puzzles[rows], solutions[rows], int(target), self.rng)
        revealed, solutions = augment_sudoku(revealed, solutions, self.rng)
        return {"tokens": revealed.astype(np.int64), "targets": solutions.astype(np.int64)}


def grid_set(split: GridSplit) -> EncodedSet:
    """Sudoku split as an evaluation set: cells 0..9 in, digits out."""
    return EncodedSet(split.puzzles.astype(np.int64), split.solutions.astype(np.int64), split.sources)
