"""The linear reader (`trainer.model.LinearReader`): fitted after training, on the training split's token
ids, and mixed into the step's answer only where that is more accurate on validation.

A linear SVM reads the sublinear TF-IDF of the ids the step reads (ids in at least MIN_TEXTS training
texts; those in the most texts where a byte budget, set by the exporter, holds fewer). One factor, fitted on
validation for the least log loss, turns its scores into probabilities; the TRM's weight in the mix is
the one of MIX_WEIGHTS most accurate on validation (ties: the one nearest an even mix). A TRM and a linear
model err on different texts, so the mix can beat both (docs/EXPERIMENTS.md, 2026-12-02).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from trainer.model import TRM, LinearReader, int8_rows
from trainer.tasks import EncodedSet
from trainer.tfidf_teacher import fitted_scale

MIN_TEXTS = 2  # an id read by fewer training texts gets no weight (as TfidfVectorizer's min_df)
MIN_IDS = 100  # a byte budget that holds fewer ids gets no reader
# the TRM's weight in the mix; 1.0: the TRM alone. Few choices, so that choosing on validation (which is the
# test set of a fit without --test) flatters the test figures little; weights chosen among 0.05, 0.10, ...,
# 1.0 on four fits were 0.5 to 0.85 (docs/EXPERIMENTS.md, 2026-12-02)
MIX_WEIGHTS = (0.5, 0.75, 1.0)
SVM_C = 0.5  # as the built-in baseline's SVM (trainer/tfidf_teacher.py)


@dataclass(frozen=True)
class ReaderFit:
    """What fitting the reader found on validation, for the report (`mixed`: whether the step has it)."""

    mixed: bool
    trm_weight: float  # the TRM's share of the mixed probabilities (1.0 when not mixed)
    ids: int  # token ids with a weight
    val_accuracy_trm: float
    val_accuracy_reader: float
    val_accuracy_mixed: float  # at `trm_weight` when mixed; else the most accurate mix's (below 1.0)
    fit_time_s: float

    def summary(self) -> str:
        """One line for the console and the report."""
        figures = (f"validation: TRM {100 * self.val_accuracy_trm:.2f}%, reader {100 * self.val_accuracy_reader:.2f}%")
        if not self.mixed:
            return (f"linear reader over {self.ids:,} token ids: not mixed in, no mix of it (the TRM's weight "
                    f"{min(MIX_WEIGHTS):g} to 1) more accurate than the TRM alone ({figures}, the best mix "
                    f"{100 * self.val_accuracy_mixed:.2f}%)")
        return (f"linear reader over {self.ids:,} token ids: mixed in, weight {1 - self.trm_weight:.2f} against the "
                f"TRM's {self.trm_weight:.2f} ({figures}, mixed {100 * self.val_accuracy_mixed:.2f}%)")


def fit_linear_reader(
    model: TRM, train: EncodedSet, val: EncodedSet, seed: int, max_bytes: int
) -> tuple[TRM, ReaderFit | None]:
    """`model` with a fitted reader mixed into its step where it helps on `val` (else `model` as it was),
    and what was found (None where `max_bytes`, what the reader may add to an ONNX file, holds too few ids).
    `train` are the texts the TRM trained on."""
    start = time.perf_counter()
    cfg = model.cfg
    most = min(LinearReader.MAX_ROWS - 1, reader_rows_within(max_bytes, cfg.vocab_size, cfg.num_outputs, cfg.seq_len))
    if most < MIN_IDS:
        return model, None
    train_counts, val_counts = (id_counts(data.tokens, cfg.vocab_size, cfg.pad_id) for data in (train, val))
    texts_with_id = np.asarray((train_counts > 0).sum(0)).ravel()
    kept = kept_ids(texts_with_id, cfg.pad_id, most)
    idf = np.log((1 + len(train)) / (1 + texts_with_id[kept])) + 1
    svm = LinearSVC(C=SVM_C, random_state=seed).fit(tfidf(train_counts, kept, idf), train.targets)
    if not np.array_equal(svm.classes_, np.arange(cfg.num_outputs)):
        raise ValueError("every label needs training texts for the linear reader")
    weights, bias = class_weights(svm)
    scale = fitted_scale(tfidf(val_counts, kept, idf) @ weights.T + bias, val.targets)
    reader = LinearReader(cfg.vocab_size, len(kept) + 1, cfg.num_outputs, cfg.seq_len)
    reader.row_of[torch.from_numpy(kept)] = torch.arange(1, len(kept) + 1, dtype=torch.int16)
    codes, code_scales = int8_rows(torch.from_numpy(scale * weights.T))  # float64, as the SVM's weights
    reader.codes[1:] = codes
    reader.row_values[1:] = torch.from_numpy(np.stack([idf * code_scales.float().numpy()[:, 0], idf], axis=1))
    reader.bias.copy_(torch.from_numpy(scale * bias))

    reader_probs = reader_probabilities(reader, val.tokens)
    weight, accuracy = choose_trm_weight(final_probabilities(model, val.tokens), reader_probs, val.targets)
    fit = ReaderFit(mixed=weight < 1.0, trm_weight=weight, ids=len(kept), val_accuracy_trm=accuracy[1.0],
                    val_accuracy_reader=float((reader_probs.argmax(1) == val.targets).mean()),
                    val_accuracy_mixed=accuracy[weight] if weight < 1.0 else max(
                        value for w, value in accuracy.items() if w < 1.0),
                    fit_time_s=round(time.perf_counter() - start, 1))
    if not fit.mixed:
        return model, fit
    reader.trm_weight.fill_(weight)
    return model.with_reader(reader), fit


def choose_trm_weight(
    trm_probs: np.ndarray, reader_probs: np.ndarray, targets: np.ndarray
) -> tuple[float, dict[float, float]]:
    """The TRM's weight of MIX_WEIGHTS whose mix is most accurate on `targets` (ties: the one nearest an even
    mix), or 1.0 where no mix beats the TRM alone; and each weight's accuracy."""
    accuracy = {float(w): float(((w * trm_probs + (1 - w) * reader_probs).argmax(1) == targets).mean())
                for w in MIX_WEIGHTS}
    best = max(accuracy, key=lambda w: (accuracy[w], -abs(w - 0.5)))
    return (best if accuracy[best] > accuracy[1.0] else 1.0), accuracy


def reader_rows_within(max_bytes: int, vocab_size: int, num_classes: int, max_tokens: int) -> int:
    """Ids a reader can weigh within `max_bytes` of ONNX initializers: an int16 row per vocabulary id, per
    id its int8 codes and two fp32 values, and fp32 constants (the biases, the mix weight, the log's padding,
    the sublinear counts)."""
    constants = 4 * (num_classes + 1 + -num_classes % 64 + max_tokens + 1)
    return max(0, (max_bytes - 2 * vocab_size - constants) // (num_classes + 8) - 1)


def id_counts(tokens: np.ndarray, vocab_size: int, pad_id: int) -> sparse.csr_matrix:
    """[texts, vocab_size] how often each text holds each id (padding left out)."""
    texts = np.repeat(np.arange(len(tokens)), tokens.shape[1])
    ids = tokens.ravel()
    real = ids != pad_id
    ones = np.ones(int(real.sum()), dtype=np.float64)
    return sparse.csr_matrix((ones, (texts[real], ids[real])), shape=(len(tokens), vocab_size))


def kept_ids(texts_with_id: np.ndarray, pad_id: int, most: int) -> np.ndarray:
    """Ids read by at least MIN_TEXTS texts, at most `most` of them (those in the most texts), ascending."""
    candidates = np.flatnonzero(texts_with_id >= MIN_TEXTS)
    candidates = candidates[candidates != pad_id]
    if len(candidates) > most:
        candidates = candidates[np.argsort(-texts_with_id[candidates], kind="stable")[:most]]
    return np.sort(candidates)


def tfidf(counts: sparse.csr_matrix, kept: np.ndarray, idf: np.ndarray) -> sparse.csr_matrix:
    """Sublinear TF-IDF of the kept ids, each text L2-normalised: what `LinearReader.scores` computes."""
    features = counts[:, kept].tocsr()
    features.data = 1.0 + np.log(features.data)
    return normalize(features.multiply(idf[None, :]).tocsr())


def class_weights(svm: LinearSVC) -> tuple[np.ndarray, np.ndarray]:
    """[classes, features] weights and [classes] bias; two classes get -d/2 and +d/2 of the SVM's one score d."""
    if svm.coef_.shape[0] == 1:
        return np.concatenate([-svm.coef_, svm.coef_]) / 2, np.concatenate([-svm.intercept_, svm.intercept_]) / 2
    return svm.coef_, svm.intercept_


@torch.no_grad()
def final_probabilities(model: TRM, tokens: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The TRM's class probabilities after its last supervision step."""
    model = model.eval()
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = torch.from_numpy(tokens[start : start + batch_size])
        y, z = model.initial_state(len(chunk))
        for _ in range(model.cfg.N_sup):
            y, z, logits, _ = model.step(chunk, y, z)
        out.append(logits.softmax(-1).numpy())
    return np.concatenate(out)


@torch.no_grad()
def reader_probabilities(reader: LinearReader, tokens: np.ndarray) -> np.ndarray:
    """The reader's class probabilities, as the step computes them."""
    return reader.scores(torch.from_numpy(tokens)).softmax(-1).numpy()
