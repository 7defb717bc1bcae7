"""Names and inputs shared by the client tests (a module of its own: `conftest` is ambiguous with tests/)."""

TEXT_MODEL = "intent-test"
GRID_MODEL = "sudoku-test"
N_SUP = 4
SUDOKU = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
