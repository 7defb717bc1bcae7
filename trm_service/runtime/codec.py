"""Inputs to token ids, and step logits to answers (top-k labels, or a grid with per-cell confidence)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from trm.v1 import trm_pb2

from trm_bundle.manifest import BundleError, GridInput, OutOfScope, TextInput
from trm_service.runtime import sudoku


class TextEncoder:
    """Tokenises text with the bundle's tokenizer.json, which pads and truncates to max_tokens."""

    def __init__(self, tokenizer_path: Path, spec: TextInput) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
            raise BundleError(f"{tokenizer_path}: not a readable tokenizers file: {exc}") from exc
        self.max_tokens = spec.max_tokens
        for probe in ("a", "word " * (2 * spec.max_tokens)):
            produced = len(self._tokenizer.encode(probe).ids)
            if produced != spec.max_tokens:
                raise BundleError(
                    f"{tokenizer_path}: must pad and truncate to input.max_tokens={spec.max_tokens} "
                    f"(it produced {produced} ids)"
                )

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text`, exactly max_tokens long, int64."""
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)


def grid_values(cells: str, spec: GridInput) -> list[int]:
    """Cell ids of an already validated grid string: 0 for a blank, 1 + alphabet index for a symbol."""
    return [0 if ch in spec.blank else spec.alphabet.index(ch) + 1 for ch in cells]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in float64 for stable sums."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class DecodedStep:
    """The answer of one step, and the distribution it came from (used to measure change)."""

    answer: trm_pb2.Answer
    probabilities: np.ndarray

    def change_from(self, previous: DecodedStep | None) -> float:
        """Total-variation distance (classification) or fraction of changed cells (grid); 1.0 at step 1."""
        if previous is None:
            return 1.0
        if self.probabilities.ndim == 1:
            return float(0.5 * np.abs(self.probabilities - previous.probabilities).sum())
        current = self.probabilities.argmax(axis=-1)
        return float((current != previous.probabilities.argmax(axis=-1)).mean())


class ClassificationReader:
    """Reads class logits [num_labels] as top-k labels with probabilities and an out-of-scope flag."""

    def __init__(self, labels: tuple[str, ...], out_of_scope: OutOfScope | None, top_k: int) -> None:
        self._labels = labels
        self._out_of_scope = out_of_scope
        self._top_k = top_k

    def read(self, logits: np.ndarray) -> DecodedStep:
        """Decode one request's logits."""
        probabilities = softmax(logits)
        order = np.argsort(-probabilities, kind="stable")[: self._top_k]
        top = [
            trm_pb2.LabelScore(label=self._labels[i], probability=float(probabilities[i])) for i in order
        ]
        best = top[0]
        out_of_scope = self._out_of_scope is not None and (
            best.label == self._out_of_scope.label or best.probability < self._out_of_scope.threshold
        )
        answer = trm_pb2.ClassAnswer(
            label=best.label, confidence=best.probability, top=top, out_of_scope=out_of_scope
        )
        return DecodedStep(answer=trm_pb2.Answer(classification=answer), probabilities=probabilities)


class GridReader:
    """Reads cell logits [cells, symbols] as a grid string, per-cell confidence and the sudoku check."""

    def __init__(self, labels: tuple[str, ...], spec: GridInput, givens: list[int]) -> None:
        self._labels = labels
        self._spec = spec
        self._givens = givens

    def read(self, logits: np.ndarray) -> DecodedStep:
        """Decode one request's logits."""
        probabilities = softmax(logits)
        choice = probabilities.argmax(axis=-1)
        cells = "".join(self._labels[i] for i in choice)
        confidence = probabilities[np.arange(len(choice)), choice]
        answer = trm_pb2.GridAnswer(
            rows=self._spec.rows,
            cols=self._spec.cols,
            cells=cells,
            confidence=confidence.astype(np.float32).tolist(),
            verified=self._verified(cells),
        )
        return DecodedStep(answer=trm_pb2.Answer(grid=answer), probabilities=probabilities)

    def _verified(self, cells: str) -> bool:
        if self._spec.rules != "sudoku":
            return False
        values = [self._spec.alphabet.index(ch) + 1 if ch in self._spec.alphabet else 0 for ch in cells]
        return sudoku.is_solution(self._givens, values, self._spec.rows)
