"""Teacher-labelled variants of short texts for labels with few examples."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import TrainConfig
from trainer.data.holdout import same_text_key
from trainer.data.text import TextSplit
from trainer.data.text_augment import augment_to, text_variant, variants_to_draw
from trainer.teacher import soft_labels


def test_a_variant_keeps_only_words_of_its_text_and_never_empties_it() -> None:
    rng = np.random.default_rng(0)
    text = "please open the file called main dot py"
    variants = [text_variant(text, rng) for _ in range(200)]
    assert all(v and set(v.split()) <= set(text.split()) for v in variants)
    assert len(set(variants)) > 50  # deletions and swaps differ from draw to draw
    assert text_variant("undo", rng) == "undo"


def test_labels_are_filled_up_to_the_target_and_larger_ones_are_left_alone() -> None:
    split = TextSplit(["open a file", "open the file now", "run the tests", *[f"commit {i} now" for i in range(6)]],
                      ["open", "open", "test", *["commit"] * 6])
    augmented = augment_to(split, per_label=5, seed=0)
    assert augmented.texts[: len(split)] == split.texts  # the labelled rows first, unchanged
    counts = {label: augmented.labels.count(label) for label in ("open", "test", "commit")}
    assert counts == {"open": 5, "test": 5, "commit": 6}
    assert augment_to(split, per_label=5, seed=0) == augmented  # seeded
    assert variants_to_draw(split.labels, 5) == len(augmented.texts) - len(split.texts) == 7  # known before drawing
    for text, label in zip(augmented.texts[len(split):], augmented.labels[len(split):], strict=True):
        sources = [t for t, lab in zip(split.texts, split.labels, strict=True) if lab == label]
        assert any(set(text.split()) <= set(source.split()) for source in sources)


def test_a_variant_that_reads_as_a_held_out_text_is_left_out() -> None:
    """QA: the voice commands' fit trained on a variant that was one of its test texts (the bundle counted 1 test row
    the model trained on): its test figure read high."""
    split = TextSplit(["open the file now please"], ["open"])
    variants = augment_to(split, per_label=40, seed=0).texts[1:]
    taken = variants[0]
    kept = augment_to(split, per_label=40, seed=0, held_out={same_text_key(taken.upper())}).texts[1:]
    assert taken not in kept and len(kept) == len(variants) - variants.count(taken)
    assert [v for v in variants if v != taken] == kept  # the other draws unchanged


def test_variants_are_labelled_by_a_regression_fit_on_the_labelled_rows_only() -> None:
    rng = np.random.default_rng(0)
    labelled = np.concatenate([np.eye(8)[:2] * 4 + rng.normal(size=(2, 8)) for _ in range(10)])
    targets = np.tile([0, 1], 10)
    variant = np.eye(8)[1] * 4  # a variant that reads like class 1, whatever label its source had
    soft = soft_labels(np.vstack([labelled, variant]), np.append(targets, 0), 2, 1.0, labelled_rows=20)
    assert soft[-1].argmax() == 1


def test_variants_need_the_minilm_soft_labels() -> None:
    with pytest.raises(ValueError, match="augment_per_label needs the MiniLM soft labels"):
        TrainConfig.from_dict({"name": "x", "task": "text", "data": "d", "augment_per_label": 20,
                               "teacher": {"soft_label_weight": 1.0, "soft_labels": "tfidf"}})

