"""The WordPiece tokenizer shared by the trainer and the server (saved as the bundle's tokenizer.json)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1
# Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, Japanese kana): BERT's pre-tokenizer
# isolates CJK ideographs only, so a sentence in one of these would be read as a single unknown word.
UNSPACED_SCRIPTS = "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff]"  # a character of one
# Emoji and pictographic symbols (the Miscellaneous Technical, Miscellaneous Symbols, Dingbats and Miscellaneous
# Symbols and Arrows blocks, and U+1F000-1FAFF: emoticons, pictographs, transport, the supplements). BERT's
# pre-tokenizer splits at spaces and punctuation only, so `expected🤬🙄😡` was one unknown word and `😍😍` another:
# in reviews and chat they are what says the label.
EMOJI = "[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff]"
ISOLATED = UNSPACED_SCRIPTS[:-1] + EMOJI[1:]  # a character read as a word of its own: either kind
# Marks stripped as accents, as BERT strips them: the Latin, Greek and Cyrillic diacritics (é, ñ, ü, ç, ά, й:
# the Combining Diacritical Marks blocks), Hebrew's points and Arabic's harakat (vowel signs that most writing
# leaves out), and the variation selectors, which choose how a character is drawn (❤️ and ❤ are one). BERT
# strips every other non-spacing mark too, where in other scripts one spells another letter or sound: the kana
# voicing marks (が read as か), Devanagari's virama and vowel signs (कुत्ता as कतता), Thai's vowel and tone
# marks (ไม่ as ไม).
ACCENTS = (
    "[\u0300-\u036f\u1ab0-\u1abd\u1dc0-\u1dff\u20d0-\u20dc\u20e1\u20e5-\u20f0\ufe20-\ufe2f"
    "\ufe00-\ufe0f\U000e0100-\U000e01ef"
    "\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed]"
)
_ACCENT = re.compile(ACCENTS)


def text_normalizer(texts: Sequence[str], lowercase: bool = True) -> normalizers.Normalizer:
    """Unicode's compatibility forms folded (NFKC: full-width `ＡＢＣ` is `ABC`, half-width katakana `ｱﾗｰﾑ` is
    `アラーム`, a ligature its letters), then BERT's clean-up: control characters removed, CJK ideographs spaced,
    accents stripped, lowercased. When `texts` hold a non-spacing mark that is not an accent (`ACCENTS`), only
    accents are stripped and the rest is composed again (NFD, `ACCENTS` removed, NFC), so that those marks stay
    part of their words."""
    if not any(_marks_beyond_accents(text) for text in texts):
        return normalizers.Sequence([normalizers.NFKC(),
                                     normalizers.BertNormalizer(lowercase=lowercase, strip_accents=True)])
    return normalizers.Sequence([
        normalizers.NFKC(), normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False),
        normalizers.NFD(), normalizers.Replace(Regex(ACCENTS), ""), normalizers.NFC(),
    ])


_SAME_INPUT_NORMALIZER = normalizers.Sequence([  # what both normalisers do
    normalizers.NFKC(), normalizers.BertNormalizer(lowercase=True, strip_accents=False), normalizers.NFD(),
    normalizers.Replace(Regex(ACCENTS), ""),
])
_ASCII_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what BERT's clean-up drops of ASCII text
_WORD_READ = re.compile(ISOLATED[:-1] + "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|" r"[^\W_]+|\S")  # BERT splits
# at spaces and punctuation (`_` too), a CJK ideograph is a word, and so is an `ISOLATED` character


def words_read(text: str) -> list[str]:
    """The words and punctuation marks a tokenizer of `train_tokenizer` reads in `text`, whichever normaliser and
    splitter the training texts chose: lowercased, accents stripped (`ACCENTS`, which both normalisers strip),
    split at spaces and punctuation, emoji and characters of unspaced scripts apart. Texts with the same words
    read are the same input to a model (`Café, s'il vous plaît` and `cafe , s'il vous plait`). ASCII text, which
    needs none of the Unicode work, is read in Python: 1.2 s for 20 Newsgroups' 11,314 training posts and CLINC150's
    15,000 sentences together, where the normaliser alone took 2.3 s for the posts."""
    cleaned = _ASCII_CONTROL.sub("", text).lower() if text.isascii() else _SAME_INPUT_NORMALIZER.normalize_str(text)
    return _WORD_READ.findall(cleaned)


def _marks_beyond_accents(text: str) -> bool:
    """Whether BERT's accent stripping would remove a mark of `text` that is not an accent."""
    return not text.isascii() and any(
        unicodedata.category(char) == "Mn" and not _ACCENT.match(char) for char in unicodedata.normalize("NFKD", text)
    )


def word_splitter() -> pre_tokenizers.PreTokenizer:
    """BERT's pre-tokenizer (words and punctuation marks) after each emoji and each character of a script written
    without spaces is isolated (`ISOLATED`): those texts are read character by character, and an emoji is a word
    wherever it is written, in every model (one trained on plain English read `spanish🙂` as one unknown word). On
    ASCII text it splits as BERT's alone, and the server's fast paths read it (trm_service/runtime)."""
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(ISOLATED), behavior="isolated"),
                                    pre_tokenizers.BertPreTokenizer()])


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, max_tokens: int, lowercase: bool = True, more_words: Sequence[str] = ()
) -> Tokenizer:
    """Build a deterministic word-level WordPiece tokenizer (unknown words -> [UNK]) from `texts`.

    The vocabulary is the `vocab_size - 2` most frequent words (after normalisation, `text_normalizer`, and
    pre-tokenisation, `word_splitter`), then, while there is room, `more_words` that are not in it yet, in their order;
    every encoding is padded and truncated to `max_tokens` ids.

    [PAD] is id 0 and [UNK] id 1; padding and truncation are stored in the tokenizer itself, so a
    tokenizer loaded from its JSON file encodes to the same fixed length anywhere.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    normalizer = text_normalizer(texts, lowercase)
    pre_tokenizer = word_splitter()
    counts = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    # Most frequent words first, ties broken alphabetically: the same texts always give the same ids
    # (the library's WordPieceTrainer breaks ties in hash order, which differs between runs).
    words = sorted(counts, key=lambda word: (-counts[word], word))[: max(0, vocab_size - 2)]
    words += [word for word in dict.fromkeys(more_words) if word not in counts][: max(0, vocab_size - 2 - len(words))]
    vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID, **{word: i + 2 for i, word in enumerate(words)}}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens([PAD_TOKEN, UNK_TOKEN])  # already ids 0 and 1; marks them special for decoding
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN, length=max_tokens)
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def unknown_share(ids: np.ndarray) -> float:
    """The share of the tokens in `ids` (padding aside) that are [UNK]: words outside the vocabulary."""
    tokens = int((ids != PAD_ID).sum())
    return float((ids == UNK_ID).sum()) / tokens if tokens else 0.0


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """int64 [N, max_tokens] token ids of `texts`; the tokenizer must pad to a fixed length."""
    padding = tokenizer.padding
    if padding is None or padding.get("length") is None:
        raise ValueError("tokenizer must pad to a fixed length (use train_tokenizer)")
    length = padding["length"]
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64).reshape(len(encodings), length)
    return ids
