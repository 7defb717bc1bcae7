"""Seeded, stratified hold-out of a fraction of a labelled split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_holdout(labels: Sequence[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (kept, held out): round(fraction * count) rows of each label are held out.

    Both index arrays are sorted; the same labels, fraction and seed always give the same split.
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
    kept_rows = np.setdiff1d(np.arange(len(labels)), held_rows)
    return kept_rows, held_rows
