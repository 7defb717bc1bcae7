"""Endless training examples for dictation: (spoken, written) pairs from corpus lines, and from number
literals and names said alone."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.dictation.verbalize import Verbalizer


class DictationExamples:
    """Draws seeded examples: a random line, or with probability `number_share` a number literal said alone,
    or with probability `name_share` a name said alone (`trainer/dictation/names.py`), in a random phrasing.
    Spoken forms longer than `max_source_chars` are drawn again."""

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
    ) -> None:
        if not lines:
            raise ValueError("no lines to draw examples from")
        self.lines, self.numbers, self.names = list(lines), list(numbers), list(names)
        self.verbalizer = verbalizer
        self.max_source_chars = max_source_chars
        self.number_share = number_share if self.numbers else 0.0
        self.name_share = name_share if self.names else 0.0
        self.rng = np.random.default_rng(seed)

    def __call__(self, count: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while len(out) < count:
            variant = int(self.rng.integers(2**31))
            kind = self.rng.random()
            if kind < self.number_share:
                literal = self.numbers[self.rng.integers(len(self.numbers))]
                pair = (self.verbalizer.speak_number(literal, variant), literal)
            else:
                pool = self.names if kind < self.number_share + self.name_share else self.lines
                line = pool[self.rng.integers(len(pool))]
                pair = (self.verbalizer.speak(line, variant), line)
            if len(pair[0]) <= self.max_source_chars:
                out.append(pair)
        return out
