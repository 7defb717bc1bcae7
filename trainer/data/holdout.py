"""Seeded hold-outs and subsets of a dataset's rows: the same inputs and seed always give the same rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HOLDOUT_FRACTION = 0.1  # of a user's labelled texts, held out for validation (and test, without a test file)
MAX_HOLDOUT_ROWS = 1000  # large files hold out fewer: calibration needs no more, training gains the rest


def holdout_fraction(rows: int) -> float:
    """The fraction of a user's `rows` labelled texts held out: HOLDOUT_FRACTION, or less on large files so
    that about MAX_HOLDOUT_ROWS are."""
    return min(HOLDOUT_FRACTION, MAX_HOLDOUT_ROWS / max(rows, 1))


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (kept, held out): round(fraction * count) rows of each label are held out;
    when that is none at all (every label small), one row of each of round(fraction * rows) random labels.

    Both index arrays are sorted (text datasets: 20 Newsgroups validation, a user's labelled texts).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, dtype=object)
    held: list[np.ndarray] = []
    for label in sorted(set(labels)):
        rows = np.flatnonzero(label_array == label)
        held.append(rng.permutation(rows)[: round(fraction * len(rows))])
    held_rows = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    if held_rows.size == 0 and fraction > 0:  # every label too small to round to one row (e.g. 5 per label)
        held_rows = _one_row_of_some_labels(label_array, max(1, round(fraction * len(labels))), rng)
    kept_rows = np.setdiff1d(np.arange(len(labels)), held_rows)
    return kept_rows, held_rows


def _one_row_of_some_labels(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted rows: one random row of each of `count` random labels that have at least two rows (so every
    label keeps one to train on)."""
    eligible = [label for label in sorted(set(labels.tolist())) if (labels == label).sum() >= 2]
    chosen = rng.permutation(len(eligible))[:count]
    return np.sort(np.array([rng.choice(np.flatnonzero(labels == eligible[i])) for i in chosen], dtype=np.int64))


def shuffled_holdout(count: int, seed: int, parts: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Split range(count) into (kept, held out) by a seeded shuffle: the first max(1, count // parts) rows of
    the shuffle are held out. Both stay in shuffled order (a user's grid file: its puzzles have no labels)."""
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, count // parts)
    return order[cut:], order[:cut]


def sample_indices(count: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset (seeded) of at most `limit` of `count` rows."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:limit])
