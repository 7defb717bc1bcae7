"""The TF-IDF teacher's cross-fitted soft labels: distributions that know the task, from models that
never saw the text."""

from __future__ import annotations

import numpy as np

from trainer.tfidf_teacher import cross_fitted_soft_labels

TOPICS = {0: ["goalie", "puck", "season"], 1: ["orbit", "launch", "nasa"], 2: ["driver", "kernel", "disk"]}
FILLER = ["the", "a", "this", "about", "some", "news", "today", "people", "think"]


def corpus(seed: int, per_class: int = 40) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, targets = [], []
    for label, words in TOPICS.items():
        for _ in range(per_class):
            texts.append(" ".join([*rng.choice(FILLER, 6), *rng.choice(words, 2)]))
            targets.append(label)
    return texts, np.array(targets)


def test_soft_labels_are_distributions_that_find_the_class() -> None:
    texts, targets = corpus(seed=0)
    soft = cross_fitted_soft_labels(texts, targets, num_classes=4, temperature=1.0, seed=0)
    assert soft.shape == (120, 4)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-5)
    assert (soft.argmax(1) == targets).mean() >= 0.95
    assert soft[:, 3].max() < 1e-6  # a class absent from the training texts gets no mass


def test_a_text_is_labelled_by_a_teacher_that_never_saw_it() -> None:
    """Cross-fitting: a text whose words contradict its label keeps a soft label pointing elsewhere."""
    texts, targets = corpus(seed=1)
    targets[0] = 2  # a hockey text labelled as computers: a teacher fit on it would memorise that
    soft = cross_fitted_soft_labels(texts, targets, num_classes=3, temperature=1.0, seed=0)
    assert soft[0].argmax() == 0


def test_temperature_softens() -> None:
    texts, targets = corpus(seed=2)
    sharp = cross_fitted_soft_labels(texts, targets, num_classes=3, temperature=1.0, seed=0)
    soft = cross_fitted_soft_labels(texts, targets, num_classes=3, temperature=3.0, seed=0)
    assert soft.max(1).mean() < sharp.max(1).mean()
