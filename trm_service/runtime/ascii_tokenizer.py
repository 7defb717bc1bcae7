"""A tokenizer that tokenises ASCII text in Python around the library's WordPiece, with the library's ids.

The tokenizers library normalises text one character at a time in Rust, keeps each character's alignment
and builds an encoding of every token (strings, offsets, masks): for a 20 Newsgroups post that is most of
tokenising it. On ASCII text the pipeline of the bundles' tokenizers comes down to string operations:

- BERT's normaliser drops control characters, turns tab, newline and carriage return into spaces and
  lowercases (CJK spacing and accent stripping change no ASCII character): `str.translate`, `str.lower`.
- BERT's pre-tokenizer then splits at spaces and isolates each punctuation character; once the clean-up
  has run, every other character is a letter or a digit: one regular expression.
- WordPiece encodes each word on its own: the library's own model does, once per distinct word (a cache),
  and truncation and padding at the right cut and fill the concatenated ids. Short texts skip this step
  (WORDS_MIN_CHARS).

A tokenizer made of other parts gets as much of this as it matches (BERT's pre-tokenizer may follow splits that
match no ASCII character, as the trainer's do where its texts hold emoji or scripts written without spaces): with
BERT's normaliser or Lowercase (alone, or in a Sequence whose other members leave ASCII text as it is) but another
pre-tokenizer, model,
post-processor or truncation, only the normaliser runs in Python and the normalised text goes through the
same tokenizer without its normaliser; with any other normaliser, the whole tokenizer. Text with any
non-ASCII character, and text that holds one of the tokenizer's added tokens (which it matches before
normalising, as `[PAD]` in the raw text), always goes through the whole tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer
from tokenizers.models import Model

from trm_service.runtime.normalizer_spec import ascii_acting, character_class, pre_tokenizer_members
from trm_service.runtime.prefix_tokenizer import TokenIds

# BERT's clean-up on ASCII: the C0 control characters and DEL are dropped, except tab, newline and carriage
# return, which become spaces (as every whitespace character does).
_CLEAN_ASCII = {code: None for code in (*range(0x20), 0x7F)} | {ord(c): " " for c in "\t\n\r"}
# BERT's pre-tokenizer on cleaned ASCII text: runs of letters and digits, and each other non-space character
# (all of them are punctuation to it) on its own.
_BERT_WORDS = re.compile(r"[0-9A-Za-z]+|[^ 0-9A-Za-z]")

# More added tokens than this and looking for them in every text would cost more than the normaliser saves.
MAX_ADDED_TOKENS = 64
WORDS_MIN_CHARS = 256
"""Shorter texts go through the library after the normaliser. Intent's queries (about 40 characters) take 6
instead of 11 µs in Python, yet answered 5-6 % fewer requests at 8 callers side by side (0.92-0.93x against
0.98x the plain server): the library's call runs without the GIL, so the model's thread gets on meanwhile."""
WORD_CACHE_SIZE = 1 << 15
"""Distinct words whose WordPiece ids are kept (all are dropped when it is full): 97 % of the words of the
20 Newsgroups test posts come from the cache, on the first pass over them as on a second in another order
(words repeat across documents); 2.4 MB per model when full."""


class _WordIds(dict[str, tuple[int, ...]]):
    """WordPiece ids by word, from the tokenizer's model on a miss; emptied when it holds `size` words. A dict
    lookup instead of `functools.lru_cache`, which reorders its list on every hit: a 20 Newsgroups post's
    words in 70-93 instead of 112-135 µs."""

    def __init__(self, model: Model, size: int) -> None:
        super().__init__()
        self._model = model
        self._size = size

    def __missing__(self, word: str) -> tuple[int, ...]:
        if len(self) >= self._size:
            self.clear()
        ids = self[word] = tuple(token.id for token in self._model.tokenize(word))
        return ids


@dataclass(frozen=True)
class WordPieceIds:
    """The ids of one text, as `Encoding.ids` holds them."""

    ids: list[int]


@dataclass(frozen=True)
class _Words:
    """BERT's pre-tokenizer and WordPiece in Python, with the tokenizer's truncation and padding to `length`."""

    word_ids: _WordIds
    length: int
    pad_id: int

    def ids(self, normalized: str) -> list[int]:
        ids: list[int] = []
        length = self.length
        # Every word has at least one id ([UNK] at worst), so the first `length` words give the first `length` ids.
        for word_ids in map(self.word_ids.__getitem__, _BERT_WORDS.findall(normalized)[:length]):
            ids += word_ids
        return ids[:length] if len(ids) >= length else ids + [self.pad_id] * (length - len(ids))


@dataclass(frozen=True)
class _AsciiPath:
    """The normaliser in Python, what comes after it (`words`, or the tokenizer without its normaliser), and the
    added tokens that send a text the other way: as the whole tokenizer finds them in the raw text, and as
    either tokenizer may find them once normalised."""

    normalize: Callable[[str], str]
    without_normalizer: Tokenizer
    words: _Words | None
    added_raw: tuple[str, ...]
    added_normalized: tuple[str, ...]

    def takes(self, text: str, normalized: str) -> bool:
        return not any(token in text for token in self.added_raw) and not any(
            token in normalized for token in self.added_normalized
        )


class AsciiTokenizer:
    """`encode_batch_fast` and `to_str` of `tokenizer`, ASCII texts tokenised in Python as far as this module
    reproduces the tokenizer's parts (see the module docstring), the words in Python only for texts longer than
    `words_min_chars`; the ids are always the tokenizer's."""

    def __init__(self, tokenizer: Tokenizer, words_min_chars: int = WORDS_MIN_CHARS) -> None:
        self._tokenizer = tokenizer
        self._words_min_chars = words_min_chars
        spec = json.loads(tokenizer.to_str())
        normalize = ascii_normalizer(spec["normalizer"])
        added = tuple(token["content"] for token in spec.get("added_tokens", []))
        self._ascii_path = (
            None
            if normalize is None or len(added) > MAX_ADDED_TOKENS
            else _AsciiPath(
                normalize=normalize,
                without_normalizer=Tokenizer.from_str(json.dumps({**spec, "normalizer": None})),
                words=_bert_words(tokenizer, spec),
                added_raw=added,
                added_normalized=added + tuple(normalize(token) for token in added),
            )
        )

    @property
    def normalizes_in_python(self) -> bool:
        """Whether ASCII texts skip the library's normaliser."""
        return self._ascii_path is not None

    @property
    def splits_in_python(self) -> bool:
        """Whether long ASCII texts skip the library's whole pipeline but WordPiece."""
        return self._ascii_path is not None and self._ascii_path.words is not None

    def encode_batch_fast(self, texts: list[str]) -> Sequence[TokenIds]:
        """The tokenizer's ids of `texts`."""
        path = self._ascii_path
        if path is None or not all(text.isascii() for text in texts):
            return self._tokenizer.encode_batch_fast(texts)
        normalized = [path.normalize(text) for text in texts]
        if not all(path.takes(text, clean) for text, clean in zip(texts, normalized, strict=True)):
            return self._tokenizer.encode_batch_fast(texts)
        if path.words is not None and all(len(text) > self._words_min_chars for text in texts):
            return [WordPieceIds(path.words.ids(clean)) for clean in normalized]
        return path.without_normalizer.encode_batch_fast(normalized)

    def to_str(self) -> str:
        """The tokenizer's own JSON (what its ids depend on)."""
        return self._tokenizer.to_str()


def ascii_normalizer(spec: dict[str, Any] | None) -> Callable[[str], str] | None:
    """The normaliser of a tokenizer.json `normalizer` entry as a function of ASCII text; None for a
    normaliser this module does not reproduce, and for none at all (there is nothing to skip). A Sequence is
    reproduced when one member is BERT's or Lowercase and every other leaves ASCII text as it is
    (`normalizer_spec.ascii_acting`), as the trainer's is for scripts whose marks it keeps."""
    acting = ascii_acting(spec)
    if acting is None:
        return None
    if acting["type"] == "Lowercase":
        return str.lower
    clean, lowercase = acting.get("clean_text", True), acting.get("lowercase", True)

    def normalize(text: str) -> str:
        if clean:
            text = text.translate(_CLEAN_ASCII)
        return text.lower() if lowercase else text

    return normalize


def _bert_on_ascii(spec: dict[str, Any] | None) -> bool:
    """Whether a tokenizer.json `pre_tokenizer` entry splits ASCII text as BERT's does: BERT's alone, or after
    splits whose pattern matches no ASCII character (the trainer's, which isolates the characters of scripts
    written without spaces and emoji)."""
    before, last = pre_tokenizer_members(spec)
    return last.get("type") == "BertPreTokenizer" and all(_matches_no_ascii(member) for member in before)


def _matches_no_ascii(spec: dict[str, Any]) -> bool:
    """A Split whose pattern is one character class (`normalizer_spec.character_class`) holding no ASCII character."""
    pattern = character_class(spec, "Split")
    return pattern is not None and not any(pattern.fullmatch(chr(code)) for code in range(128))


def _bert_words(tokenizer: Tokenizer, spec: dict[str, Any]) -> _Words | None:
    """The Python pre-tokenizer and WordPiece for a BERT tokenizer that pads and truncates every text to one
    length at the right; None for any other."""
    normalizer, truncation, padding = ascii_acting(spec["normalizer"]), spec.get("truncation"), spec.get("padding")
    fixed = (padding or {}).get("strategy")
    if not (
        normalizer is not None and normalizer["type"] == "BertNormalizer" and normalizer.get("clean_text", True)
        and _bert_on_ascii(spec["pre_tokenizer"])
        and spec["model"]["type"] == "WordPiece"
        and spec.get("post_processor") is None
        and truncation is not None and truncation["direction"] == "Right" and truncation["stride"] == 0
        and padding is not None and padding["direction"] == "Right" and isinstance(fixed, dict)
        and fixed.get("Fixed") == truncation["max_length"]
    ):
        return None
    return _Words(word_ids=_WordIds(tokenizer.model, WORD_CACHE_SIZE), length=truncation["max_length"],
                  pad_id=padding["pad_id"])
