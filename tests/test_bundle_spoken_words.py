"""Reading a speech recogniser's text as spoken words (trm_bundle.spoken_words, a sequence bundle's
`input.normalize`): what a recogniser adds is read away, text already in that form is unchanged, and the rule is
applied once for all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.sequence.pairs import Pair
from trainer.sequence.user_fit import spoken_words_reading
from trm_bundle.spoken_words import SPOKEN_WORDS, as_spoken_words


@pytest.mark.parametrize(("said", "read"), [
    ("Um, def main open paren.", "def main open paren"),
    ("uh um x equals one", "x equals one"),
    ("X EQUALS ONE?", "x equals one"),
    ("  return   none  ", "return none"),
    ("import os, sys!", "import os sys"),
    ("x equals um", "x equals um"),  # a filler's word is a name after the start
    ("print quote don't quote", "print quote don't quote"),  # an apostrophe inside a word stays
    ("Um... uh!", ""),
])
def test_a_recognisers_text_is_read_as_the_words_a_dictation_model_learnt(said: str, read: str) -> None:
    assert as_spoken_words(said) == read


@given(st.text())
def test_reading_as_spoken_words_twice_reads_as_once(text: str) -> None:
    once = as_spoken_words(text)
    assert as_spoken_words(once) == once


def _pairs(*sources: str) -> list[Pair]:
    return [Pair(source, "x", line) for line, source in enumerate(sources, start=2)]


def test_a_users_sequence_fit_reads_spoken_words_only_where_every_training_source_is_in_that_form() -> None:
    normalize, said = spoken_words_reading(_pairs("march fifth", "the first of may"))
    assert normalize == SPOKEN_WORDS and said.startswith("read as spoken words")
    normalize, said = spoken_words_reading(_pairs("march fifth", "Hello, world", "ok  then"))
    assert normalize is None
    assert said == "read as given (2 of the 3 training sources are not lowercase spoken words, e.g. `Hello, world`)"
