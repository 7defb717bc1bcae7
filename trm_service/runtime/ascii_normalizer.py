"""A tokenizer whose normaliser runs in Python's C string methods when the text is ASCII.

The tokenizers library normalises text one character at a time in Rust and keeps each character's
alignment: for a 20 Newsgroups post that is a third of tokenising it. On ASCII text BERT's normaliser
comes down to dropping control characters, turning tab, newline and carriage return into spaces and
lowercasing (CJK spacing and accent stripping change no ASCII character), which `str.translate` and
`str.lower` do in microseconds. The text so normalised goes through the same tokenizer without its
normaliser: the same ids. Text with any other character, and text that holds one of the tokenizer's added
tokens (which it matches before normalising, as `[PAD]` in the raw text), goes through the whole tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenizers import Encoding, Tokenizer

# BERT's clean-up on ASCII: the C0 control characters and DEL are dropped, except tab, newline and carriage
# return, which become spaces (as every whitespace character does).
_CLEAN_ASCII = {code: None for code in (*range(0x20), 0x7F)} | {ord(c): " " for c in "\t\n\r"}


# More added tokens than this and looking for them in every text would cost more than the normaliser saves.
MAX_ADDED_TOKENS = 64


@dataclass(frozen=True)
class _AsciiPath:
    """The normaliser in Python, the tokenizer without it, and the added tokens that send a text the other way:
    as the whole tokenizer finds them in the raw text, and as either tokenizer may find them once normalised."""

    normalize: Callable[[str], str]
    without_normalizer: Tokenizer
    added_raw: tuple[str, ...]
    added_normalized: tuple[str, ...]

    def takes(self, text: str, normalized: str) -> bool:
        return not any(token in text for token in self.added_raw) and not any(
            token in normalized for token in self.added_normalized
        )


class AsciiNormalizingTokenizer:
    """`encode_batch_fast` and `to_str` of `tokenizer`, with its normaliser done in Python on ASCII texts
    when it is one this module reproduces (BertNormalizer, Lowercase); the ids are always the tokenizer's."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        spec = json.loads(tokenizer.to_str())
        normalize = ascii_normalizer(spec["normalizer"])
        added = tuple(token["content"] for token in spec.get("added_tokens", []))
        self._ascii_path = (
            None
            if normalize is None or len(added) > MAX_ADDED_TOKENS
            else _AsciiPath(
                normalize=normalize,
                without_normalizer=Tokenizer.from_str(json.dumps({**spec, "normalizer": None})),
                added_raw=added,
                added_normalized=added + tuple(normalize(token) for token in added),
            )
        )

    @property
    def normalizes_in_python(self) -> bool:
        """Whether ASCII texts skip the library's normaliser."""
        return self._ascii_path is not None

    def encode_batch_fast(self, texts: list[str]) -> list[Encoding]:
        """The tokenizer's encodings of `texts` (without character offsets)."""
        path = self._ascii_path
        if path is None or not all(text.isascii() for text in texts):
            return self._tokenizer.encode_batch_fast(texts)
        normalized = [path.normalize(text) for text in texts]
        if not all(path.takes(text, clean) for text, clean in zip(texts, normalized, strict=True)):
            return self._tokenizer.encode_batch_fast(texts)
        return path.without_normalizer.encode_batch_fast(normalized)

    def to_str(self) -> str:
        """The tokenizer's own JSON (what its ids depend on)."""
        return self._tokenizer.to_str()


def ascii_normalizer(spec: dict[str, Any] | None) -> Callable[[str], str] | None:
    """The normaliser of a tokenizer.json `normalizer` entry as a function of ASCII text; None for a
    normaliser this module does not reproduce, and for none at all (there is nothing to skip)."""
    kind = None if spec is None else spec["type"]
    if kind == "Lowercase":
        return str.lower
    if spec is None or kind != "BertNormalizer":
        return None
    clean, lowercase = spec.get("clean_text", True), spec.get("lowercase", True)

    def normalize(text: str) -> str:
        if clean:
            text = text.translate(_CLEAN_ASCII)
        return text.lower() if lowercase else text

    return normalize
