"""What a tokenizer.json normaliser does to text, read from its spec (the file's `normalizer` entry).

The faster tokenising paths (`prefix_tokenizer`, `ascii_tokenizer`) apply only where they give the library's
ids exactly, so they ask two things of a normaliser: whether it works character by character (then a text cut
at a space normalises to a prefix of the whole text's normal form), and what it does to ASCII text. A Sequence
is read member by member. Its Replace members, and the pre-tokenizer's Split members, are read when their pattern
is one character class (`character_class`).
"""

from __future__ import annotations

import re
from typing import Any

Spec = dict[str, Any]

# Normalisers that work character by character: BERT's (clean-up, CJK spacing, accent stripping, lowercasing),
# Lowercase, and the canonical and compatibility forms, which decompose a character, or reorder and compose marks
# with the letter before them, never across a space.
CHARACTERWISE = {"BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC"}
# Normalisers that act on ASCII text, as `ascii_tokenizer` reproduces them.
ACTING_ON_ASCII = {"BertNormalizer", "Lowercase"}
# Normalisers that leave ASCII text as it is (no ASCII character has a decomposition).
KEEPING_ASCII = {"NFD", "NFC", "NFKD", "NFKC"}
_ONE_CHARACTER_CLASS = re.compile(r"\[[^\[\]\\]*\]")


def members(spec: Spec | None) -> list[Spec]:
    """The normalisers applied in turn: a Sequence's members, one normaliser alone, none."""
    if spec is None:
        return []
    if spec["type"] != "Sequence":
        return [spec]
    return [member for inner in spec["normalizers"] for member in members(inner)]


def pre_tokenizer_members(spec: Spec | None) -> tuple[list[Spec], Spec]:
    """A tokenizer.json `pre_tokenizer` entry as the members that run before its last one, and the last: a
    Sequence's members, or one pre-tokenizer alone ({} for none)."""
    listed = (spec or {}).get("pretokenizers", []) if (spec or {}).get("type") == "Sequence" else [spec or {}]
    *before, last = listed or [{}]
    return before, last


def is_characterwise(spec: Spec | None) -> bool:
    """Whether every member works character by character (`CHARACTERWISE`, or a Replace of one character class)."""
    return all(member["type"] in CHARACTERWISE or character_class(member) is not None for member in members(spec))


def ascii_acting(spec: Spec | None) -> Spec | None:
    """The one member that changes ASCII text (`ACTING_ON_ASCII`) when every other leaves ASCII text as it is
    (`KEEPING_ASCII`, or a Replace of a character class that holds no ASCII character); None otherwise."""
    acting = [member for member in members(spec) if member["type"] in ACTING_ON_ASCII]
    others = [member for member in members(spec) if member["type"] not in ACTING_ON_ASCII]
    if len(acting) != 1 or not all(member["type"] in KEEPING_ASCII or _keeps_ascii(member) for member in others):
        return None
    return acting[0]


def character_class(spec: Spec, kind: str = "Replace") -> re.Pattern[str] | None:
    """The pattern of a `kind` member (a normaliser's Replace, a pre-tokenizer's Split) when it is one character
    class without escapes (read the same by Python's `re` as by the library's regular expressions, and matching one
    character at a time); None for any other member or pattern."""
    pattern = spec.get("pattern", {}).get("Regex") if spec.get("type") == kind else None
    if pattern is None or not _ONE_CHARACTER_CLASS.fullmatch(pattern):
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _keeps_ascii(spec: Spec) -> bool:
    replaced = character_class(spec)
    return replaced is not None and not any(replaced.fullmatch(chr(code)) for code in range(128))
