"""Tokenising a prefix of a long text gives exactly the whole text's ids, and reads only that prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

from trainer.data.text import load_newsgroups
from trainer.data.tokenizer import PAD_ID, train_tokenizer
from trm_service.runtime.prefix_tokenizer import PrefixTokenizer, cuts_are_exact

MODELS = Path(__file__).resolve().parents[1] / "trm_service" / "models"
NEWSGROUPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "newsgroups20"


class CountingTokenizer:
    """A tokenizer that records the length of every text it encodes."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.encoded_lengths: list[int] = []

    def to_str(self) -> str:
        return self.tokenizer.to_str()

    def encode_batch_fast(self, texts: list[str]) -> list:
        self.encoded_lengths += [len(text) for text in texts]
        return self.tokenizer.encode_batch_fast(texts)


def _shipped(name: str) -> tuple[Tokenizer, int, int]:
    """A shipped bundle's tokenizer, max_tokens and pad id."""
    spec = json.loads((MODELS / name / "manifest.json").read_text())["input"]
    return Tokenizer.from_file(str(MODELS / name / spec["tokenizer"])), spec["max_tokens"], spec["pad_id"]


@pytest.mark.parametrize("name", ["intent-clinc150", "routing-20ng"])
def test_the_shipped_tokenizers_are_cut_and_read_a_long_post_only_in_part(name: str):
    tokenizer, max_tokens, pad_id = _shipped(name)
    assert cuts_are_exact(tokenizer)
    counting = CountingTokenizer(tokenizer)
    text = "the quick brown fox jumps over the lazy dog. " * 450  # 20,250 characters
    ids = PrefixTokenizer(counting, max_tokens, pad_id).ids(text)  # type: ignore[arg-type]
    assert ids.tolist() == tokenizer.encode(text).ids
    assert sum(counting.encoded_lengths) < 10 * max_tokens  # the whole text was not read


def test_routing_ids_equal_the_whole_posts_ids_on_the_long_test_posts():
    tokenizer, max_tokens, pad_id = _shipped("routing-20ng")
    long_texts = [text for text in load_newsgroups(NEWSGROUPS, "test").texts if len(text) > 2 * max_tokens]
    assert len(long_texts) > 2000
    prefix = PrefixTokenizer(tokenizer, max_tokens, pad_id)
    for text in long_texts:
        assert prefix.ids(text).tolist() == tokenizer.encode(text).ids


def test_long_routing_test_posts_are_read_from_their_first_max_chars_when_those_hold_every_token():
    """The server reads a text longer than max_chars when its first max_chars characters hold the max_tokens
    ids the model reads: the ids are then the whole post's; otherwise it is refused (None)."""
    tokenizer, max_tokens, pad_id = _shipped("routing-20ng")
    max_chars = json.loads((MODELS / "routing-20ng" / "manifest.json").read_text())["input"]["max_chars"]
    longer = [text for text in load_newsgroups(NEWSGROUPS, "test").texts if len(text) > max_chars]
    assert len(longer) == 38
    prefix = PrefixTokenizer(tokenizer, max_tokens, pad_id)
    for text in longer:  # all of them: 512 ids lie well within 20,000 characters of a real post
        ids = prefix.ids_within(text, max_chars)
        assert ids is not None and ids.tolist() == tokenizer.encode(text).ids
    blob = "x" * max_chars + " " + longer[0]  # one word as long as the limit: the post's ids lie beyond it
    assert prefix.ids_within(blob, max_chars) is None

PIECES = ["play", "Jazz", "café", "e\u0301", "\u0301", "ΟΔΟΣ", "天气", "[PAD]", "[UNK]", ",", "...", "'s", "\u200b",
          "\x07", "\t", "\n", " ", "  ", "qwxz", "7", "-", "naïve", "playlist",
          "ＰＬＡＹ", "ﬁ", "①", "\u00a8",  # compatibility forms (NFKC writes U+00A8 as a space and an accent)
          "🙂", "จอง"]  # characters the trainer's pre-tokenizer isolates
# Every piece is a word of the vocabulary, so a word cut in two would change the ids.
SMALL = {max_tokens: train_tokenizer(PIECES, vocab_size=60, max_tokens=max_tokens) for max_tokens in (3, 8)}


# Words whose marks the trainer keeps (Hindi, a script written with spaces; a virama and a nukta alone, which join
# the letter before them).
MARKED_PIECES = [*PIECES, "कुत्ता", "कत्ता", "ज़रूर", "\u094d", "\u093c"]
MARK_KEEPING = {
    max_tokens: train_tokenizer(MARKED_PIECES, vocab_size=60, max_tokens=max_tokens) for max_tokens in (3, 8)
}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(MARKED_PIECES), max_size=120), st.sampled_from([3, 8]), st.integers(1, 3),
       st.booleans())
def test_ids_equal_the_whole_texts_ids_for_any_text(
    pieces: list[str], max_tokens: int, chars_per_token: int, marks_kept: bool
):
    """Spaces next to combining marks, CJK, special-token literals, control characters, final sigma; first
    cuts short enough that most texts take retries; BERT's normaliser, and the trainer's that keeps marks
    (`text_normalizer`)."""
    text = "".join(pieces)
    tokenizer = (MARK_KEEPING if marks_kept else SMALL)[max_tokens]
    normalizer = [member["type"] for member in json.loads(tokenizer.to_str())["normalizer"]["normalizers"]]
    assert normalizer[:2] == ["NFKC", "BertNormalizer"] and len(normalizer) == (5 if marks_kept else 2)
    assert cuts_are_exact(tokenizer)
    prefix = PrefixTokenizer(tokenizer, max_tokens, PAD_ID, chars_per_token=chars_per_token)
    assert prefix.ids(text).tolist() == tokenizer.encode(text).ids
    within = prefix.ids_within(text, chars_per_token * max_tokens)
    assert within is None or within.tolist() == tokenizer.encode(text).ids


@pytest.mark.parametrize("pattern", ["[ a]", "[a] [b]", "[ab]+"])
def test_a_split_that_can_take_a_space_or_several_characters_is_never_cut(pattern: str):
    """The trainer's split isolates single characters of a class without the space; one of another pattern could
    hold a space in a word, and the whole text is read."""
    tokenizer = train_tokenizer(["alpha beta"], vocab_size=10, max_tokens=4)
    assert cuts_are_exact(tokenizer)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                       pre_tokenizers.BertPreTokenizer()])
    assert not cuts_are_exact(tokenizer)


def test_a_normaliser_that_reads_across_a_space_is_never_cut():
    """With a normaliser that joins words over a space, cutting would change the ids: it is refused."""
    tokenizer = train_tokenizer(["alpha beta gamma alphabeta"], vocab_size=10, max_tokens=4)
    tokenizer.normalizer = normalizers.Replace(Regex(" b"), "b")
    text = "alpha alpha alpha alpha beta gamma"
    # The first cut (5 characters a token: at the space after character 20) ends four whole words.
    cut = text[: text.find(" ", 20)]
    assert tokenizer.encode(cut).ids != tokenizer.encode(text).ids  # the hazard is real for this tokenizer
    assert not cuts_are_exact(tokenizer)
    prefix = PrefixTokenizer(tokenizer, 4, PAD_ID, chars_per_token=5)
    assert prefix.ids(text).tolist() == tokenizer.encode(text).ids
    assert prefix.ids_within(text, 25) is None  # a long text is then refused, not read from a cut
