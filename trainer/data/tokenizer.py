"""The WordPiece tokenizer shared by the trainer and the server (saved as the bundle's tokenizer.json)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, max_tokens: int, lowercase: bool = True
) -> Tokenizer:
    """Train a WordPiece tokenizer on `texts` that pads and truncates every encoding to `max_tokens` ids.

    [PAD] is id 0 and [UNK] id 1; padding and truncation are stored in the tokenizer itself, so a
    tokenizer loaded from its JSON file encodes to the same fixed length anywhere.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[PAD_TOKEN, UNK_TOKEN], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID or tokenizer.token_to_id(UNK_TOKEN) != UNK_ID:
        raise RuntimeError("WordPiece training did not put [PAD] at id 0 and [UNK] at id 1")
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN, length=max_tokens)
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """int64 [N, max_tokens] token ids of `texts`; the tokenizer must pad to a fixed length."""
    padding = tokenizer.padding
    if padding is None or padding.get("length") is None:
        raise ValueError("tokenizer must pad to a fixed length (use train_tokenizer)")
    length = padding["length"]
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64).reshape(len(encodings), length)
    return ids
