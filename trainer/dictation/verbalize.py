"""Code -> what a person would say for it, seeded and deterministic (the dictation model learns the inverse).

Symbols become words with several phrasings, identifiers are split from snake_case/camelCase and said
with a case marker ("camel get value"), numbers become words (num2words: "one hundred and twelve",
or digit by digit), string contents are said word by word with their punctuation, and words that speech
recognisers confuse (to/two/too, for/four) are swapped at a fixed rate. The same seed, variant and line
always give the same words (``random.Random`` seeded with a string hashes it with SHA-512, so this holds
on every machine); another variant or seed picks other phrasings.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from num2words import num2words

from trainer.dictation import phrases
from trainer.dictation.layout import KEYWORDS, Token, canonical, lay_out, tokens_of_line

_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STRING_PIECE = re.compile(r"[A-Za-z0-9_]+|.", re.DOTALL)
_DECIMAL = re.compile(r"[0-9][0-9_]*")
_FLOAT = re.compile(r"(?P<whole>[0-9][0-9_]*)?(?:\.(?P<fraction>[0-9][0-9_]*)?)?(?:e(?P<sign>[+-]?)(?P<exp>[0-9_]+))?")
_RADIX = re.compile(r"0(?P<radix>[xob])(?P<digits>[0-9a-fA-F_]+)")
_COMMAND_WORDS = phrases.command_words()
MAX_CARDINAL_DIGITS = 6  # a whole number of up to 6 digits may be said as a cardinal; longer, digit by digit


class Unspeakable(ValueError):
    """The line holds something the verbalizer has no words for (a non-ASCII character, 0X1F, 1E5)."""


@dataclass(frozen=True)
class Segment:
    """A piece of the written line and the words said for it (none for a space implied between words)."""

    code: str
    spoken: tuple[str, ...]


class Verbalizer:
    """Says lines of Python; ``variant`` picks one of many phrasings of the same line."""

    def __init__(self, seed: int = 0, confusion_rate: float = 0.15) -> None:
        if not 0.0 <= confusion_rate <= 1.0:
            raise ValueError(f"confusion_rate must be in [0, 1], got {confusion_rate}")
        self.seed = seed
        self.confusion_rate = confusion_rate

    def _rng(self, text: str, variant: int) -> random.Random:
        return random.Random(f"{self.seed}/{variant}/{text}")

    def segments(self, line: str, variant: int = 0) -> list[Segment]:
        """The line's written form (``layout.canonical_line``) piece by piece, with the words said for each."""
        return self.segments_of(lay_out(tokens_of_line(line)), variant)

    def segments_of(self, tokens: Sequence[Token], variant: int = 0) -> list[Segment]:
        """``segments`` of a line already laid out (``layout.lay_out``)."""
        rng = self._rng(canonical(tokens), variant)
        out: list[Segment] = []
        for token in tokens:
            pieces = self._token(token, rng)
            if token.space_before:
                pieces[0] = Segment(" " + pieces[0].code, pieces[0].spoken)
            out.extend(pieces)
        return [Segment(seg.code, self._confuse(seg.spoken, rng)) for seg in out]

    def speak(self, line: str, variant: int = 0) -> str:
        """What a person says for `line` (lowercase words separated by single spaces)."""
        return join_words(self.segments(line, variant))

    def speak_number(self, literal: str, variant: int = 0) -> str:
        """What a person says for a numeric literal alone (``"112"`` -> ``"one hundred and twelve"``)."""
        rng = self._rng(literal, variant)
        return " ".join(self._confuse(tuple(self._number(literal, rng)), rng))

    # --- tokens ---------------------------------------------------------------------------------
    def _token(self, token: Token, rng: random.Random) -> list[Segment]:
        if token.kind == "string":
            return self._string(token.text, rng)
        if token.kind == "number":
            return [Segment(token.text, tuple(self._number(token.text, rng)))]
        if token.kind == "name":
            if token.text in KEYWORDS or token.text in phrases.KEYWORDS:
                words = _say(rng, phrases.KEYWORDS.get(token.text, (token.text,)))
            else:
                words = self._identifier(token.text, rng)
            return [Segment(token.text, tuple(words))]
        table = phrases.UNARY if token.unary and token.text in phrases.UNARY else phrases.SYMBOLS
        if token.text not in table:
            raise Unspeakable(f"no words for the operator {token.text!r}")
        return [Segment(token.text, tuple(_say(rng, table[token.text])))]

    def _confuse(self, words: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
        out = []
        for word in words:
            swap = word in phrases.CONFUSIONS and rng.random() < self.confusion_rate
            out.append(rng.choice(phrases.CONFUSIONS[word]) if swap else word)
        return tuple(out)

    # --- identifiers ------------------------------------------------------------------------------
    def _identifier(self, name: str, rng: random.Random) -> list[str]:
        core = name.strip("_")
        lead = len(name) - len(name.lstrip("_"))
        trail = len(name) - len(name.rstrip("_")) if core else 0
        if not core:
            return ["underscore"] * lead
        words = self._core(core, rng)
        if lead == trail == 2 and rng.random() < 0.5:
            return [*_say(rng, phrases.DUNDER), *words]
        return ["underscore"] * lead + words + ["underscore"] * trail

    def _core(self, core: str, rng: random.Random) -> list[str]:
        segments = core.split("_")
        if len(segments) == 1:
            return self._segment(core, rng)
        if all(seg.isalpha() and seg.islower() for seg in segments):
            words = [word for seg in segments for word in _say(rng, phrases.WORDS.get(seg, (seg,)))]
            if rng.random() < 0.5:
                return [*_say(rng, phrases.SNAKE), *words]
        elif all(seg.isalpha() and seg.isupper() for seg in segments):
            return [*_say(rng, phrases.CONSTANT), *(seg.lower() for seg in segments)]
        words = []
        for index, seg in enumerate(segments):
            if index:
                words.append("underscore")
            if seg:
                words.extend(self._segment(seg, rng))
        return words

    def _segment(self, text: str, rng: random.Random) -> list[str]:
        """Words for an identifier piece without underscores: a case marker, then its words."""
        parts = _PART.findall(text)
        if "".join(parts) != text:
            raise Unspeakable(f"no words for the identifier {text!r}")
        letters = [part for part in parts if part.isalpha()]

        def said(part: str) -> list[str]:
            if part.isdigit():
                return self._integer(part, rng)
            return _say(rng, phrases.WORDS.get(part.lower(), (part.lower(),)))

        plain = [word for part in parts for word in said(part)]
        if all(part.islower() for part in letters):
            if len(parts) == 1 and plain[0] in _COMMAND_WORDS:
                return [*_say(rng, phrases.WORD), *plain]
            return plain
        if len(letters) == 1:
            marker = phrases.CAPITAL if _capitalized(letters[0]) else phrases.ALL_CAPS
            return [*_say(rng, marker), *plain]
        if letters[0].islower() and all(_capitalized(part) for part in letters[1:]):
            return [*_say(rng, phrases.CAMEL), *plain]
        if all(_capitalized(part) for part in letters):
            return [*_say(rng, phrases.PASCAL), *plain]
        words = list(_say(rng, phrases.SMASH))
        for part in parts:
            if part.isalpha() and not part.islower():
                words.extend(_say(rng, phrases.CAPITAL if _capitalized(part) else phrases.ALL_CAPS))
            words.extend(said(part))
        return words

    # --- numbers ----------------------------------------------------------------------------------
    def _number(self, literal: str, rng: random.Random) -> list[str]:
        match = _RADIX.fullmatch(literal)
        if match:
            words = list(_say(rng, phrases.RADIX[match["radix"]]))
            for char in match["digits"]:
                if char.isdigit():
                    words.append(phrases.DIGITS[int(char)])
                elif char == "_":
                    words.append("underscore")
                else:
                    words.extend([*_say(rng, phrases.CAPITAL), char.lower()] if char.isupper() else [char])
            return words
        imaginary = literal.endswith("j")
        body = literal[:-1] if imaginary else literal
        match = _FLOAT.fullmatch(body)
        if not body or match is None:
            raise Unspeakable(f"no words for the number {literal!r}")
        words = self._integer(match["whole"], rng) if match["whole"] else []
        if "." in body:
            words.extend(_say(rng, phrases.POINT))
            words.extend(_digits(match["fraction"] or ""))
        if match["exp"] is not None:
            words.extend(_say(rng, phrases.EXPONENT))
            words.extend({"-": ["minus"], "+": ["plus"], "": []}[match["sign"]])
            words.extend(self._integer(match["exp"], rng))
        if imaginary:
            words.extend(_say(rng, phrases.IMAGINARY))
        return words

    def _integer(self, digits: str, rng: random.Random) -> list[str]:
        """A run of decimal digits (underscores allowed): as a cardinal, or digit by digit."""
        if "_" in digits or (len(digits) > 1 and (digits[0] == "0" or len(digits) > MAX_CARDINAL_DIGITS)):
            return _digits(digits)
        choices = ["cardinal", "cardinal without and"]
        if len(digits) >= 3:
            choices.append("digits")
        if len(digits) == 4 and digits[1:] != "000":
            choices.append("year")
        how = rng.choice(choices)
        if how == "digits":
            return _digits(digits)
        words = _number_words(num2words(int(digits), to="year" if how == "year" else "cardinal"))
        return [word for word in words if word != "and"] if how == "cardinal without and" else words

    # --- strings ----------------------------------------------------------------------------------
    def _string(self, text: str, rng: random.Random) -> list[Segment]:
        start = next((i for i, char in enumerate(text) if char in "'\""), None)
        if start is None:
            raise Unspeakable(f"not a string literal: {text!r}")
        prefix = text[:start]
        quote = text[start:start + 3] if text[start:start + 3] in ("'''", '"""') else text[start]
        body = text[len(prefix) + len(quote):len(text) - len(quote)]
        out: list[Segment] = []
        for char in prefix:
            words = _say(rng, phrases.STRING_PREFIX[char.lower()])
            out.append(Segment(char, tuple([*_say(rng, phrases.CAPITAL), *words] if char.isupper() else words)))
        out.append(Segment(quote, tuple(_say(rng, phrases.SYMBOLS[quote]))))
        pieces = _STRING_PIECE.findall(body)
        for index, piece in enumerate(pieces):
            if _is_run(piece):
                out.append(Segment(piece, tuple(self._identifier(piece, rng))))
            elif piece == " " and 0 < index < len(pieces) - 1 and _is_run(pieces[index - 1]) and _is_run(
                    pieces[index + 1]):
                out.append(Segment(" ", ()))  # a space between two words is heard as the gap between them
            elif piece in phrases.SYMBOLS:
                out.append(Segment(piece, tuple(_say(rng, phrases.SYMBOLS[piece]))))
            else:
                raise Unspeakable(f"no words for the character {piece!r} in a string")
        out.append(Segment(quote, tuple(_say(rng, phrases.SYMBOLS[quote]))))
        return out


def join_words(segments: Sequence[Segment]) -> str:
    """The spoken form of segments: all their words separated by single spaces."""
    return " ".join(word for segment in segments for phrase in segment.spoken for word in phrase.split())


def _say(rng: random.Random, phrasings: Sequence[str]) -> list[str]:
    return rng.choice(phrasings).split()


def _capitalized(part: str) -> bool:
    return part[0].isupper() and (len(part) == 1 or part[1:].islower())


def _is_run(piece: str) -> bool:
    return piece[0].isalnum() or piece[0] == "_"


def _digits(digits: str) -> list[str]:
    """Digit by digit ("underscore" for a digit separator)."""
    return ["underscore" if char == "_" else phrases.DIGITS[int(char)] for char in digits]


def _number_words(text: str) -> list[str]:
    """num2words output as plain words: "one thousand, two hundred and thirty-four" -> words without marks."""
    return text.replace(",", " ").replace("-", " ").split()
