"""The spoken-numbers check of a sequence model's answer (manifest `sequence.checks`, docs/BUNDLE.md): the numbers
written in the answer must be the ones the words it was written from say, in the same order.

The words are read as English numbers three ways: digit by digit ("two zero four", "one oh one"), as a cardinal
("ten thousand and four", "a hundred", "two hundred fifty") and as a year ("nineteen oh five", "twenty twenty one");
"to", "too" and "for" may stand for "two" and "four" (speech recognisers confuse them). Each run of digits in the
answer must be read from its own span of the words, after the span of the run before it; a number word read as no
number must be in the answer as letters (a name: "one hot" -> `one_hot`) or be one that other phrases use ("and",
the "to" of "equal to"). The zero of a radix prefix (`0x1f`, said "hex one f" or "zero x one f") may be said or not;
digits given as digits read as themselves. An answer that fails is likely wrong: `ten thousand four` written as
`1004`, or a digit dropped from a number said digit by digit.
"""

from __future__ import annotations

import re
from functools import cache

SPOKEN_NUMBERS = "spoken_numbers"
"""The check's name in a manifest's `sequence.checks`."""
_WORD = re.compile(r"[a-z]+|[0-9]+")
_WRITTEN_NUMBER = re.compile(r"[0-9]+")
_RADIX_ZERO = re.compile(r"(?<![0-9A-Za-z_.])0[xXoObB]")
_ALIASES = {"to": "two", "too": "two", "for": "four"}
_UNITS = {word: value for value, word in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}
_TEENS = {word: value for value, word in enumerate(
    ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
    start=10)}
_TENS = {word: 10 * value for value, word in enumerate(
    ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), start=2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_SCALE_WORDS = tuple((word,) for word in _SCALES)
_DIGIT_WORDS = {**_UNITS, "oh": 0}
_SPELLINGS = {"to": ("to", "too", "two"), "too": ("to", "too", "two"), "two": ("to", "too", "two"),
              "for": ("for", "four"), "four": ("for", "four")}
_NUMBER_WORDS = frozenset({*_DIGIT_WORDS, *_TEENS, *_TENS, *_SCALES, *_ALIASES, "hundred", "and", "a"})


def numbers_agree(spoken: str, written: str) -> bool:
    """Whether the numbers written in `written` are those `spoken` says: each run of digits read, in order, from its
    own span of the words, and every number word outside those spans written as a word (a name: "one hot" ->
    `one_hot`) or one that phrases other than numbers use ("to", "and")."""
    runs = list(_WRITTEN_NUMBER.finditer(written))
    numbers = tuple(run[0] for run in runs)
    optional = tuple(bool(_RADIX_ZERO.match(written, run.start())) for run in runs)
    said = _WORD.findall(spoken.lower())
    lowered = written.lower()
    skippable = tuple(_may_stand_alone(said, index, lowered) for index in range(len(said)))
    return _explains(tuple(_ALIASES.get(word, word) for word in said), skippable, numbers, optional)


def _may_stand_alone(said: list[str], index: int, written: str) -> bool:
    """Whether word `index` of `said` may be written as something other than digits: any word but a number word;
    "and" ("bitwise and"); "to", or a word heard for it, after "equal" or before "the" ("less than or equal to", "to
    the power of"); a number word that `written` holds as letters ("one", or "for" for "four")."""
    word = said[index]
    if not _is_number_word(word) or word == "and":
        return True
    if word in _SPELLINGS["to"] and (said[index - 1:index] == ["equal"] or said[index + 1:index + 2] == ["the"]):
        return True
    return any(form in written for form in _SPELLINGS.get(word, (word,)))


def _explains(words: tuple[str, ...], skippable: tuple[bool, ...], numbers: tuple[str, ...],
              optional: tuple[bool, ...]) -> bool:
    """Whether `words` hold spans, in order and apart, that read as each of `numbers` (those `optional` may have
    none), every word outside them `skippable`."""
    read = cache(readings)  # one answer's spans; a module-wide cache would grow with every request

    @cache
    def from_(word: int, number: int) -> bool:
        if number == len(numbers):
            return all(skippable[word:])
        if optional[number] and from_(word, number + 1):
            return True
        if word == len(words):
            return False
        if skippable[word] and from_(word + 1, number):  # this word is not the start of the next number
            return True
        end = word
        while end < len(words) and _is_number_word(words[end]):
            end += 1
            if numbers[number] in read(words[word:end]) and from_(end, number + 1):
                return True
        return False

    return from_(0, 0)


def _is_number_word(word: str) -> bool:
    return word in _NUMBER_WORDS or word.isdigit()


def readings(words: tuple[str, ...]) -> frozenset[str]:
    """The numbers, as digits, that these words may say: digit by digit, as a cardinal, or as a year."""
    found = {_digits(words), _cardinal(words), _year(words)}
    found.discard(None)
    return frozenset(found)


def _digits(words: tuple[str, ...]) -> str | None:
    if len(words) == 1 and words[0].isdigit():
        return words[0]
    if all(word in _DIGIT_WORDS for word in words):
        return "".join(str(_DIGIT_WORDS[word]) for word in words)
    return None


def _year(words: tuple[str, ...]) -> str | None:
    """"nineteen ninety", "twenty twenty one", "nineteen oh five", "eleven hundred": two pairs of digits."""
    first, rest = _below_hundred(words, 0)
    if first is None or first < 10:
        return None
    if words[rest:] == ("hundred",):
        return str(first * 100)
    if words[rest:rest + 1] == ("oh",) and len(words) == rest + 2 and 1 <= _UNITS.get(words[rest + 1], 0) <= 9:
        return f"{first}0{_UNITS[words[rest + 1]]}"
    second, end = _below_hundred(words, rest)
    if second is None or second < 10 or end != len(words):
        return None
    return f"{first}{second}"


def _cardinal(words: tuple[str, ...]) -> str | None:
    """A whole number as num2words says it, with or without "and": "ten thousand and four", "a hundred"."""
    if words == ("zero",):
        return "0"
    total, position, last_scale = 0, 0, None
    while position < len(words):
        group, position = _group(words, position)
        if group is None:
            return None
        scale = _SCALES.get(words[position]) if position < len(words) else None
        if scale is None:
            return str(total + group) if position == len(words) else None
        if last_scale is not None and scale >= last_scale:
            return None
        total, last_scale, position = total + group * scale, scale, position + 1
        if position < len(words) and words[position] == "and":
            position += 1
            if position == len(words):
                return None
    return str(total) if total else None


def _group(words: tuple[str, ...], position: int) -> tuple[int | None, int]:
    """A number from 1 to 999 from `position` ("two hundred and five", "a hundred", "eleven hundred", "forty
    two"), and where it ends; None where none starts there."""
    if words[position:position + 1] == ("a",) and words[position + 1:position + 2] in (("hundred",), *_SCALE_WORDS):
        hundreds, after = 1, position + 1
    else:
        hundreds, after = _below_hundred(words, position)
    if not hundreds:
        return None, position
    if words[after:after + 1] != ("hundred",):
        return hundreds, after
    position = after + 1
    if words[position:position + 1] == ("and",):
        rest, after = _below_hundred(words, position + 1)
        return (hundreds * 100 + rest, after) if rest else (None, position)
    rest, after = _below_hundred(words, position)
    return (hundreds * 100 + rest, after) if rest else (hundreds * 100, position)


def _below_hundred(words: tuple[str, ...], position: int) -> tuple[int | None, int]:
    """0 to 99 from `position` ("seven", "seventeen", "seventy", "seventy seven"), and where it ends."""
    word = words[position] if position < len(words) else None
    if word in _UNITS:
        return _UNITS[word], position + 1
    if word in _TEENS:
        return _TEENS[word], position + 1
    if word in _TENS:
        unit = words[position + 1] if position + 1 < len(words) else None
        if _UNITS.get(unit):
            return _TENS[word] + _UNITS[unit], position + 2
        return _TENS[word], position + 1
    return None, position
