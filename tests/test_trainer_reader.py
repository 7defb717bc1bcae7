"""The linear reader: the step computes the TF-IDF the trainer fits on, it is mixed in only where it helps on
validation, and a bundle with it is an ordinary bundle (parity, trimming, int8, rebuilt from the bundle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from trainer_support import random_tokens

from trainer import evaluate as ev
from trainer.export import (
    MAX_BUNDLE_BYTES,
    MAX_READER_BYTES,
    READER_GRAPH_BYTES,
    export_step,
    reader_budget,
    torch_model_from_bundle,
)
from trainer.model import TRM, LinearReader, ModelConfig
from trainer.reader import (
    ReaderFit,
    choose_trm_weight,
    fit_linear_reader,
    id_counts,
    kept_ids,
    reader_rows_within,
    tfidf,
)
from trainer.tasks import EncodedSet
from trainer.testing import make_random_bundle, random_reader
from trm_bundle.manifest import load_bundle

torch.set_num_threads(1)

CFG = ModelConfig(task="text", vocab_size=300, seq_len=24, num_outputs=5, hidden_size=32, num_heads=2, n=1, T=1,
                  N_sup=1, reader_rows=120)


def keyword_set(count: int, seed: int, classes: int = CFG.num_outputs) -> EncodedSet:
    """Texts of random ids in which one of each label's own ids (10 + 7 * label + 0..6) appears a few times."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, count)
    tokens = np.zeros((count, CFG.seq_len), dtype=np.int64)
    for row, label in enumerate(targets):
        length = int(rng.integers(4, CFG.seq_len + 1))
        keyword = rng.random(length) < 0.3
        keywords, filler = 10 + 7 * label + rng.integers(0, 7, length), rng.integers(50, 300, length)
        tokens[row, :length] = np.where(keyword, keywords, filler)
    return EncodedSet(tokens, targets)


def test_the_step_computes_the_tf_idf_the_reader_was_fitted_on() -> None:
    """Sublinear counts, idf, the L2 norm and ids without a row, as scikit-learn-style sparse features."""
    reader = random_reader(CFG, seed=3)
    idf = reader.row_values[1:, 1].numpy()
    reader.row_values[:, 0] = reader.row_values[:, 1]  # code scale 1: whole-number weights, held exactly
    tokens = random_tokens(CFG, 64, seed=1)
    tokens[:8, :6] = tokens[:8, :1]  # repeated ids: counts above one
    row_of = reader.row_of.numpy()
    kept = np.flatnonzero(row_of)[np.argsort(row_of[np.flatnonzero(row_of)])]  # ids in table-row order
    features = tfidf(id_counts(tokens, CFG.vocab_size, CFG.pad_id), kept, idf)
    expected = features @ reader.codes.numpy()[1:].astype(np.float64) + reader.bias.numpy()
    ours = reader.scores(torch.from_numpy(tokens)).detach().numpy()
    assert np.abs(ours - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("classes", [5, 2])  # two classes: the SVM's one score becomes two
def test_a_reader_that_reads_the_keywords_is_mixed_in_and_beats_a_random_trm_on_validation(classes: int) -> None:
    torch.manual_seed(0)
    model = TRM(ModelConfig(**{**CFG.to_dict(), "reader_rows": 0, "num_outputs": classes})).eval()
    mixed, fit = fit_linear_reader(model, keyword_set(600, 1, classes), keyword_set(200, 2, classes), seed=0,
                                   max_bytes=100_000)
    assert fit is not None and fit.mixed and mixed.reader is not None and mixed.cfg.reader_rows == fit.ids + 1
    assert fit.val_accuracy_mixed >= fit.val_accuracy_reader > 0.9 > 0.5 + 0.5 / classes > fit.val_accuracy_trm
    assert 200 < fit.ids < CFG.vocab_size  # ids in fewer than two texts get no row


def test_no_mix_unless_it_is_more_accurate_than_the_trm_alone() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 300)
    right = np.eye(4)[targets] * 0.6 + 0.1  # always right
    noise = rng.dirichlet(np.ones(4), 300)
    assert choose_trm_weight(right, noise, targets)[0] == 1.0
    weight, accuracy = choose_trm_weight(noise, right, targets)
    assert weight < 1.0 and accuracy[weight] > 0.8 > 0.5 > accuracy[1.0]


def test_a_byte_budget_keeps_the_ids_in_the_most_texts() -> None:
    texts_with_id = np.array([0, 9, 1, 5, 7, 2, 3, 8])
    assert kept_ids(texts_with_id, pad_id=0, most=3).tolist() == [1, 4, 7]
    assert kept_ids(texts_with_id, pad_id=0, most=100).tolist() == [1, 3, 4, 5, 6, 7]
    ids = reader_rows_within(200_000, vocab_size=40_000, num_classes=20, max_tokens=512)
    reader = LinearReader(40_000, ids + 1, 20, 512)
    assert 199_000 < sum(b.numel() * b.element_size() for b in reader.buffers()) <= 200_000
    model = TRM(ModelConfig(**{**CFG.to_dict(), "reader_rows": 0}))
    small, fit = fit_linear_reader(model, keyword_set(50, seed=1), keyword_set(20, seed=2), seed=0, max_bytes=1_500)
    assert fit is None and small.reader is None  # 1.5 kB holds fewer than MIN_IDS ids


@pytest.mark.parametrize("pool", [1, 8])
def test_a_bundle_with_a_reader_matches_pytorch_trims_and_rebuilds(pool: int, tmp_path: Path) -> None:
    bundle = make_random_bundle(tmp_path, "text", pool=pool, doc_slot=pool > 1, reader_rows=60, seed=2)
    model, manifest = torch_model_from_bundle(bundle)
    assert model.reader is not None and bool((model.reader.row_of > 0).any())
    cfg = model.cfg
    tokens = random_tokens(cfg, 40, seed=4)
    y = np.zeros((40, *cfg.state_shape), dtype=np.float32)
    ours = ev.torch_step_fn(model)(tokens, y, y)
    onnx_step = ev.onnx_step_fn(bundle / manifest.onnx_fp32)
    theirs = onnx_step(tokens, y, y)
    assert max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True)) <= 1e-4
    assert np.allclose(np.exp(theirs[2]).sum(1), 1.0, atol=1e-5)  # log-probabilities of the mix
    for row in range(0, 40, 7):  # each row alone, cut to its own length, as a server runs it
        trim = cfg.variable_length_spec
        length = trim.trimmed_length(tokens[row], cfg.pad_id)
        zeros = np.zeros((1, trim.state_rows(length), cfg.hidden_size), dtype=np.float32)
        alone = onnx_step(tokens[row : row + 1, :length], zeros, zeros)
        assert np.abs(alone[2][0] - theirs[2][row]).max() <= 1e-5
    assert load_bundle(bundle).manifest.require_training().model_config["reader_rows"] == 60


def test_a_row_gets_the_same_bits_alone_as_padded_longer_in_a_batch(tmp_path: Path) -> None:
    """The server cuts a lone request to its own length and pads a batch's to its longest: the reader's sums
    over the tokens must not depend on how many padding positions follow a text."""
    bundle = make_random_bundle(tmp_path, "text", reader_rows=60, seed=3)
    model, manifest = torch_model_from_bundle(bundle)
    cfg, trim = model.cfg, model.cfg.variable_length_spec
    onnx_step = ev.onnx_step_fn(bundle / manifest.onnx_fp32)
    tokens = random_tokens(cfg, 48, seed=5)
    padded = onnx_step(tokens, *[np.zeros((48, *cfg.state_shape), dtype=np.float32)] * 2)[2]
    for row in range(48):
        length = trim.trimmed_length(tokens[row], cfg.pad_id)
        zeros = np.zeros((1, trim.state_rows(length), cfg.hidden_size), dtype=np.float32)
        alone = onnx_step(tokens[row : row + 1, :length], zeros, zeros)[2]
        assert np.array_equal(alone[0], padded[row]), f"row {row} of {length} tokens"


def test_export_keeps_the_reader_table_in_int8(tmp_path: Path) -> None:
    model = TRM(CFG).eval().with_reader(random_reader(CFG))
    export_step(model, tmp_path / "step.onnx")
    stored = {init.name: init.data_type for init in onnx.load(str(tmp_path / "step.onnx")).graph.initializer}
    assert stored["reader.codes"] == onnx.TensorProto.INT8


def test_the_reader_gets_what_the_bundle_has_left_with_its_int8_step_first() -> None:
    left_with_int8 = reader_budget(5_000_000, 3_000_000, 600_000)
    assert left_with_int8 == (MAX_BUNDLE_BYTES - 8_600_000) // 2 - READER_GRAPH_BYTES  # each ONNX file holds one
    assert reader_budget(2_000_000, 1_000_000, 100_000) == MAX_READER_BYTES
    fp32_only = reader_budget(8_000_000, 3_000_000, 600_000)  # the int8 step would not fit anyway
    assert fp32_only == MAX_BUNDLE_BYTES - 8_600_000 - READER_GRAPH_BYTES


def test_a_reader_left_out_is_reported_with_its_best_mix_not_as_less_accurate() -> None:
    """The line said "no more accurate" of a reader more accurate alone (70 against 50 %) than the TRM: what was
    compared is each mix with the TRM's weight from 0.5 up."""
    fit = ReaderFit(mixed=False, trm_weight=1.0, ids=500, val_accuracy_trm=0.5, val_accuracy_reader=0.7,
                    val_accuracy_mixed=0.45, fit_time_s=1.0)
    assert fit.summary() == ("linear reader over 500 token ids: not mixed in, no mix of it (the TRM's weight 0.5 to 1) "
                             "more accurate than the TRM alone (validation: TRM 50.00%, reader 70.00%, the best mix "
                             "45.00%)")
