"""Builds trm.v1.ReasonRequest messages from a caller's text or grid."""

from __future__ import annotations

from collections.abc import Sequence

from trm.v1 import trm_pb2

from trm_client.model_info import Budget, check_request_count

GridInput = str | Sequence[str] | Sequence[Sequence[int | str]]
"""A grid as row-major cells ("53..7...."), as row strings, or as rows of digits (0 = blank)."""


def grid_cells(grid: GridInput) -> str:
    """Flattens any accepted grid form into the row-major cell string the API expects.

    Raises:
        TypeError: for a grid that is none of the accepted forms.
        ValueError: for a cell that is not one symbol (a digit 0-9 in rows of ints), rows of unequal lengths or
            a lone surrogate.
    """
    if isinstance(grid, str):
        return "".join(checked_unicode("grid", grid).split())
    if isinstance(grid, bytes | bytearray):
        raise TypeError(f"grid must be a string of cells, got {type(grid).__name__}: decode it first")
    if not isinstance(grid, Sequence):
        raise TypeError(f"grid must be a string of cells, a list of row strings or a list of rows of digits, "
                        f"got {type(grid).__name__}")
    rows = [_row_cells(row, number) for number, row in enumerate(grid, start=1)]
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise ValueError(f"grid row {number} has {len(row)} cells and row 1 has {len(rows[0])}: every row of a "
                             "grid has the same number of cells")
    return "".join(rows)


def checked_unicode(name: str, value: str) -> str:
    """`value` if it can be sent (UTF-8); else a ValueError naming `name` and where it holds a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} holds U+{ord(value[exc.start]):04X} at position {exc.start}, half of a character "
                         "(a lone surrogate, e.g. an emoji cut in two): send valid Unicode text") from None
    return value


def _row_cells(row: str | Sequence[int | str], number: int) -> str:
    if isinstance(row, str):
        return "".join(checked_unicode(f"grid row {number}", row).split())
    if not isinstance(row, Sequence):
        raise TypeError(f"grid row {number} must be a string or a list of cells, got {type(row).__name__}")
    cells = []
    for column, cell in enumerate(row, start=1):
        symbol = str(cell) if isinstance(cell, int | str) and not isinstance(cell, bool) else ""
        if len(symbol) != 1:
            raise ValueError(f"grid row {number}, column {column} holds {cell!r}: a cell is one symbol "
                             "(a digit 0-9, 0 = blank, or one character)")
        cells.append(symbol)
    return "".join(cells)


def checked_names(**names: object) -> None:
    """A TypeError naming the argument that is not a string (a model name or version), a ValueError for one that
    is not valid Unicode."""
    for name, value in names.items():
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        checked_unicode(name, value)


def build_model_request(name: str, version: str) -> trm_pb2.GetModelRequest:
    """A GetModelRequest, its name and version checked as `checked_names` does."""
    checked_names(name=name, version=version)
    return trm_pb2.GetModelRequest(name=name, version=version)


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
        ValueError: when neither or both inputs are given, top_k is out of range or the input is not valid
            Unicode.
        TypeError: for a model, version or text that is not a string, or a budget that is not a Budget.
    """
    checked_names(model=model, version=version)
    if (text is None) == (grid is None):
        raise ValueError("give exactly one of text or grid")
    if text is not None and not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a trm_client.Budget, got {type(budget).__name__}")
    check_request_count("top_k", top_k)
    request = trm_pb2.ReasonRequest(model=model, version=version, top_k=top_k)
    if budget is not None:
        request.budget.CopyFrom(budget.to_proto())
    if text is not None:
        request.text = checked_unicode("text", text)
    else:
        request.grid.cells = grid_cells(grid)
    return request
