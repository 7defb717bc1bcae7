"""Variants of short training texts for labels with few examples: each a copy of one of the label's texts
with some words deleted and two words swapped. The offline teacher labels every variant (soft labels and
sentence embedding, trainer/prepare.py), so the student learns the teacher's view of inputs it was never
given, not only of the few it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from trainer.data.holdout import same_text_key
from trainer.data.text import TextSplit

DELETE_PROBABILITY = 0.15


def text_variant(text: str, rng: np.random.Generator) -> str:
    """`text` with each word deleted with DELETE_PROBABILITY (at least one kept) and two words swapped."""
    words = text.split()
    if len(words) < 2:
        return text
    kept = [word for word in words if rng.random() >= DELETE_PROBABILITY] or [words[rng.integers(len(words))]]
    if len(kept) >= 2:
        i, j = rng.choice(len(kept), size=2, replace=False)
        kept[i], kept[j] = kept[j], kept[i]
    return " ".join(kept)


def variants_to_draw(labels: Sequence[str], per_label: int) -> int:
    """How many variants `augment_to` draws for rows of these `labels` (before any that read as held-out texts are
    left out)."""
    return sum(max(0, per_label - rows) for rows in Counter(labels).values())


def augment_to(split: TextSplit, per_label: int, seed: int, held_out: Collection[str] = ()) -> TextSplit:
    """`split` followed by variants of its texts: each label with fewer than `per_label` rows gets variants
    of its own texts, in turn, up to `per_label` rows (seeded; labels in sorted order). A variant that reads as a
    `held_out` text (by `same_text_key`: validation and test texts) is left out, so the model never trains on it."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels, dtype=object)
    texts, variant_labels = [], []
    for label in sorted(set(split.labels)):
        rows = np.flatnonzero(labels == label)
        for k in range(max(0, per_label - len(rows))):
            variant = text_variant(split.texts[rows[k % len(rows)]], rng)
            if same_text_key(variant) not in held_out:
                texts.append(variant)
                variant_labels.append(label)
    return TextSplit(split.texts + texts, split.labels + variant_labels)
