"""Grid datasets: the fixed train/val/test split of the shared Sudoku files, difficulty tiers, a user's file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.data.files import DataError
from trainer.data.sudoku import CELLS, GridSplit, load_sudoku_file

SUDOKU_FILES = ("17_clue.csv", "forum_hardest_1905_11plus.csv")
# Tier name -> number of givens after reveal(); None keeps the original puzzle.
SUDOKU_TIERS: dict[str, int | None] = {"easy": 45, "medium": 35, "hard": None}
SUDOKU_SPLITS = ("train", *(f"{part}_{tier}" for part in ("val", "test") for tier in SUDOKU_TIERS))
SPLIT_ALIASES = {"test": "test_hard", "val": "val_hard"}


def reveal(puzzles: np.ndarray, solutions: np.ndarray, givens: int, rng: np.random.Generator) -> np.ndarray:
    """Copies of the puzzles with random blanks filled from the solutions until each has `givens` givens.

    Puzzles that already have at least `givens` givens come back unchanged. Adding givens that agree
    with the solution keeps a unique solution unique.
    """
    puzzles = np.asarray(puzzles)
    solutions = np.asarray(solutions)
    if puzzles.shape != solutions.shape or puzzles.ndim != 2 or puzzles.shape[1] != CELLS:
        raise ValueError(
            f"expected puzzles and solutions of shape [N, {CELLS}], got {puzzles.shape}, {solutions.shape}"
        )
    if not 0 <= givens <= CELLS:
        raise ValueError(f"givens must be in [0, {CELLS}], got {givens}")
    keys = rng.random(puzzles.shape)
    keys[puzzles != 0] = -1.0  # existing givens sort first, so they are always among the chosen cells
    chosen = np.argsort(keys, axis=1)[:, :givens]
    shown = np.zeros(puzzles.shape, dtype=bool)
    np.put_along_axis(shown, chosen, True, axis=1)
    return np.where(shown & (puzzles == 0), solutions, puzzles).astype(np.uint8)


def sudoku_splits(
    root: Path, seed: int = 0, test_per_file: int = 500, val_per_file: int = 250
) -> dict[str, GridSplit]:
    """The fixed split of both shared Sudoku files in `root`.

    Each file is permuted with a seed; its first `test_per_file` puzzles (with distinct solutions) are
    the test originals, the next `val_per_file` the validation originals, the rest train. Rows whose
    solution also occurs in val or test are dropped from train (and test solutions from val), so no
    held-out puzzle or derivative of it is ever trained on. `*_hard` holds the originals; `*_easy`
    and `*_medium` reveal givens of the same originals up to SUDOKU_TIERS with a fixed seed. Every
    split records each puzzle's source file (`GridSplit.sources`: the file's stem).
    """
    parts: dict[str, list[GridSplit]] = {"train": [], "val": [], "test": []}
    for file_index, name in enumerate(SUDOKU_FILES):
        loaded = load_sudoku_file(Path(root) / name)
        data = GridSplit(loaded.puzzles, loaded.solutions, np.full(len(loaded), Path(name).stem))
        rng = np.random.default_rng([seed, 0, file_index])
        test_rows, val_rows = _held_out_rows(data, rng, test_per_file, val_per_file, Path(root) / name)
        train_rows = np.setdiff1d(np.arange(len(data)), np.concatenate([test_rows, val_rows]))
        for part, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows)):
            parts[part].append(data.take(rows))
    test = concatenate_splits(parts["test"])
    val = _without_solutions(concatenate_splits(parts["val"]), _solution_keys(test))
    train = _without_solutions(concatenate_splits(parts["train"]), _solution_keys(test) | _solution_keys(val))
    splits = {"train": train}
    for part_index, (part, originals) in enumerate((("val", val), ("test", test))):
        for tier_index, (tier, givens) in enumerate(SUDOKU_TIERS.items()):
            if givens is None:
                splits[f"{part}_{tier}"] = originals
            else:
                rng = np.random.default_rng([seed, 1, part_index, tier_index])
                puzzles = reveal(originals.puzzles, originals.solutions, givens, rng)
                splits[f"{part}_{tier}"] = GridSplit(puzzles, originals.solutions, originals.sources)
    return splits


def check_sudoku_folder(path: Path) -> None:
    """Raises DataError unless `path` is a folder holding the shared Sudoku CSVs."""
    if not path.is_dir():
        raise DataError(path, None, "no such file or folder")
    missing = [name for name in SUDOKU_FILES if not (path / name).is_file()]
    if missing:
        raise DataError(path, None, f"folder is not the shared Sudoku data: missing {', '.join(missing)}")


def load_grid_dataset(path: Path, split: str, seed: int = 0) -> GridSplit:
    """Load `split` of the grid dataset at `path`.

    A folder holding both shared Sudoku CSVs gives sudoku_splits(path, seed)[split], where split is
    one of SUDOKU_SPLITS, or "test" / "val" for the hard (original) tier. A file is the user's own
    question,answer CSV, and `split` is ignored.
    """
    path = Path(path)
    if path.is_file():
        return load_sudoku_file(path)
    check_sudoku_folder(path)
    key = SPLIT_ALIASES.get(split, split)
    if key not in SUDOKU_SPLITS:
        raise DataError(path, None, f"unknown split '{split}' (expected one of {', '.join(SUDOKU_SPLITS)})")
    return sudoku_splits(path, seed)[key]


def _held_out_rows(
    data: GridSplit, rng: np.random.Generator, test_count: int, val_count: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the test and val originals: the first rows of a permutation with distinct solutions."""
    order = rng.permutation(len(data))
    seen: set[bytes] = set()
    distinct: list[int] = []
    for row in order:
        key = data.solutions[row].tobytes()
        if key not in seen:
            seen.add(key)
            distinct.append(int(row))
            if len(distinct) == test_count + val_count:
                break
    if len(distinct) < test_count + val_count:
        raise DataError(path, None, f"only {len(distinct)} distinct solutions, fewer than test + val")
    rows = np.array(distinct, dtype=np.int64)
    return rows[:test_count], rows[test_count:]


def concatenate_splits(splits: list[GridSplit]) -> GridSplit:
    """One split holding the puzzles of `splits`, in order (with their sources when all record them)."""
    sources = None if any(s.sources is None for s in splits) else np.concatenate([s.sources for s in splits])
    return GridSplit(
        np.concatenate([s.puzzles for s in splits]), np.concatenate([s.solutions for s in splits]), sources
    )


def _solution_keys(split: GridSplit) -> set[bytes]:
    return {row.tobytes() for row in split.solutions}


def _without_solutions(split: GridSplit, excluded: set[bytes]) -> GridSplit:
    keep = np.array([row.tobytes() not in excluded for row in split.solutions], dtype=bool)
    return split.take(np.flatnonzero(keep))
