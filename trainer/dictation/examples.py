"""Endless training examples for dictation: (spoken, written) pairs from corpus lines, and from number
literals, whole numbers of every size, names and short names said alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.dictation.verbalize import Verbalizer

MAX_GENERATED_DIGITS = 12  # twice the digits the verbalizer says as a cardinal: as many said digit by digit
GENERATED_ZERO_SHARE = 0.3  # zeros inside a generated number: the digits a cardinal leaves unsaid
SHORT_NAME_CHARS = 3  # a short name (`x`, `os`, `sys`): 2 % of the corpus's distinct names, single letters 0.06 %


def generated_number(rng: np.random.Generator) -> str:
    """A whole number of 1 to MAX_GENERATED_DIGITS digits (each size equally likely), without a leading zero,
    its other digits zero with probability GENERATED_ZERO_SHARE."""
    size = int(rng.integers(1, MAX_GENERATED_DIGITS + 1))
    if size == 1:
        return str(rng.integers(10))
    rest = np.where(rng.random(size - 1) < GENERATED_ZERO_SHARE, 0, rng.integers(1, 10, size - 1))
    return str(rng.integers(1, 10)) + "".join(map(str, rest))


class DictationExamples:
    """Draws seeded examples: a random line, or with probability `number_share` a number literal said alone,
    with probability `name_share` a name said alone (`trainer/dictation/names.py`), or with probability
    `generated_number_share` a `generated_number` said alone, or with probability `short_name_share` a name of
    1 to SHORT_NAME_CHARS characters said alone (each length equally likely, then a name of that length), in a
    random phrasing. Spoken forms longer than `max_source_chars` are drawn again."""

    def __init__(
        self,
        lines: Sequence[str],
        numbers: Sequence[str],
        verbalizer: Verbalizer,
        seed: int,
        max_source_chars: int,
        number_share: float = 0.05,
        names: Sequence[str] = (),
        name_share: float = 0.0,
        generated_number_share: float = 0.0,
        short_name_share: float = 0.0,
    ) -> None:
        if not lines:
            raise ValueError("no lines to draw examples from")
        self.lines, self.numbers, self.names = list(lines), list(numbers), list(names)
        self.verbalizer = verbalizer
        self.max_source_chars = max_source_chars
        self.number_share = number_share if self.numbers else 0.0
        self.name_share = name_share if self.names else 0.0
        self.generated_number_share = generated_number_share
        by_length: dict[int, list[str]] = {}
        for name in self.names:
            if len(name) <= SHORT_NAME_CHARS:
                by_length.setdefault(len(name), []).append(name)
        self.short_names_by_length = [by_length[length] for length in sorted(by_length)]
        self.short_name_share = short_name_share if self.short_names_by_length else 0.0
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        names_end = self.number_share + self.name_share
        generated_end = names_end + self.generated_number_share
        short_names_end = generated_end + self.short_name_share
        while len(out) < count:
            variant = int(self.rng.integers(2**31))
            kind = self.rng.random()
            if kind < self.number_share:
                literal = self.numbers[self.rng.integers(len(self.numbers))]
                pair = (self.verbalizer.speak_number(literal, variant), literal)
            elif names_end <= kind < generated_end:
                literal = generated_number(self.rng)
                pair = (self.verbalizer.speak_number(literal, variant), literal)
            elif generated_end <= kind < short_names_end:
                same_length = self.short_names_by_length[self.rng.integers(len(self.short_names_by_length))]
                name = same_length[self.rng.integers(len(same_length))]
                pair = (self.verbalizer.speak(name, variant), name)
            else:
                pool = self.names if kind < names_end else self.lines
                line = pool[self.rng.integers(len(pool))]
                pair = (self.verbalizer.speak(line, variant), line)
            if len(pair[0]) <= self.max_source_chars:
                out.append(pair)
        return out
