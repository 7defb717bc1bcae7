"""The WordPiece tokenizer: fixed-length ids, pad id 0, and the same ids after a save/load round trip."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers

from trainer.data.text import load_clinc150
from trainer.data.tokenizer import PAD_ID, UNK_ID, encode_texts, text_normalizer, train_tokenizer, words_read

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return load_clinc150(Path(__file__).resolve().parents[2] / "shared" / "data" / "clinc150", "train").texts[::10]


@pytest.fixture(scope="module")
def tokenizer(corpus: list[str]) -> Tokenizer:
    return train_tokenizer(corpus, vocab_size=800, max_tokens=MAX_TOKENS)


def test_special_token_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.token_to_id("[PAD]") == PAD_ID == 0
    assert tokenizer.token_to_id("[UNK]") == UNK_ID == 1
    assert 200 < tokenizer.get_vocab_size() <= 800


def test_encodings_have_fixed_length_and_pad_with_zero(tokenizer: Tokenizer, corpus: list[str]) -> None:
    long_text = " ".join(corpus[:10])
    ids = encode_texts(tokenizer, ["what", long_text, ""])
    assert ids.dtype == np.int64 and ids.shape == (3, MAX_TOKENS)
    assert ids[0, 0] != PAD_ID and np.all(ids[0, 1:] == PAD_ID)
    assert np.all(ids[1] != PAD_ID)
    assert np.all(ids[2] == PAD_ID)
    assert encode_texts(tokenizer, []).shape == (0, MAX_TOKENS)


def test_saved_tokenizer_gives_the_same_ids(tokenizer: Tokenizer, corpus: list[str], tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = Tokenizer.from_file(str(path))
    texts = [*corpus[:50], "what is my credit score, please?", " ".join(corpus[:20])]
    reloaded = [encoding.ids for encoding in loaded.encode_batch(texts)]
    assert all(len(ids) == MAX_TOKENS for ids in reloaded)
    assert np.array_equal(np.array(reloaded), encode_texts(tokenizer, texts))


def test_decoding_recovers_normalised_text(tokenizer: Tokenizer, corpus: list[str]) -> None:
    vocab = tokenizer.get_vocab()
    text = next(
        t for t in corpus if len(t.split()) <= 5 and t.replace(" ", "").isalpha() and all(w in vocab for w in t.split())
    )
    ids = encode_texts(tokenizer, [text.upper()])[0]
    assert ids[-1] == PAD_ID, "the text must fit without truncation"
    assert tokenizer.decode(ids.tolist()) == text


def test_normalisation_lowercases_and_strips_accents(tokenizer: Tokenizer) -> None:
    plain = encode_texts(tokenizer, ["what is the cafe balance"])
    assert np.array_equal(encode_texts(tokenizer, ["What Is THE Café balance"]), plain)


def test_unknown_characters_map_to_unk(tokenizer: Tokenizer) -> None:
    ids = encode_texts(tokenizer, ["☃"])[0]
    assert ids[0] == UNK_ID and np.all(ids[1:] == PAD_ID)


def test_lowercase_can_be_turned_off() -> None:
    texts = ["Hello World", "hello world", "Hello there", "hello there"] * 5
    cased = train_tokenizer(texts, vocab_size=100, max_tokens=8, lowercase=False)
    ids = encode_texts(cased, ["Hello", "hello"])
    assert not np.array_equal(ids[0], ids[1])


def test_encode_requires_fixed_length_padding(tokenizer: Tokenizer) -> None:
    unpadded = Tokenizer.from_str(tokenizer.to_str())
    unpadded.no_padding()
    with pytest.raises(ValueError, match="fixed length"):
        encode_texts(unpadded, ["hi"])


def test_training_is_deterministic(corpus: list[str]) -> None:
    first, second = (train_tokenizer(corpus, vocab_size=800, max_tokens=MAX_TOKENS) for _ in range(2))
    assert first.get_vocab() == second.get_vocab()


def test_vocabulary_keeps_the_most_frequent_words_and_maps_the_rest_to_unk() -> None:
    texts = ["apple apple apple banana banana cherry", "apple banana durian"]
    tokenizer = train_tokenizer(texts, vocab_size=4, max_tokens=4)
    assert tokenizer.get_vocab() == {"[PAD]": 0, "[UNK]": 1, "apple": 2, "banana": 3}
    assert encode_texts(tokenizer, ["cherry apple"]).tolist() == [[UNK_ID, 2, PAD_ID, PAD_ID]]


def test_more_words_fill_the_vocabulary_after_the_texts_own_words() -> None:
    texts = ["open the file", "open the door"]
    tokenizer = train_tokenizer(texts, vocab_size=8, max_tokens=4, more_words=["door", "window", "close", "x", "y"])
    vocab = tokenizer.get_vocab()
    assert [word for word, _ in sorted(vocab.items(), key=lambda item: item[1])] == [
        "[PAD]", "[UNK]", "open", "the", "door", "file", "window", "close"]  # data first, no duplicate, capped
    assert tokenizer.encode("close the window").ids[:3] == [vocab["close"], vocab["the"], vocab["window"]]


# Queries written without spaces between words (Thai, Japanese): made up for these tests, not a data set.
UNSPACED = ["อยากจองโต๊ะสองที่", "ยกเลิกการจอง", "明日の天気を教えてください", "タクシーを呼んで"]


def test_scripts_without_spaces_are_read_character_by_character(tmp_path: Path) -> None:
    tokenizer = train_tokenizer([*UNSPACED, "book a table"], vocab_size=200, max_tokens=MAX_TOKENS)
    thai = tokenizer.encode("ยกเลิกการจอง")
    assert UNK_ID not in thai.ids and len([i for i in thai.ids if i != PAD_ID]) == 12  # one id a character (one
    # of them a tone mark, which BERT's normaliser would strip as an accent: `text_normalizer` keeps it)
    assert tokenizer.encode("จองโต๊ะ").ids[:5] == tokenizer.encode("อยากจองโต๊ะสองที่").ids[4:9]  # shared words
    assert tokenizer.encode("book a table").tokens[:3] == ["book", "a", "table"]
    tokenizer.save(str(tmp_path / "tokenizer.json"))  # the server reads it as the trainer wrote it
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(UNSPACED[2]).ids == tokenizer.encode(
        UNSPACED[2]).ids


# Reviews whose emoji say the label (made up for these tests, not a data set).
EMOJI_REVIEWS = ["the room is what I expected🤬🙄😡", "great stay 🎉", "loved it 😍😍", "❤️ the view", "late check-in⏰"]


def test_an_emoji_is_a_word_of_its_own_wherever_it_is_written(tmp_path: Path) -> None:
    """BERT's pre-tokenizer splits at spaces and punctuation only: `expected🤬🙄😡` was one unknown word."""
    tokenizer = train_tokenizer(EMOJI_REVIEWS, vocab_size=200, max_tokens=MAX_TOKENS)
    assert tokenizer.encode("expected😡🤬").tokens[:3] == ["expected", "😡", "🤬"]  # a combination never seen
    assert tokenizer.encode("late⏰ 😍").tokens[:3] == ["late", "⏰", "😍"]
    assert tokenizer.encode("❤ the view").tokens[:3] == ["❤", "the", "view"]  # ❤️'s variation selector is an accent
    tokenizer.save(str(tmp_path / "tokenizer.json"))  # the server reads it as the trainer wrote it
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(EMOJI_REVIEWS[0]).ids == tokenizer.encode(
        EMOJI_REVIEWS[0]).ids



def test_a_model_trained_without_emoji_reads_the_word_an_emoji_is_written_against():
    """QA: intent-clinc150, trained on text without emoji, read `how do you say fast in spanish🙂` as `spanish🙂`,
    one unknown word, and answered change_speed 0.72 (translate without the emoji): 17.7 % of its test queries'
    answers changed with an emoji written against the last word, against none with a space before it."""
    tokenizer = train_tokenizer(["how do you say fast in spanish", "book a table"], vocab_size=20, max_tokens=10)
    assert tokenizer.encode("say fast in spanish🙂").tokens[:5] == ["say", "fast", "in", "spanish", "[UNK]"]
    assert tokenizer.encode("book🙏 a🎉table").tokens[:5] == ["book", "[UNK]", "a", "[UNK]", "table"]


# Words that a mark spells apart (made up for these tests): kana with and without the voicing mark, Hindi's "dog"
# and the word without its vowel sign and virama, Thai's "not" with and without its tone mark.
MARKED_AND_NOT = [("が", "か"), ("ぱん", "はん"), ("कुत्ता", "कत्ता"), ("ไม่", "ไม")]


def test_marks_that_spell_another_letter_keep_words_apart(tmp_path: Path) -> None:
    texts = [f"{marked} {plain}" for marked, plain in MARKED_AND_NOT] + ["Café au lait", "ΆΛΦΑ", "كتب", "שלום"]
    tokenizer = train_tokenizer(texts, vocab_size=100, max_tokens=MAX_TOKENS)
    tokenizer.save(str(tmp_path / "tokenizer.json"))  # the server reads it as the trainer wrote it
    served = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for marked, plain in MARKED_AND_NOT:
        assert tokenizer.encode(marked).ids != tokenizer.encode(plain).ids, marked
        assert UNK_ID not in tokenizer.encode(f"{marked} {plain}").ids
        assert served.encode(f"{plain} {marked}").ids == tokenizer.encode(f"{plain} {marked}").ids
    # Accents are stripped as before, and the kana's decomposed spelling (か + U+3099) is the composed one's.
    assert tokenizer.encode("CAFE").ids == tokenizer.encode("café").ids == tokenizer.encode("cafe\u0301").ids
    assert tokenizer.encode("άλφα").ids == tokenizer.encode("αλφα").ids
    assert tokenizer.encode("كَتَبَ").ids == tokenizer.encode("كتب").ids  # Arabic's harakat, Hebrew's points
    assert tokenizer.encode("שָׁלוֹם").ids == tokenizer.encode("שלום").ids
    assert tokenizer.encode("\u304b\u3099").ids == tokenizer.encode("が").ids
    assert tokenizer.encode("café \u2764\ufe0f").ids == tokenizer.encode("cafe \u2764").ids  # a variation selector


def test_texts_without_such_marks_are_read_as_berts_normaliser_reads_their_compatibility_form() -> None:
    """Accents alone (Latin, Greek, Cyrillic, Arabic's harakat, Hebrew's points), CJK, emoji and ideographs with
    variation selectors: BERT's normaliser (that of every bundle trained before 2026-12-07) after NFKC."""
    bert = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    for texts in (["book a table"], ["Café", "γειά σου κόσμε", "Привет, мир", "天气", "مَرْحَبًا", "שָׁלוֹם"],
                  ["thanks ❤\ufe0f", "sunny ☀\ufe0f", "press 1\ufe0f\u20e3", "\u8fba\U000e0100"]):
        normalizer = text_normalizer(texts)
        for text in [*texts, "ＢＯＯＫ ａ ｔａｂｌｅ", "ｱﾗｰﾑ"]:
            assert normalizer.normalize_str(text) == bert.normalize_str(unicodedata.normalize("NFKC", text))


def test_full_width_latin_and_half_width_katakana_read_as_their_usual_forms() -> None:
    """QA: a Spanish model read its test rows typed in full-width Latin as unknown words (18 of 148 right, all
    deferred), a Japanese one its half-width katakana as one unknown word each (59 of 99 right against 78)."""
    tokenizer = train_tokenizer(["reservar una mesa", "アラーム を 設定"], vocab_size=50, max_tokens=8)
    assert tokenizer.encode("ＲＥＳＥＲＶＡＲ ｕｎａ ｍｅｓａ").ids == tokenizer.encode("reservar una mesa").ids
    assert tokenizer.encode("ｱﾗｰﾑ を 設定").ids == tokenizer.encode("アラーム を 設定").ids
    assert words_read("ＲＥＳＥＲＶＡＲ ｱﾗｰﾑ") == words_read("reservar アラーム")


def test_texts_of_spaced_scripts_keep_berts_word_splitting() -> None:
    """Words of scripts written with spaces are whole words, as BERT's pre-tokenizer splits them (what the server's
    Python tokenising reproduces for ASCII text: trm_service/runtime/ascii_tokenizer.py)."""
    texts = ["Привет, мир", "γειά σου κόσμε", "مرحبا بالعالم", "book a table, please"]
    spaced = train_tokenizer(texts, vocab_size=50, max_tokens=8)
    bert = pre_tokenizers.BertPreTokenizer()
    for text in texts:
        normal = spaced.normalizer.normalize_str(text)
        assert spaced.pre_tokenizer.pre_tokenize_str(normal) == bert.pre_tokenize_str(normal)
