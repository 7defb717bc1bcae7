"""ASCII text tokenised in Python (the normaliser, BERT's pre-tokenizer, WordPiece word by word) gives exactly the
tokenizer's own normalisation and ids."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

from trainer.data.text import load_newsgroups
from trainer.data.tokenizer import ISOLATED, text_normalizer, train_tokenizer
from trm_bundle.manifest import load_bundle
from trm_service.config import DEFAULT_MODELS_DIR
from trm_service.runtime import ascii_tokenizer
from trm_service.runtime.ascii_tokenizer import MAX_ADDED_TOKENS, AsciiTokenizer, ascii_normalizer
from trm_service.runtime.prefix_tokenizer import PrefixTokenizer
from trm_service.runtime.text_codec import load_tokenizer

NEWSGROUPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "newsgroups20"
ASCII_TEXT = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=200)
# Words, punctuation and every kind of ASCII whitespace and control character, so that cuts and merges happen.
ASCII_PIECES = st.lists(
    st.sampled_from(["Play", "JAZZ", "music", "don't", "U.S.A.", "##ing", "[PAD]", "[pad]", "[UNK]", "[", "]", " ",
                     "  ", "\t", "\n", "\r\n", "\x00", "\x07", "\x0b", "\x0c", "\x1f", "\x7f", "-", "...", "7",
                     "e-mail", "snake_case", "x" * 150, "qzxv", "1990s", "$5", "~/.bashrc", "a|b"]),
    max_size=80,
)  # fmt: skip
# Words longer than WordPiece's 100 characters become [UNK]; 600 pieces pass the 512 tokens of routing's cut.
LONG_ASCII_PIECES = st.lists(st.sampled_from(["the", "launch", "x" * 150, " ", "\n", ".", "qzxv"]), max_size=600)


def _spec(normalizer: normalizers.Normalizer) -> dict:
    """The tokenizer.json entry of `normalizer`."""
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    return json.loads(tokenizer.to_str())["normalizer"]


@cache
def _shipped(name: str) -> Tokenizer:
    """A shipped bundle's tokenizer, loaded as the server loads it (shared: a test that changes it makes its own)."""
    bundle = load_bundle(DEFAULT_MODELS_DIR / name)
    return load_tokenizer(bundle.file(bundle.manifest.input.tokenizer))


@cache
def _shipped_fast(name: str) -> AsciiTokenizer:
    """The shipped tokenizer with every ASCII text, short ones too, split into words in Python."""
    return AsciiTokenizer(_shipped(name), words_min_chars=0)


BERT_VARIANTS = [
    normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip, lowercase=lower)
    for clean in (True, False)
    for chinese in (True, False)
    for strip in (None, True, False)
    for lower in (True, False)
]


@settings(max_examples=300, deadline=None)
@given(ASCII_TEXT, st.sampled_from(range(len(BERT_VARIANTS))))
def test_bert_normaliser_in_python_equals_the_library_on_any_ascii_text(text: str, variant: int):
    normalizer = BERT_VARIANTS[variant]
    normalize = ascii_normalizer(_spec(normalizer))
    assert normalize is not None
    assert normalize(text) == normalizer.normalize_str(text)


@settings(max_examples=100, deadline=None)
@given(ASCII_TEXT)
def test_lowercase_normaliser_in_python_equals_the_library_on_any_ascii_text(text: str):
    normalize = ascii_normalizer(_spec(normalizers.Lowercase()))
    assert normalize is not None
    assert normalize(text) == normalizers.Lowercase().normalize_str(text)


@pytest.mark.parametrize("name", ["intent-clinc150", "routing-20ng"])
@settings(max_examples=200, deadline=None)
@given(pieces=ASCII_PIECES)
def test_shipped_tokenizers_give_their_own_ids_on_any_ascii_text(name: str, pieces: list[str]):
    tokenizer, fast = _shipped(name), _shipped_fast(name)
    assert fast.splits_in_python
    text = "".join(pieces)
    assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


@settings(max_examples=100, deadline=None)
@given(pieces=LONG_ASCII_PIECES)
def test_long_ascii_texts_are_truncated_and_padded_as_the_tokenizer_does(pieces: list[str]):
    tokenizer, fast = _shipped("routing-20ng"), _shipped_fast("routing-20ng")
    texts = ["".join(pieces), "".join(reversed(pieces))]
    assert [e.ids for e in fast.encode_batch_fast(texts)] == [e.ids for e in tokenizer.encode_batch(texts)]


@settings(max_examples=100, deadline=None)
@given(pieces=ASCII_PIECES)
def test_a_bert_tokenizer_that_keeps_case_gives_its_own_ids(pieces: list[str]):
    tokenizer = _variant("intent-clinc150", normalizer=normalizers.BertNormalizer(lowercase=False))
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    assert fast.splits_in_python
    text = "".join(pieces)
    assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


def _variant(name: str, **parts: object) -> Tokenizer:
    """A copy of a shipped tokenizer with some of its parts replaced (`normalizer=`, `pre_tokenizer=`...)."""
    tokenizer = Tokenizer.from_str(_shipped(name).to_str())
    for part, value in parts.items():
        setattr(tokenizer, part, value)
    return tokenizer


@settings(max_examples=100, deadline=None)
@given(pieces=ASCII_PIECES)
def test_splits_that_match_no_ascii_before_berts_keep_the_python_path(pieces: list[str]):
    """The trainer isolates emoji and the characters of scripts written without spaces first (`ISOLATED`): on ASCII
    text that is BERT's pre-tokenizer alone, so the fast path stays (it had left every such bundle's ASCII text to
    the library)."""
    isolating = pre_tokenizers.Split(Regex(ISOLATED), behavior="isolated")
    tokenizer = _variant("intent-clinc150", pre_tokenizer=pre_tokenizers.Sequence([
        isolating, pre_tokenizers.BertPreTokenizer()]))
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    assert fast.splits_in_python
    text = "".join(pieces)
    assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()), id="another pre-tokenizer"),
        pytest.param(lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex("[a-c]"), behavior="isolated"), pre_tokenizers.BertPreTokenizer()])),
            id="a split of ASCII letters first"),
        pytest.param(lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex("[a][b]"), behavior="isolated"), pre_tokenizers.BertPreTokenizer()])),
            id="a split of two letters in a row, though no one ASCII character matches it"),
        pytest.param(lambda t: setattr(t, "normalizer", normalizers.Lowercase()), id="no clean-up"),
        pytest.param(lambda t: setattr(t, "post_processor", processors.BertProcessing(("[SEP]", 1), ("[CLS]", 2))),
                     id="a post-processor"),
        pytest.param(lambda t: t.no_padding(), id="no padding"),
        pytest.param(lambda t: t.enable_truncation(32, stride=4), id="a truncation stride"),
    ],
)
def test_other_bert_like_tokenizers_keep_the_librarys_splitting_and_their_ids(change):
    tokenizer = _variant("intent-clinc150")
    change(tokenizer)
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    assert fast.normalizes_in_python and not fast.splits_in_python
    text = "Book a TABLE\tfor two, don't wait: snake_case and U.S.A."
    assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


def test_routing_ids_equal_the_tokenizers_on_every_test_post():
    """Through the prefix reader too, as the server reads them."""
    tokenizer = _shipped("routing-20ng")
    spec = load_bundle(DEFAULT_MODELS_DIR / "routing-20ng").manifest.input
    prefix = PrefixTokenizer(AsciiTokenizer(tokenizer), spec.max_tokens, spec.pad_id)
    texts = load_newsgroups(NEWSGROUPS, "test").texts
    assert sum(text.isascii() for text in texts) > 7000
    for text in texts:
        assert prefix.ids(text).tolist() == tokenizer.encode(text).ids


def test_a_full_word_cache_is_emptied_and_the_ids_stay_the_tokenizers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ascii_tokenizer, "WORD_CACHE_SIZE", 4)
    tokenizer = _shipped("routing-20ng")
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    texts = ["The launch of the shuttle", "qzxv launch: the orbiter, again", "the the the"]
    for text in texts * 2:
        assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids
    words = fast._ascii_path.words  # the cache itself: bounded by the size it was built with
    assert words is not None and 0 < len(words.word_ids) <= 4


def test_text_with_other_characters_goes_through_the_whole_tokenizer():
    tokenizer = _shipped("routing-20ng")
    normalize = ascii_normalizer(json.loads(tokenizer.to_str())["normalizer"])
    without = Tokenizer.from_str(json.dumps({**json.loads(tokenizer.to_str()), "normalizer": None}))
    text = "Café RÉSUMÉ naïve 天气"
    assert normalize is not None
    assert without.encode(normalize(text)).ids != tokenizer.encode(text).ids  # the Python path would be wrong here
    assert AsciiTokenizer(tokenizer).encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


# The trainer's normaliser for texts whose marks spell letters (kana voicing marks, Devanagari, Thai).
MARK_KEEPING = text_normalizer(["कुत्ता"])


@settings(max_examples=300, deadline=None)
@given(ASCII_TEXT)
def test_the_mark_keeping_normaliser_in_python_equals_the_library_on_any_ascii_text(text: str):
    normalize = ascii_normalizer(_spec(MARK_KEEPING))
    assert normalize is not None and normalize(text) == MARK_KEEPING.normalize_str(text)


@settings(max_examples=100, deadline=None)
@given(ASCII_PIECES)
def test_a_tokenizer_that_keeps_marks_gives_its_own_ids(pieces: list[str]):
    """Trained on Hindi and English (made-up queries): ASCII texts split in Python, every text the library's ids."""
    tokenizer = _mark_keeping_tokenizer()
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    assert fast.normalizes_in_python and fast.splits_in_python
    for text in ("".join(pieces), "play कुत्ता music", "Play JAZZ"):
        assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids


@cache
def _mark_keeping_tokenizer() -> Tokenizer:
    return train_tokenizer(["कुत्ता play music", "कत्ता jazz, don't U.S.A.", "snake_case 1990s"], 60, 16)


@pytest.mark.parametrize(
    "normalizer",
    [
        normalizers.NFKC(),
        normalizers.Sequence([normalizers.Lowercase(), normalizers.Strip()]),
        normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace("e", "3")]),
        normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex("[a-f]"), "")]),
        normalizers.Sequence([normalizers.Lowercase(), normalizers.BertNormalizer()]),
    ],
    ids=["NFKC alone", "Strip", "Replace of a string", "Replace of ASCII letters", "two that act on ASCII"],
)
def test_other_normalisers_stay_in_the_library(normalizer: normalizers.Normalizer):
    tokenizer = _variant("intent-clinc150", normalizer=normalizer)
    fast = AsciiTokenizer(tokenizer)
    assert not fast.normalizes_in_python
    assert fast.encode_batch_fast(["Book a TABLE\tfor two"])[0].ids == tokenizer.encode("Book a TABLE\tfor two").ids


def test_a_tokenizer_with_many_added_tokens_stays_in_the_library():
    """Looking for each added token in every text would cost more than the normaliser saves."""
    tokenizer = Tokenizer.from_str(_shipped("intent-clinc150").to_str())
    tokenizer.add_tokens([f"<tool{i}>" for i in range(MAX_ADDED_TOKENS)])
    fast = AsciiTokenizer(tokenizer)
    assert not fast.normalizes_in_python
    assert fast.encode_batch_fast(["call <tool7> now"])[0].ids == tokenizer.encode("call <tool7> now").ids


def test_a_tokenizer_for_scripts_without_spaces_or_emoji_splits_only_ascii_text_in_python():
    """Trained on Thai (made-up queries) and emoji, the tokenizer isolates those characters before BERT's splitting,
    which no ASCII text holds: ASCII text is split in Python, the rest by the library, each with the library's ids."""
    tokenizer = train_tokenizer(["อยากจองโต๊ะสองที่", "ยกเลิกการจอง", "book a table for two", "great 🎉"], 100, 16)
    fast = AsciiTokenizer(tokenizer, words_min_chars=0)
    assert fast.normalizes_in_python and fast.splits_in_python
    for text in ["Book a TABLE, please", "ยกเลิก book a table", "จองโต๊ะ", "great🎉 table"]:
        assert fast.encode_batch_fast([text])[0].ids == tokenizer.encode(text).ids
