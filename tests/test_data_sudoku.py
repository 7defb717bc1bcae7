"""Sudoku data: CSV loading and its errors, rules, reveal, the fixed split and tiers, augmentations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.data.augment import augment_sudoku
from trainer.data.files import DataError
from trainer.data.grids import SUDOKU_SPLITS, SUDOKU_TIERS, load_grid_dataset, reveal, sudoku_splits
from trainer.data.sudoku import (
    GridSplit,
    load_sudoku_file,
    rule_violations,
    valid_solutions,
)

SUDOKU = Path(__file__).resolve().parents[2] / "shared" / "data" / "sudoku"
QUESTION = ".................1.....2.3......3.2...1.4......5....6..3......4.7..8...962...7..."
ANSWER = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"


def givens(puzzles: np.ndarray) -> np.ndarray:
    return (puzzles > 0).sum(axis=1)


def consistent(puzzles: np.ndarray, solutions: np.ndarray) -> bool:
    return bool(np.all((puzzles == 0) | (puzzles == solutions)))


def solution_keys(split: GridSplit) -> set[bytes]:
    return {row.tobytes() for row in split.solutions}


@pytest.fixture(scope="module")
def splits() -> dict[str, GridSplit]:
    return sudoku_splits(SUDOKU)


@pytest.fixture(scope="module")
def sample() -> GridSplit:
    """The first 300 test originals (17-clue and hard forum puzzles)."""
    hard = load_sudoku_file(SUDOKU / "forum_hardest_1905_11plus.csv")
    clue17 = load_sudoku_file(SUDOKU / "17_clue.csv")
    return GridSplit(
        np.concatenate([clue17.puzzles[:150], hard.puzzles[:150]]),
        np.concatenate([clue17.solutions[:150], hard.solutions[:150]]),
    )


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


# --- CSV loading -----------------------------------------------------------------------------------


def test_shared_csv_loads_as_uint8_grids() -> None:
    data = load_sudoku_file(SUDOKU / "17_clue.csv")
    assert data.puzzles.shape == data.solutions.shape == (49_158, 81)
    assert data.puzzles.dtype == data.solutions.dtype == np.uint8
    assert np.all(givens(data.puzzles) == 17)
    assert "".join(map(str, data.solutions[0])) == ANSWER


def test_user_csv_accepts_zero_and_dot_blanks(tmp_path: Path) -> None:
    zeros = QUESTION.replace(".", "0")
    path = write(tmp_path / "mine.csv", f"question,answer\n{QUESTION},{ANSWER}\n{zeros},{ANSWER}\n")
    data = load_sudoku_file(path)
    assert np.array_equal(data.puzzles[0], data.puzzles[1])
    assert data.puzzles[0, 17] == 1 and data.puzzles[0, 0] == 0


def test_user_jsonl_loads_like_the_same_csv(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "mine.csv", f"question,answer\n{QUESTION},{ANSWER}\n")
    jsonl = write(tmp_path / "mine.jsonl", f'{{"question": "{QUESTION}", "answer": "{ANSWER}"}}\n')
    from_csv, from_jsonl = load_sudoku_file(csv_file), load_sudoku_file(jsonl)
    assert np.array_equal(from_csv.puzzles, from_jsonl.puzzles)
    assert np.array_equal(from_csv.solutions, from_jsonl.solutions)
    missing = write(tmp_path / "bad.jsonl", f'{{"question": "{QUESTION}"}}\n')
    with pytest.raises(DataError) as caught:
        load_sudoku_file(missing)
    assert (caught.value.line, caught.value.problem) == (1, "missing field 'answer' (the object has: question)")


def replaced(text: str, position: int, char: str) -> str:
    return text[:position] + char + text[position + 1 :]


CSV_CASES = [
    (f"quest,answer\n{QUESTION},{ANSWER}\n", 1, "missing column 'question' (the header has: quest, answer)"),
    (f"question\n{QUESTION}\n", 1, "missing column 'answer' (the header has: question)"),
    (
        f"question,answer\n{QUESTION},{ANSWER}\n{QUESTION[:-1]},{ANSWER}\n",
        3,
        "question has 80 characters, expected 81",
    ),
    (f"question,answer\n{QUESTION},{ANSWER}0\n", 2, "answer has 82 characters, expected 81"),
    (
        f"question,answer\n{replaced(QUESTION, 4, 'x')},{ANSWER}\n",
        2,
        "question has illegal character 'x' at position 5 (row 1, column 5); allowed: 1-9, 0 or '.'",
    ),
    (
        f"question,answer\n{QUESTION},{replaced(ANSWER, 80, '.')}\n",
        2,
        "answer has illegal character '.' at position 81 (row 9, column 9); allowed: 1-9",
    ),
    (
        f"question,answer\n{QUESTION},{ANSWER}\n{replaced(QUESTION, 17, '2')},{ANSWER}\n",
        3,
        "answer contradicts the given 2 at position 18 (row 2, column 9): the answer has 1",
    ),
    (f"question,answer\n{'.' * 81},{'123456789' * 9}\n", 2,
     "answer is not a valid Sudoku solution: column 1 has 9 1s"),
    (f"question,answer\n{QUESTION},{ANSWER},extra\n", 2, "row has 3 fields but the header has 2 "
     "(a field holding a comma or a line break goes in double quotes)"),
    ("question,answer\n", None, "no data rows"),
    ("", None, "file is empty"),
]


@pytest.mark.parametrize(("content", "line", "problem"), CSV_CASES)
def test_sudoku_csv_errors(tmp_path: Path, content: str, line: int | None, problem: str) -> None:
    path = write(tmp_path / "puzzles.csv", content)
    with pytest.raises(DataError) as caught:
        load_sudoku_file(path)
    assert (caught.value.path, caught.value.line, caught.value.problem) == (str(path), line, problem)


# --- rules -----------------------------------------------------------------------------------------


def test_solution_validity(sample: GridSplit) -> None:
    solution = sample.solutions[0]
    swapped = solution.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert valid_solutions(np.stack([solution, swapped, sample.puzzles[0]])).tolist() == [True, False, False]
    assert valid_solutions(sample.solutions).all()


@pytest.mark.parametrize(("cell_a", "cell_b"), [(0, 8), (0, 72), (0, 20)], ids=["row", "column", "box"])
def test_rule_violations(cell_a: int, cell_b: int) -> None:
    puzzles = np.zeros((3, 81), dtype=np.uint8)
    puzzles[:, cell_a] = 5
    puzzles[1:, cell_b] = (5, 6)
    assert rule_violations(puzzles).tolist() == [False, True, False]


def test_real_puzzles_do_not_violate_rules(sample: GridSplit) -> None:
    assert not rule_violations(sample.puzzles).any()


# --- reveal ----------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 81))
def test_reveal_fills_blanks_from_the_solution(sample: GridSplit, seed: int, count: int) -> None:
    before = sample.puzzles.copy()
    shown = reveal(sample.puzzles, sample.solutions, count, np.random.default_rng(seed))
    assert np.array_equal(sample.puzzles, before)
    assert shown.dtype == np.uint8
    assert consistent(shown, sample.solutions)
    assert np.all(shown[before > 0] == before[before > 0])
    assert np.array_equal(givens(shown), np.maximum(count, givens(before)))


def test_reveal_is_random_per_puzzle(sample: GridSplit) -> None:
    same = np.repeat(sample.puzzles[:1], 20, axis=0)
    shown = reveal(same, np.repeat(sample.solutions[:1], 20, axis=0), 40, np.random.default_rng(0))
    assert len({row.tobytes() for row in shown}) == 20


# --- the fixed split and tiers ---------------------------------------------------------------------


def test_split_names_and_sizes(splits: dict[str, GridSplit]) -> None:
    assert (
        set(splits)
        == set(SUDOKU_SPLITS)
        == {
            "train",
            *(f"{part}_{tier}" for part in ("val", "test") for tier in ("easy", "medium", "hard")),
        }
    )
    assert all(len(splits[f"test_{tier}"]) == 1_000 for tier in SUDOKU_TIERS)
    assert all(len(splits[f"val_{tier}"]) == 500 for tier in SUDOKU_TIERS)
    assert 96_000 < len(splits["train"]) < 97_924 - 1_500 + 1


def test_no_held_out_solution_is_ever_trained_on(splits: dict[str, GridSplit]) -> None:
    train = solution_keys(splits["train"])
    test = solution_keys(splits["test_hard"])
    val = solution_keys(splits["val_hard"])
    assert len(test) == 1_000 and len(val) == 500
    assert not train & test
    assert not train & val
    assert not val & test


@pytest.mark.parametrize("part", ["val", "test"])
def test_tiers_have_exact_given_counts_and_share_originals(splits: dict[str, GridSplit], part: str) -> None:
    hard = splits[f"{part}_hard"]
    assert set(np.unique(givens(hard.puzzles))) <= set(range(17, 38))
    for tier in ("easy", "medium"):
        derived = splits[f"{part}_{tier}"]
        assert np.all(givens(derived.puzzles) == SUDOKU_TIERS[tier])
        assert np.array_equal(derived.solutions, hard.solutions)
        assert np.all(derived.puzzles[hard.puzzles > 0] == hard.puzzles[hard.puzzles > 0])
        assert consistent(derived.puzzles, derived.solutions)


def test_splits_are_valid_and_consistent(splits: dict[str, GridSplit]) -> None:
    for split in splits.values():
        assert consistent(split.puzzles, split.solutions)
    assert valid_solutions(splits["test_hard"].solutions).all()


def test_both_files_are_in_every_held_out_split_and_each_puzzle_names_its_file(splits: dict[str, GridSplit]) -> None:
    assert np.sum(givens(splits["test_hard"].puzzles) == 17) == 500
    assert np.sum(givens(splits["val_hard"].puzzles) == 17) == 250
    for name, split in splits.items():
        assert split.sources is not None and len(split.sources) == len(split), name
        assert set(split.sources) == {"17_clue", "forum_hardest_1905_11plus"}, name
    for tier in SUDOKU_TIERS:  # the tiers reveal givens of the same originals, from the same files
        assert np.array_equal(splits[f"test_{tier}"].sources, splits["test_hard"].sources)
    hard = splits["test_hard"]
    assert np.all(givens(hard.puzzles[hard.sources == "17_clue"]) == 17)
    assert np.all(givens(hard.puzzles[hard.sources == "forum_hardest_1905_11plus"]) > 17)


def test_dispatcher_is_fixed_for_a_seed(splits: dict[str, GridSplit]) -> None:
    test = load_grid_dataset(SUDOKU, "test")
    assert np.array_equal(test.puzzles, splits["test_hard"].puzzles)
    other = sudoku_splits(SUDOKU, seed=1, test_per_file=20, val_per_file=10)
    assert not np.array_equal(other["test_hard"].puzzles, splits["test_hard"].puzzles[:40])


def test_dispatcher_loads_a_user_file(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.csv", f"question,answer\n{QUESTION},{ANSWER}\n")
    assert load_grid_dataset(path, "ignored").puzzles.shape == (1, 81)


def test_dispatcher_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing 17_clue\.csv, forum_hardest_1905_11plus\.csv"):
        load_grid_dataset(tmp_path, "train")
    with pytest.raises(DataError, match="unknown split 'test_extreme'"):
        load_grid_dataset(SUDOKU, "test_extreme")
    with pytest.raises(DataError, match="no such file or folder"):
        load_grid_dataset(tmp_path / "nope.csv", "train")


# --- augmentations ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_augmentations_keep_grids_valid_and_consistent(sample: GridSplit, seed: int) -> None:
    puzzles, solutions = augment_sudoku(sample.puzzles, sample.solutions, np.random.default_rng(seed))
    assert puzzles.shape == solutions.shape == sample.puzzles.shape
    assert valid_solutions(solutions).all()
    assert consistent(puzzles, solutions)
    assert np.array_equal(givens(puzzles), givens(sample.puzzles))
    assert not rule_violations(puzzles).any()


def test_augmentations_are_drawn_per_row() -> None:
    solution = np.array([int(c) for c in ANSWER], dtype=np.uint8)
    puzzle = np.array([0 if c == "." else int(c) for c in QUESTION], dtype=np.uint8)
    batch = 200
    _, solutions = augment_sudoku(
        np.tile(puzzle, (batch, 1)), np.tile(solution, (batch, 1)), np.random.default_rng(0)
    )
    assert len({row.tobytes() for row in solutions}) == batch
    # the digit in the top-left cell is relabelled uniformly, so all nine digits appear
    assert set(solutions[:, 0]) == set(range(1, 10))


def test_augmentations_include_transposes() -> None:
    """Row/column permutations and relabelling keep which cells share a digit within a row; a transpose
    turns the original rows into columns."""
    solution = np.array([int(c) for c in ANSWER], dtype=np.uint8)
    marked = np.zeros(81, dtype=np.uint8)
    marked[:9] = np.arange(1, 10)  # the first row as givens
    puzzles, _ = augment_sudoku(
        np.tile(marked, (64, 1)), np.tile(solution, (64, 1)), np.random.default_rng(3)
    )
    grids = puzzles.reshape(64, 9, 9) > 0
    in_one_row = grids.sum(axis=2).max(axis=1) == 9
    in_one_column = grids.sum(axis=1).max(axis=1) == 9
    assert np.all(in_one_row ^ in_one_column)
    assert 16 < in_one_column.sum() < 48
