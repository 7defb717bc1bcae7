"""Whole numbers of every size said alone: generated as `generated_number` says, drawn at their share in
training, and scored from a stream of their own."""

from __future__ import annotations

from collections import Counter

import numpy as np

from trainer.dictation.anchor import generated_literals
from trainer.dictation.examples import MAX_GENERATED_DIGITS, DictationExamples, generated_number
from trainer.dictation.verbalize import MAX_CARDINAL_DIGITS, Verbalizer

LINES = ["x = 1", "return self.value", "print(a, b)"]


def test_generated_numbers_have_every_size_no_leading_zero_and_zeros_inside() -> None:
    numbers = [generated_number(np.random.default_rng(seed)) for seed in range(6000)]
    sizes = Counter(len(number) for number in numbers)
    assert sorted(sizes) == list(range(1, MAX_GENERATED_DIGITS + 1))
    assert min(sizes.values()) > 6000 / MAX_GENERATED_DIGITS * 0.8
    assert all(number.isdigit() and (len(number) == 1 or number[0] != "0") for number in numbers)
    inner = "".join(number[1:] for number in numbers)
    assert 0.25 < inner.count("0") / len(inner) < 0.35
    assert len({number for number in numbers if len(number) == 1}) == 10  # 0 too


def test_generated_numbers_are_drawn_at_their_share_and_said_as_the_verbalizer_says_a_number() -> None:
    verbalizer = Verbalizer(0)
    examples = DictationExamples(LINES, ["7"], verbalizer, seed=0, max_source_chars=200, number_share=0.1,
                                 generated_number_share=0.4)(2000)
    kinds = Counter("line" if written in LINES else "literal" if written == "7" else "generated"
                    for _, written in examples)
    assert abs(kinds["generated"] / 2000 - 0.4) < 0.04 and abs(kinds["literal"] / 2000 - 0.1) < 0.03
    long_number = next((said, written) for said, written in examples if len(written) == MAX_GENERATED_DIGITS)
    assert long_number[0] in {verbalizer.speak_number(long_number[1], variant) for variant in range(64)}
    assert any(" thousand " in said for said, written in examples if len(written) == 5)


def test_without_a_generated_share_the_examples_are_those_drawn_before() -> None:
    def draw(**generated: float) -> list[tuple[str, str]]:
        return DictationExamples(LINES, ["7", "112"], Verbalizer(0), seed=3, max_source_chars=200, **generated)(300)

    assert draw() == draw(generated_number_share=0.0)


def test_scored_numbers_are_distinct_seeded_and_not_the_training_stream() -> None:
    scored = generated_literals(1000, seed=0)
    assert len(set(scored)) == 1000 and scored == generated_literals(1000, seed=0) != generated_literals(1000, seed=1)
    training_stream = np.random.default_rng(0)
    assert scored[:20] != [generated_number(training_stream) for _ in range(20)]
    cardinal_sized = sum(len(number) <= MAX_CARDINAL_DIGITS for number in scored)
    assert 400 < cardinal_sized < 520  # 1- and 2-digit numbers run out of distinct values
