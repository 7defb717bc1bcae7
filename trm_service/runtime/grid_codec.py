"""The codec of grid models: grid strings to cell ids, cell logits to a grid with per-cell confidence."""

from __future__ import annotations

import numpy as np
from trm.v1 import trm_pb2

from trm_bundle.manifest import BundleError, GridInput, Manifest
from trm_bundle.probabilities import softmax
from trm_service.runtime import sudoku
from trm_service.runtime.codec import DecodedStep, EncodedRequest, InputError
from trm_service.scheduler.ticket import StepResult


def grid_values(cells: str, spec: GridInput) -> list[int]:
    """Cell ids of a grid string (a request's cells or an answer's): 1 + alphabet index for a symbol, 0 for
    anything else (a blank, or an answer label outside the alphabet)."""
    return [spec.alphabet.find(ch) + 1 for ch in cells]


class GridCodec:
    """Checks ReasonRequest.grid (shape, symbols, the puzzle's rules) and reads cell logits as a grid."""

    def __init__(self, manifest: Manifest) -> None:
        spec = manifest.input
        if not isinstance(spec, GridInput):
            raise BundleError(f"model {manifest.name!r} does not take grids")
        self._spec = spec
        self._name = manifest.name
        self._labels = manifest.labels

    def encode(self, request: trm_pb2.ReasonRequest) -> EncodedRequest:
        """A well-formed grid whose givens break no rule, and no top_k (a grid has no labels to rank)."""
        spec = self._spec
        kind = request.WhichOneof("input")
        if kind is None:
            raise InputError(f"the request has no input: model {self._name!r} takes a grid (ReasonRequest.grid)")
        if kind != "grid":
            raise InputError(f"model {self._name!r} solves {spec.rows}x{spec.cols} grids: set ReasonRequest.grid")
        if request.top_k:
            raise InputError(f"top_k ranks labels or candidates; model {self._name!r} answers a whole grid, one "
                             f"symbol per cell: leave top_k unset (0), got {request.top_k}")
        cells = request.grid.cells
        values = self._check(cells)
        reader = GridReader(self._labels, spec, values)
        return EncodedRequest(
            tokens=np.asarray(values, dtype=np.int64),
            reader=reader,
            logged_input=cells,
            verifier=reader.verified if spec.rules == "sudoku" else None,
        )

    def _check(self, cells: str) -> list[int]:
        """Cell values (0 = blank) of a well-formed grid whose givens break no rule."""
        spec = self._spec
        if len(cells) != spec.cells:
            raise InputError(
                f"grid.cells must have {spec.cells} symbols ({spec.rows}x{spec.cols}, row-major), "
                f"got {len(cells)}"
            )
        blanks = " or ".join(repr(b) for b in spec.blank)
        for index, ch in enumerate(cells):
            if ch not in spec.alphabet and ch not in spec.blank:
                row, col = divmod(index, spec.cols)
                raise InputError(
                    f"grid.cells[{index}] (row {row + 1}, column {col + 1}) is {ch!r}: use one of "
                    f"{spec.alphabet!r} for a given and {blanks} for a blank"
                )
        values = grid_values(cells, spec)
        if spec.rules == "sudoku":
            problems = sudoku.rule_violations(values, spec.rows)
            if problems:
                raise InputError(f"the givens break the sudoku rules: {'; '.join(problems)}")
        return values


class GridReader:
    """Reads cell logits [cells, symbols] as a grid string, per-cell confidence and the sudoku check."""

    def __init__(self, labels: tuple[str, ...], spec: GridInput, givens: list[int]) -> None:
        self._labels = labels
        self._spec = spec
        self._givens = givens

    def read(self, result: StepResult) -> DecodedStep:
        """Decode one request's step."""
        probabilities = softmax(result.logits)
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

    def verified(self, logits: np.ndarray) -> bool:
        """Whether the answer of `logits` passes the rule check (complete, no rule broken, givens kept)."""
        return self._verified("".join(self._labels[i] for i in logits.argmax(axis=-1)))

    def _verified(self, cells: str) -> bool:
        if self._spec.rules != "sudoku":
            return False
        return sudoku.is_solution(self._givens, grid_values(cells, self._spec), self._spec.rows)
