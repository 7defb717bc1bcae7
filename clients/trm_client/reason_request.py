"""Builds trm.v1.ReasonRequest messages from a caller's text or grid."""

from __future__ import annotations

from collections.abc import Sequence

from trm.v1 import trm_pb2

from trm_client.model_info import Budget

GridInput = str | Sequence[str] | Sequence[Sequence[int | str]]
"""A grid as row-major cells ("53..7...."), as row strings, or as rows of digits (0 = blank)."""


def grid_cells(grid: GridInput) -> str:
    """Flattens any accepted grid form into the row-major cell string the API expects."""
    if isinstance(grid, str):
        return "".join(grid.split())
    return "".join(row if isinstance(row, str) else "".join(str(cell) for cell in row) for row in grid)


def build_reason_request(
    model: str,
    text: str | None,
    grid: GridInput | None,
    *,
    version: str = "",
    budget: Budget | None = None,
    top_k: int = 0,
) -> trm_pb2.ReasonRequest:
    """Builds a ReasonRequest with exactly one of ``text`` or ``grid``.

    Raises:
        ValueError: when neither or both inputs are given.
    """
    if (text is None) == (grid is None):
        raise ValueError("give exactly one of text or grid")
    request = trm_pb2.ReasonRequest(model=model, version=version, top_k=top_k)
    if budget is not None:
        request.budget.CopyFrom(budget.to_proto())
    if text is not None:
        request.text = text
    else:
        request.grid.cells = grid_cells(grid)
    return request
