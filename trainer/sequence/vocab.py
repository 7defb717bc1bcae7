"""The character vocabulary of sequence models: printable ASCII plus padding, start and end marks.

Characters, not subwords: a dictated line must come out exactly, and code is full of identifiers no
subword vocabulary has seen; 95 characters cover every line with no unknown token, keep the embedding
and output head tiny, and let the server tokenize with a table lookup. The price is one output token
per character (a 40-character line takes 41 tokens with its end mark).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_ID = 0
BOS_ID = 1  # the input of the first output token: "nothing emitted yet"
EOS_ID = 2  # the output token that ends the answer
SPECIALS = ("[PAD]", "[BOS]", "[EOS]")
CHARACTERS = "".join(chr(code) for code in range(32, 127))
VOCAB_SIZE = len(SPECIALS) + len(CHARACTERS)
_IDS = {char: index + len(SPECIALS) for index, char in enumerate(CHARACTERS)}


def unknown_characters(text: str) -> list[str]:
    """The distinct characters of `text` outside the vocabulary, in order of appearance."""
    return list(dict.fromkeys(char for char in text if char not in _IDS))


def encode(text: str) -> list[int]:
    """Ids of the characters of `text`; a character outside printable ASCII is a ValueError."""
    unknown = unknown_characters(text)
    if unknown:
        raise ValueError(f"characters outside printable ASCII: {''.join(unknown)!r}")
    return [_IDS[char] for char in text]


def decode(ids: Sequence[int]) -> str:
    """The text of output ids up to the first end mark (padding and start marks skipped)."""
    chars = []
    for token in ids:
        if token == EOS_ID:
            break
        if token >= len(SPECIALS):
            chars.append(CHARACTERS[token - len(SPECIALS)])
    return "".join(chars)


def encode_batch(texts: Sequence[str], length: int, end_mark: bool = False) -> np.ndarray:
    """int64 [N, length] ids, padded with PAD_ID; with `end_mark` each row ends with EOS_ID.

    A text longer than `length` (counting its end mark) is a ValueError: nothing is cut silently."""
    out = np.full((len(texts), length), PAD_ID, dtype=np.int64)
    for row, text in enumerate(texts):
        ids = encode(text) + ([EOS_ID] if end_mark else [])
        if len(ids) > length:
            raise ValueError(f"{len(ids)} tokens do not fit in {length}: {text!r}")
        out[row, : len(ids)] = ids
    return out
