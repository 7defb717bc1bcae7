"""Token ids of a long text from a prefix of it, when the tokenizer makes that exact.

A text classifier reads only its first max_tokens ids, but a tokenizer normalises and splits the whole
text before it truncates: a 20,000-character post costs its full length to read 512 tokens of it. With a
normaliser that works character by character and a pre-tokenizer that splits at whitespace, the ids of a
text cut at a space are a prefix of the whole text's ids (nothing after the space can change a word
before it), so once a cut yields max_tokens ids they are exactly the whole text's. For any other
tokenizer, and whenever a cut falls short, the whole text is tokenised: the ids never change, only the
work does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from trm_service.runtime.normalizer_spec import character_class, is_characterwise, pre_tokenizer_members

# Components for which "cut at a space" keeps every earlier token (see the module docstring), with a
# character-wise normaliser (`normalizer_spec.is_characterwise`): these pre-tokenizers split at whitespace;
# these models encode each pre-tokenised word on its own.
WHITESPACE_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
WORDWISE_MODELS = {"WordPiece", "WordLevel"}
# The first cut's length per wanted token, doubled at each shortfall: 99% of the 20NG training posts that
# have 512 tokens reach them within 5.7 characters a token (median 4.3).
CHARS_PER_TOKEN_GUESS = 6


class TokenIds(Protocol):
    """One text's ids: a tokenizers.Encoding, or what AsciiTokenizer makes."""

    @property
    def ids(self) -> list[int]: ...


class TextEncoder(Protocol):
    """What is used here of a tokenizer: a tokenizers.Tokenizer, or AsciiTokenizer."""

    def encode_batch_fast(self, texts: list[str]) -> Sequence[TokenIds]: ...

    def to_str(self) -> str: ...


class PrefixTokenizer:
    """Pads and truncates like the tokenizer, reading a long text only as far as its first max_tokens ids."""

    def __init__(
        self, tokenizer: TextEncoder, max_tokens: int, pad_id: int, chars_per_token: int = CHARS_PER_TOKEN_GUESS
    ) -> None:
        self._tokenizer = tokenizer
        self._pad_id = pad_id
        self.reads_prefixes = cuts_are_exact(tokenizer)
        self._first_cut = chars_per_token * max_tokens if self.reads_prefixes else None

    def ids(self, text: str) -> np.ndarray:
        """The ids `tokenizer.encode(text)` gives, int64, from as short a prefix of `text` as suffices.

        `encode_batch_fast` gives the ids of `encode` without computing character offsets, which nothing
        here reads: a fifth less time on long documents."""
        cut = self._first_cut
        while cut is not None and cut < len(text):
            space = text.find(" ", cut)
            if space < 0:
                break
            ids = self._encode(text[:space])
            # A last id that is not padding: the prefix filled every position, so the ids are the text's.
            if ids[-1] != self._pad_id:
                return ids
            cut = 2 * space
        return self._encode(text)

    def ids_within(self, text: str, chars: int) -> np.ndarray | None:
        """The ids of `text` when all max_tokens of them lie within its first `chars` characters (so the
        rest of the text cannot change them), read from those alone; None when they do not, or when cuts of
        this tokenizer are not exact."""
        space = text.rfind(" ", 0, chars + 1) if self.reads_prefixes else -1
        if space <= 0:
            return None
        ids = self._encode(text[:space])
        return ids if ids[-1] != self._pad_id else None

    def _encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode_batch_fast([text])[0].ids, dtype=np.int64)


def cuts_are_exact(tokenizer: TextEncoder) -> bool:
    """Whether the ids of a text cut at a space are a prefix of the whole text's ids for this tokenizer:
    a character-wise normaliser, a whitespace pre-tokenizer, a word-wise model, no post-processor, and
    truncation and padding at the right."""
    spec = json.loads(tokenizer.to_str())
    truncation, padding = spec.get("truncation") or {}, spec.get("padding") or {}
    return (
        is_characterwise(spec["normalizer"])
        and _splits_at_whitespace(spec["pre_tokenizer"])
        and spec["model"].get("type") in WORDWISE_MODELS
        and spec.get("post_processor") is None
        and truncation.get("direction", "Right") == "Right"
        and padding.get("direction", "Right") == "Right"
    )


def _splits_at_whitespace(spec: dict | None) -> bool:
    """A whitespace pre-tokenizer, alone or after Splits that each isolate single characters of a class without the
    space (the trainer's, for emoji and scripts written without spaces): no word then spans a space."""
    before, last = pre_tokenizer_members(spec)
    return last.get("type") in WHITESPACE_PRE_TOKENIZERS and all(_isolates_characters(member) for member in before)


def _isolates_characters(spec: dict) -> bool:
    """A Split that isolates each character of one character class that does not hold the space."""
    isolated = character_class(spec, "Split")
    return (isolated is not None and spec.get("behavior") == "Isolated" and not spec.get("invert", False)
            and isolated.fullmatch(" ") is None)
