"""The spoken-numbers check (trm_bundle.spoken_numbers): numbers said every way the dictation verbalizer says them
agree with their digits, real standard-library lines said by it agree with themselves, and a digit dropped, added or
changed, or numbers swapped, disagree."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.dictation.verbalize import Unspeakable, Verbalizer
from trm_bundle.spoken_numbers import numbers_agree, readings


@pytest.mark.parametrize(("spoken", "written"), [
    ("port equals eight thousand and eighty", "port = 8080"),
    ("ten thousand four", "10004"),
    ("a hundred", "100"),
    ("nineteen oh five", "1905"),
    ("twenty twenty one", "2021"),
    ("eleven hundred", "1100"),
    ("one oh one", "101"),
    ("to zero zero", "200"),  # "to" heard for "two"
    ("x equals one hot", "x = one_hot"),  # a number word that is a name
    ("for i in range open paren four close paren colon", "for i in range(4):"),
    ("hex one f", "0x1f"),
    ("zero x one f", "0x1f"),
    ("three point one four", "3.14"),
    ("one underscore zero zero zero", "1_000"),
    ("if n less than or equal two ten colon", "if n <= 10:"),  # "to" of "equal to" heard as "two"
    ("two to the power of thirty", "2 ** 30"),
    ("x equals 42", "x = 42"),  # digits given as digits
    ("return none", "return None"),
])
def test_numbers_said_agree(spoken: str, written: str) -> None:
    assert numbers_agree(spoken, written)


@pytest.mark.parametrize(("spoken", "written"), [
    ("ten thousand four", "1004"),
    ("to zero zero zero zero zero zero zero", "2000000"),  # a zero lost
    ("five five zero four two two two", "550422"),  # the last digit dropped
    ("five zero seven four six one four for four", "50746144"),  # "for" read as nothing
    ("f open paren one comma two close paren", "f(2, 1)"),  # order
    ("x equals seven", "x = 8"),
    ("x equals seven", "x = 77"),
    ("return none", "return 0"),  # a number from nowhere
])
def test_numbers_not_said_disagree(spoken: str, written: str) -> None:
    assert not numbers_agree(spoken, written)


def test_each_way_of_saying_a_number_is_read() -> None:
    assert readings(("one", "hundred", "and", "twelve")) == {"112"}
    assert readings(("one", "one", "two")) == {"112"}  # digit by digit
    assert readings(("nineteen", "ninety")) == {"1990"}  # a year
    assert readings(("twenty", "one")) == {"21"}
    assert readings(("hundred",)) == set()


@settings(max_examples=300, deadline=None)
@given(number=st.integers(min_value=0, max_value=10**12 - 1), variant=st.integers(0, 50),
       edit=st.sampled_from(["drop", "repeat", "change"]), where=st.integers(0, 11))
def test_a_number_said_by_the_verbalizer_agrees_and_one_digit_off_does_not(number: int, variant: int, edit: str,
                                                                          where: int) -> None:
    digits = str(number)
    spoken = Verbalizer(seed=0).speak_number(digits, variant)
    assert numbers_agree(spoken, digits), spoken
    at = where % len(digits)
    edited = {"drop": digits[:at] + digits[at + 1:],
              "repeat": digits[:at] + digits[at] + digits[at:],
              "change": digits[:at] + str((int(digits[at]) + 1) % 10) + digits[at + 1:]}[edit]
    if edited:
        assert not numbers_agree(spoken, edited), (spoken, edited)


@pytest.mark.parametrize("module", ["fractions.py", "_pydecimal.py", "ipaddress.py", "statistics.py"])
def test_standard_library_lines_said_by_the_verbalizer_agree_with_themselves(module: str) -> None:
    verbalizer, checked = Verbalizer(seed=0), 0
    for line in (Path(sysconfig.get_paths()["stdlib"]) / module).read_text().splitlines():
        for variant in range(3):
            try:
                segments = verbalizer.segments(line.strip(), variant)
            except (Unspeakable, ValueError):
                continue
            written = "".join(segment.code for segment in segments)
            spoken = " ".join(word for segment in segments for phrase in segment.spoken for word in phrase.split())
            if any(char.isdigit() for char in written):
                checked += 1
                assert numbers_agree(spoken, written), (spoken, written)
    assert checked > 50
