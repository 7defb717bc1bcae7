"""The outside anchor: number-only phrases of held-out lines, read by text2num's alpha2digit."""

from __future__ import annotations

from trainer.dictation.anchor import NumberPhrase, alpha2digit_reader, number_literals, number_phrases, score_reader
from trainer.dictation.verbalize import Verbalizer


def test_number_literals_are_the_plain_decimals_of_the_lines() -> None:
    lines = ["x = f(112, 3.5, -7)", "y = 0x1f + 1e-5 + 2j + 1_000", "go(112)", "s = '42'"]
    assert number_literals(lines) == ["112", "3.5", "7"]


def test_alpha2digit_is_scored_on_each_phrase() -> None:
    phrases = [NumberPhrase("one hundred and twelve", "112"), NumberPhrase("three point five", "3.5"),
               NumberPhrase("two", "2"), NumberPhrase("one one two", "112")]
    score = score_reader(phrases, alpha2digit_reader)
    assert score.count == 4
    assert score.exact_match == 0.75  # alpha2digit reads digit by digit as separate numbers
    assert score.misses == [("one one two", "112", "1 1 2")]


def test_number_phrases_are_the_verbalizer_saying_each_literal_alone() -> None:
    verbalizer = Verbalizer(seed=0, confusion_rate=0.0)
    phrases = number_phrases(["112", "3.5"], verbalizer, variant=4)
    assert phrases == [NumberPhrase(verbalizer.speak_number("112", 4), "112"), NumberPhrase("three point five", "3.5")]
    assert score_reader(phrases, lambda spoken: {p.spoken: p.literal for p in phrases}[spoken]).exact_match == 1.0
