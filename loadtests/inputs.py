"""Real request inputs for the load tests, read at run time from the test splits in the shared data folder."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainer.data.sudoku import load_sudoku_file
from trainer.data.text import load_clinc150, load_newsgroups

DATA_DIR_ENV = "TRM_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
SUDOKU_CSV = "sudoku/17_clue.csv"
SUDOKU_SAMPLE = 5000
SUDOKU_SEED = 20240517


@dataclass(frozen=True)
class ModelInputs:
    """Inputs for one hosted model: texts, or 81-character row-major grids ('0' = blank)."""

    model: str
    kind: Literal["text", "grid"]
    samples: list[str]

    def pick(self, rng: random.Random) -> str:
        """One sample, uniformly at random."""
        return self.samples[rng.randrange(len(self.samples))]


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The shared data folder: `explicit`, else $TRM_DATA_DIR, else ../shared/data beside the repository."""
    chosen = explicit or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    path = Path(chosen).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist (set --data-dir or ${DATA_DIR_ENV})")
    return path


def intent_texts(root: Path) -> list[str]:
    """CLINC150 test split (in-scope queries followed by the out-of-scope test queries)."""
    return load_clinc150(root / "clinc150", "test").texts


def routing_texts(root: Path) -> list[str]:
    """20 Newsgroups test split as subject + newline + body (never the label-leaking headers)."""
    return load_newsgroups(root / "newsgroups20", "test").texts


def sudoku_grids(root: Path) -> list[str]:
    """A fixed, seeded sample of 17-clue puzzles as 81-character strings ('0' = blank)."""
    puzzles = load_sudoku_file(root / SUDOKU_CSV).puzzles
    rows = random.Random(SUDOKU_SEED).sample(range(len(puzzles)), min(SUDOKU_SAMPLE, len(puzzles)))
    return ["".join(map(str, puzzles[row])) for row in rows]


DEFAULT_MODELS: dict[str, tuple[Literal["text", "grid"], Callable[[Path], list[str]]]] = {
    "intent-clinc150": ("text", intent_texts),
    "routing-20ng": ("text", routing_texts),
    "sudoku": ("grid", sudoku_grids),
}


def load_inputs(root: Path, models: list[str]) -> dict[str, ModelInputs]:
    """Inputs for each named default model, loaded from `root`."""
    unknown = sorted(set(models) - DEFAULT_MODELS.keys())
    if unknown:
        raise ValueError(f"no test inputs for {unknown}; known models: {sorted(DEFAULT_MODELS)}")
    loaded = {}
    for model in models:
        kind, loader = DEFAULT_MODELS[model]
        loaded[model] = ModelInputs(model, kind, loader(root))
    return loaded
