"""The outside anchor: number-only phrases ("one hundred and twelve" -> "112") scored with text2num.

The phrases are the decimal literals of held-out lines said alone by the verbalizer, with its usual
recognition errors ("too" for "two") or without them (``Verbalizer(confusion_rate=0)``), and whole numbers of
every size drawn at random (``generated_literals``). text2num's ``alpha2digit`` is an independent rule-based
reader of spoken numbers (nobody here wrote it), run with ``threshold=0`` so that small numbers ("two") are
converted too: its most favourable setting for phrases that are known to be numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from text_to_num import alpha2digit

from trainer.dictation.examples import generated_number
from trainer.dictation.layout import tokens_of_line
from trainer.dictation.verbalize import Verbalizer

_DECIMAL_LITERAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


@dataclass(frozen=True)
class NumberPhrase:
    spoken: str
    literal: str


@dataclass(frozen=True)
class AnchorScore:
    exact_match: float
    count: int
    misses: list[tuple[str, str, str]]  # (spoken, expected, produced)


def number_literals(lines: Iterable[str]) -> list[str]:
    """The distinct plain decimal literals (``7``, ``112``, ``3.5``; no signs, exponents or radix) of lines."""
    found = {text for line in lines for kind, text in tokens_of_line(line) if kind == "number"}
    return sorted(literal for literal in found if _DECIMAL_LITERAL.fullmatch(literal))


def generated_literals(count: int, seed: int) -> list[str]:
    """`count` distinct whole numbers of every size (`generated_number`), from a random stream of their own."""
    rng = np.random.default_rng((seed, 1))  # not the stream training draws its examples from
    found: dict[str, None] = {}
    while len(found) < count:
        found[generated_number(rng)] = None
    return list(found)


def number_phrases(literals: Iterable[str], verbalizer: Verbalizer, variant: int = 0) -> list[NumberPhrase]:
    """Each literal said alone (one seeded phrasing per literal)."""
    return [NumberPhrase(verbalizer.speak_number(literal, variant), literal) for literal in literals]


def alpha2digit_reader(spoken: str) -> str:
    """text2num's reading of an English phrase, small numbers included."""
    return alpha2digit(spoken, "en", threshold=0).strip()


def score_reader(phrases: Sequence[NumberPhrase], read: Callable[[str], str]) -> AnchorScore:
    """Exact match of a reader (spoken -> written) on number phrases; the model is scored the same way."""
    if not phrases:
        raise ValueError("no number phrases to score")
    misses = []
    for phrase in phrases:
        produced = read(phrase.spoken)
        if produced != phrase.literal:
            misses.append((phrase.spoken, phrase.literal, produced))
    return AnchorScore(1 - len(misses) / len(phrases), len(phrases), misses)
