"""Seeded hold-outs and subsets of a dataset's rows: the same inputs and seed always give the same rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.data.tokenizer import words_read

HOLDOUT_FRACTION = 0.1  # of a user's labelled texts, held out for validation (and as much again for test without a
# test file: what validation chose is never scored on the rows that chose it)
MAX_HOLDOUT_ROWS = 1000  # large files hold out fewer: calibration needs no more, training gains the rest


def holdout_fraction(rows: int) -> float:
    """The fraction of a user's `rows` labelled texts held out: HOLDOUT_FRACTION, or less on large files so
    that about MAX_HOLDOUT_ROWS are."""
    return min(HOLDOUT_FRACTION, MAX_HOLDOUT_ROWS / max(rows, 1))


def train_val_test_holdout(
    labels: Sequence[str], seed: int, texts: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, validation, test) row indices of a user's labelled texts given without a test file: the
    test rows held out first, then as many validation rows from the rest, each `holdout_fraction` of the file
    and stratified as `stratified_holdout` holds out (rows of one text together, every label left to train on)."""
    fraction = holdout_fraction(len(labels))
    group_of = _row_groups(labels, texts)
    rest, test = _held_out_groups(labels, fraction, seed, group_of)
    rest_labels = [labels[i] for i in rest]
    train, val = _held_out_groups(rest_labels, min(1.0, fraction * len(labels) / max(len(rest), 1)), seed,
                                  _in_order_of_appearance(group_of[rest]))
    return rest[train], rest[val], test


def same_text_key(text: str) -> str:
    """What makes two texts the same input to a model: the words its tokenizer reads (`words_read`: case, accents
    and spacing aside)."""
    return " ".join(words_read(text))


def inputs_seen(trained: Sequence[str], tested: Sequence[str]) -> int:
    """How many of the `tested` inputs a `trained` one matches (`same_text_key`): test rows that score what the
    model saw."""
    seen = {same_text_key(text) for text in trained}
    return sum(same_text_key(text) in seen for text in tested)


def stratified_holdout(
    labels: Sequence[str], fraction: float, seed: int, texts: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (kept, held out): round(fraction * count) rows of each label are held out
    (never all of them); the labels for which that is none (small ones) hold out their share together: one row
    of each of round(fraction * their rows) of them, at random (a file of 5 rows per label: one row of a tenth of
    its labels; beside a large label, a few rare ones are tested too).

    With `texts`, the rows of one text (`same_text_key`) are held out or kept together, as a group counted
    under its first row's label, so that a hold-out never scores a text the model trained on; every label
    keeps at least one group. Without repeated texts the split is the same as without `texts`.
    Both index arrays are sorted (text datasets: 20 Newsgroups validation, a user's labelled texts).
    """
    return _held_out_groups(labels, fraction, seed, _row_groups(labels, texts))


def _held_out_groups(
    labels: Sequence[str], fraction: float, seed: int, group_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`stratified_holdout` of rows whose groups (`_groups`: numbered in the order their texts first appear) are
    `group_of`."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels, dtype=object)
    first_rows = np.unique(group_of, return_index=True)[1]  # each group's first row, in group order
    group_labels = label_array[first_rows]
    group_sizes = np.bincount(group_of, minlength=len(first_rows))
    held: list[np.ndarray] = []
    small: list[str] = []  # the labels whose share rounds to no row
    for label in sorted(set(labels)):
        order = rng.permutation(np.flatnonzero(group_labels == label))
        if order.size == 0:  # the label only ever follows another's row of the same text
            continue
        target = round(fraction * group_sizes[order].sum())
        if target == 0:
            small.append(label)
        taken = np.cumsum(group_sizes[order]) - group_sizes[order] < target  # groups until `target` rows
        taken[-1] = False  # the label keeps one group to train on
        held.append(order[taken])
    held_groups = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
    if small and fraction > 0:  # their share together; at least one row where nothing else is held out
        of_small = np.isin(group_labels, small)
        count = max(0 if held_groups.size else 1, round(fraction * group_sizes[of_small].sum()))
        held_groups = np.concatenate([held_groups, _one_group_of_some_labels(group_labels, count, rng, of_small)])
    held_groups = _keeping_every_label(held_groups, group_of, label_array)
    is_held = np.isin(group_of, held_groups)
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


def _keeping_every_label(held_groups: np.ndarray, group_of: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`held_groups` less those that would take the last training rows of a label (a text given several labels
    puts a later label's rows in its first label's group): for each such label, in sorted order, its first
    held group stays in training."""
    held = list(held_groups)
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        if np.isin(group_of[rows], held).all():
            held.remove(next(group for group in held if group in set(group_of[rows].tolist())))
    return np.array(held, dtype=np.int64)


def _groups(texts: Sequence[str]) -> np.ndarray:
    """Each row's group: rows of the same text (`same_text_key`) share one; groups are numbered in the order
    their texts first appear."""
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(same_text_key(text), len(numbers)) for text in texts], dtype=np.int64)


def _row_groups(labels: Sequence[str], texts: Sequence[str] | None) -> np.ndarray:
    """Each row's group: its text's (`_groups`), or a group of its own without texts."""
    return _groups(texts) if texts is not None else np.arange(len(labels))


def _in_order_of_appearance(group_of: np.ndarray) -> np.ndarray:
    """Some rows' groups numbered again from 0 in the order they first appear among those rows, as `_groups` numbers
    the groups of those rows' texts."""
    groups, first_rows, inverse = np.unique(group_of, return_index=True, return_inverse=True)
    number_of = np.empty(len(groups), dtype=np.int64)
    number_of[np.argsort(first_rows, kind="stable")] = np.arange(len(groups))
    return number_of[inverse]


def _one_group_of_some_labels(
    group_labels: np.ndarray, count: int, rng: np.random.Generator, among: np.ndarray
) -> np.ndarray:
    """One random group of each of `count` random labels of the groups `among` (a mask) that have at least two
    groups (so every label keeps one to train on)."""
    eligible = [label for label in sorted(set(group_labels[among].tolist())) if (group_labels == label).sum() >= 2]
    chosen = rng.permutation(len(eligible))[:count]
    return np.array([rng.choice(np.flatnonzero(group_labels == eligible[i])) for i in chosen], dtype=np.int64)


def shuffled_holdout(inputs: Sequence[str], seed: int, held: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the row indices of `inputs` into (kept, held out) by a seeded shuffle of their groups (rows of one
    input, `same_text_key`, go together, so that a hold-out never scores an input the model trained on): whole
    groups are held out until `held` rows are, at least one group and never every group (none held out when
    all rows are one input). Both stay in shuffled order; without repeated inputs, the first `held` rows of a
    shuffle of the rows (rows without labels: a user's grid file, sequence pairs)."""
    group_of = _groups(inputs)
    groups = int(group_of.max(initial=-1)) + 1
    order = np.random.default_rng(seed).permutation(groups)
    rows_of = [np.flatnonzero(group_of == group) for group in range(groups)]
    rows_held = np.cumsum([len(rows_of[group]) for group in order])
    cut = min(int(np.searchsorted(rows_held, held)) + 1, groups - 1)
    return _rows(rows_of, order[cut:]), _rows(rows_of, order[:cut])


def _rows(rows_of: list[np.ndarray], groups: np.ndarray) -> np.ndarray:
    """The rows of `groups`, group after group."""
    return np.concatenate([rows_of[group] for group in groups]) if len(groups) else np.zeros(0, dtype=np.int64)


def sample_indices(count: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset (seeded) of at most `limit` of `count` rows."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:limit])


SAMPLE_ROWS_KEPT_PER_LABEL = 100  # a label with at most this many rows keeps them all in a sample of the rows


def stratified_sample(labels: Sequence[str], limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of about `limit` of the rows of `labels` (all of them where there are no
    more): each label's share of its rows, and every row of a label up to SAMPLE_ROWS_KEPT_PER_LABEL, so that a
    rare label loses nothing (the sample may thus hold a few rows more than `limit`)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    # each label's rows, ascending, labels in sorted order: one sort, not a pass over the rows per label
    label_of = np.unique(np.asarray(labels, dtype=object), return_inverse=True)[1]
    order = np.argsort(label_of, kind="stable")
    share = limit / len(labels)
    taken = []
    for rows in np.split(order, np.flatnonzero(np.diff(label_of[order])) + 1):
        count = min(len(rows), max(SAMPLE_ROWS_KEPT_PER_LABEL, round(share * len(rows))))
        taken.append(rng.choice(rows, size=count, replace=False))
    return np.sort(np.concatenate(taken))
