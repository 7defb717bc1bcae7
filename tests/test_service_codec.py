"""Encoding inputs and decoding step logits into answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from trm_bundle.manifest import BundleError, GridInput, OutOfScope, load_bundle
from trm_bundle.probabilities import softmax
from trm_service.runtime.grid_codec import GridReader, grid_values
from trm_service.runtime.text_codec import ClassificationReader, TextCodec, load_tokenizer
from trm_service.scheduler.ticket import StepResult

LABELS = ("play_music", "set_alarm", "weather", "oos")
SUDOKU = GridInput(rows=9, cols=9, blank="0.", alphabet="123456789", rules="sudoku")
GRID_LABELS = tuple(str(d) for d in range(10))
SOLVED = [(r * 3 + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)]


def _step(logits: np.ndarray) -> StepResult:
    """A step result carrying `logits`, as the scheduler publishes it."""
    return StepResult(step=1, logits=logits, halt_probability=0.0, elapsed_ms=0.0)


def _grid_logits(values: list[int], sharp: float = 8.0) -> np.ndarray:
    logits = np.zeros((81, 10), dtype=np.float32)
    logits[np.arange(81), values] = sharp
    return logits


def test_softmax_rows_sum_to_one_and_keep_order():
    probabilities = softmax(np.array([[1.0, 3.0, 2.0], [1000.0, 0.0, -1000.0]], dtype=np.float32))
    assert np.allclose(probabilities.sum(axis=-1), 1.0)
    assert list(probabilities[0].argsort()) == [0, 2, 1]
    assert np.isfinite(probabilities).all()


def test_classification_returns_top_k_most_probable_first():
    reader = ClassificationReader(LABELS, OutOfScope(label="oos", threshold=0.3), top_k=3)
    answer = reader.read(_step(np.array([0.0, 3.0, 1.0, -2.0], dtype=np.float32))).answer.classification
    assert answer.label == "set_alarm"
    assert [s.label for s in answer.top] == ["set_alarm", "weather", "play_music"]
    assert answer.confidence == pytest.approx(answer.top[0].probability)
    assert answer.top[0].probability > answer.top[1].probability > answer.top[2].probability
    assert not answer.out_of_scope


def test_out_of_scope_when_the_oos_label_wins_or_the_top_probability_is_low():
    reader = ClassificationReader(LABELS, OutOfScope(label="oos", threshold=0.3), top_k=1)
    assert reader.read(_step(np.array([0.0, 0.0, 0.0, 5.0], dtype=np.float32))).answer.classification.out_of_scope
    flat = reader.read(_step(np.array([0.1, 0.0, 0.0, 0.0], dtype=np.float32))).answer.classification
    assert flat.label == "play_music" and flat.out_of_scope  # 0.27 < 0.3
    oos_logits = np.array([0.0, 0.0, 0.0, 5.0], dtype=np.float32)
    assert not ClassificationReader(LABELS, None, top_k=1).read(_step(oos_logits)).answer.classification.out_of_scope


def test_without_an_out_of_scope_label_a_low_top_probability_abstains():
    reader = ClassificationReader(LABELS, OutOfScope(label=None, threshold=0.5), top_k=1)
    assert not reader.read(_step(np.array([0.0, 0.0, 0.0, 5.0], dtype=np.float32))).answer.classification.out_of_scope
    flat = reader.read(_step(np.array([0.1, 0.0, 0.0, 0.0], dtype=np.float32))).answer.classification
    assert flat.label == "play_music" and flat.out_of_scope


def test_classification_change_is_the_total_variation_distance():
    reader = ClassificationReader(LABELS, None, top_k=2)
    first = reader.read(_step(np.array([5.0, 0.0, 0.0, 0.0], dtype=np.float32)))
    second = reader.read(_step(np.array([0.0, 5.0, 0.0, 0.0], dtype=np.float32)))
    assert first.change_from(None) == 1.0
    assert second.change_from(second) == 0.0
    expected = 0.5 * np.abs(first.probabilities - second.probabilities).sum()
    assert second.change_from(first) == pytest.approx(expected)
    assert 0.9 < second.change_from(first) < 1.0


def test_grid_answer_has_cells_confidence_and_verified_solution():
    givens = [v if i % 4 == 0 else 0 for i, v in enumerate(SOLVED)]
    decoded = GridReader(GRID_LABELS, SUDOKU, givens).read(_step(_grid_logits(SOLVED)))
    grid = decoded.answer.grid
    assert (grid.rows, grid.cols) == (9, 9)
    assert grid.cells == "".join(map(str, SOLVED))
    assert len(grid.confidence) == 81 and all(0.99 < c <= 1.0 for c in grid.confidence)
    assert grid.verified


def test_grid_that_changes_a_given_or_leaves_a_blank_is_not_verified():
    givens = [0] * 81
    givens[0] = SOLVED[0] % 9 + 1
    assert not GridReader(GRID_LABELS, SUDOKU, givens).read(_step(_grid_logits(SOLVED))).answer.grid.verified
    with_blank = [0, *SOLVED[1:]]
    decoded = GridReader(GRID_LABELS, SUDOKU, [0] * 81).read(_step(_grid_logits(with_blank)))
    assert decoded.answer.grid.cells[0] == "0" and not decoded.answer.grid.verified


def test_grid_change_is_the_fraction_of_changed_cells():
    reader = GridReader(GRID_LABELS, SUDOKU, [0] * 81)
    before = reader.read(_step(_grid_logits(SOLVED)))
    after_values = list(SOLVED)
    for i in range(9):
        after_values[i] = after_values[i] % 9 + 1
    after = reader.read(_step(_grid_logits(after_values)))
    assert after.change_from(before) == pytest.approx(9 / 81)


def test_grid_values_map_blanks_to_zero_and_digits_to_themselves():
    assert grid_values("1.0" + "9" * 78, SUDOKU)[:4] == [1, 0, 0, 9]


def test_text_codec_pads_and_truncates_to_max_tokens(text_bundle: Path):
    bundle = load_bundle(text_bundle)
    spec = bundle.manifest.input
    codec = TextCodec(load_tokenizer(bundle.file(spec.tokenizer)), bundle.manifest)
    short = codec.tokenize("play jazz")
    long = codec.tokenize("play some jazz in the kitchen " * 50)
    assert short.shape == long.shape == (spec.max_tokens,)
    assert short.dtype == np.int64
    assert (short == spec.pad_id).any() and not (long == spec.pad_id).all()


def test_text_codec_ids_are_the_tokenizers_own(text_bundle: Path):
    """The codec tokenises without character offsets (encode_batch_fast): the ids must be encode()'s, also
    for accents, CJK, control characters, unknown words and text far past max_tokens."""
    bundle = load_bundle(text_bundle)
    tokenizer = load_tokenizer(bundle.file(bundle.manifest.input.tokenizer))
    codec = TextCodec(tokenizer, bundle.manifest)
    texts = ["play jazz", "Café déjà vu, naïve Zoë!", "天气 weather\u200b\x07 in Paris?", "qwxz zzyzx " * 3,
             "set an alarm for seven. " * 400]
    for text in texts:
        assert codec.tokenize(text).tolist() == tokenizer.encode(text).ids


def test_a_tokenizer_without_padding_is_refused(text_bundle: Path, tmp_path: Path):
    bundle = load_bundle(text_bundle)
    tokenizer = Tokenizer.from_file(str(bundle.file("tokenizer.json")))
    tokenizer.no_padding()
    path = tmp_path / "tokenizer.json"
    path.write_text(tokenizer.to_str())
    with pytest.raises(BundleError, match=r"must pad and truncate to input\.max_tokens"):
        TextCodec(load_tokenizer(path), bundle.manifest)
    path.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(BundleError, match="not a readable tokenizers file"):
        load_tokenizer(path)


def test_a_tokenizer_padding_with_another_id_than_the_manifests_is_refused(text_bundle: Path, tmp_path: Path):
    bundle = load_bundle(text_bundle)
    tokenizer = Tokenizer.from_file(str(bundle.file("tokenizer.json")))
    tokenizer.enable_padding(pad_id=1, pad_token="[UNK]", length=bundle.manifest.input.max_tokens)
    path = tmp_path / "tokenizer.json"
    path.write_text(tokenizer.to_str())
    with pytest.raises(BundleError, match=r"pads with id 1, but input\.pad_id is 0"):
        TextCodec(load_tokenizer(path), bundle.manifest)
