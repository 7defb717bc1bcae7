"""Preparing a config's data: splits, the tokenizer, encoded sets, the training stream and the teachers'
targets (`Prepared`); and a dataset split encoded the way a bundle's model reads it (`eval_sets`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from trainer.config import TrainConfig
from trainer.data.checks import check_label_counts, spelt_as
from trainer.data.files import DataError, counted, data_hashes
from trainer.data.grids import (
    SUDOKU_TIERS,
    check_sudoku_folder,
    concatenate_splits,
    load_grid_dataset,
    sudoku_splits,
)
from trainer.data.holdout import (
    holdout_fraction,
    same_text_key,
    sample_indices,
    shuffled_holdout,
    stratified_holdout,
    stratified_sample,
    train_val_test_holdout,
)
from trainer.data.sudoku import GridSplit
from trainer.data.text import (
    LABEL_COLUMN,
    TEXT_COLUMN,
    TextSplit,
    check_label_coverage,
    load_text_dataset,
    load_text_file,
)
from trainer.data.text_augment import augment_to, variants_to_draw
from trainer.data.tokenizer import encode_texts, train_tokenizer
from trainer.model import ModelConfig
from trainer.out_of_scope import find_out_of_scope_label
from trainer.tasks import EncodedSet, SudokuStream, TextStream, grid_set
from trainer.tfidf_teacher import cross_fitted_soft_labels
from trm_bundle.manifest import Manifest

GRID_LABELS = [str(d) for d in range(10)]  # logit index -> symbol; "0" means the model left a blank
TRAINED_VAL_FRACTION = 0.5  # train_on_val: the share of the validation rows trained on; the rest calibrates the
# thresholds (halting, abstain), chooses int8 and the linear reader, and gives the validation figures
GRID_HOLDOUT_PARTS = 10  # a user's grid file without a test file: a tenth held out for test, a tenth for validation


@dataclass
class Prepared:
    """Everything the loop and the exporter need besides the config."""

    model_cfg: ModelConfig
    stream: Any
    labels: list[str]
    val: EncodedSet
    tests: dict[str, EncodedSet]  # name -> set ("test", or Sudoku tiers "easy"/"medium"/"hard")
    data_sha256: dict[str, str]
    tokenizer: Tokenizer | None = None  # text models: written into the bundle as tokenizer.json
    embedding_init: np.ndarray | None = None
    # text models: test rows whose token ids a row the loop trains on has; grid models: test puzzles whose solution
    # a training puzzle has
    test_rows_trained_on: int = 0


TextSplits = tuple[TextSplit, TextSplit, TextSplit]  # (train, val, test) of a text config


def prepare(cfg: TrainConfig, splits: TextSplits | None = None) -> Prepared:
    """A config's data prepared; a text config's `splits` (`text_splits(cfg)`), where the caller already read them,
    are not read again."""
    return prepare_text(cfg, splits) if cfg.task == "text" else prepare_grid(cfg)


def prepare_text(cfg: TrainConfig, splits: TextSplits | None = None) -> Prepared:
    every_row, val, test = splits or text_splits(cfg)
    train = sampled_training_rows(every_row, cfg)
    labels = sorted(set(train.labels))
    more_words = []
    if cfg.teacher.vocabulary:
        from trainer import teacher as teacher_lib  # the teacher's package loads only when a teacher is used

        more_words = teacher_lib.vocabulary_words()
    tokenizer = train_tokenizer(train.texts, cfg.vocab_size, cfg.max_tokens, more_words=more_words)
    taught = train
    drawn = variants_to_draw(train.labels, cfg.augment_per_label)
    if drawn and (len(train) + drawn) * len(labels) > MAX_TAUGHT_CELLS:
        print(f"{cfg.name}: note: no variants of short texts: {drawn:,} for {len(labels):,} labels would not fit in "
              "memory with their teacher's targets", flush=True)
    elif drawn:  # no variant that reads as a held-out text
        held_out = {same_text_key(text) for text in (*val.texts, *test.texts)}
        taught = augment_to(train, cfg.augment_per_label, cfg.stream_rng_seed, held_out)
    if len(taught) > len(train):
        print(f"{cfg.name}: {len(taught) - len(train):,} variants of short texts for labels with fewer than "
              f"{cfg.augment_per_label} rows, labelled by the teacher", flush=True)
    train_tokens, train_targets = encode_texts(tokenizer, taught.texts), label_ids(taught, labels, cfg.data)
    model_cfg = ModelConfig(
        task="text", vocab_size=tokenizer.get_vocab_size(), seq_len=cfg.max_tokens, num_outputs=len(labels),
        **cfg.model,
    )
    soft, teacher_vectors, taught_rows, embedding_init = _teacher_targets(
        cfg, taught, train_targets, labels, tokenizer, model_cfg, labelled_rows=len(train)
    )
    stream = TextStream(train_tokens, train_targets, cfg.stream_rng_seed, soft, teacher_vectors, cfg.token_dropout,
                        taught_rows)
    val_set = EncodedSet(encode_texts(tokenizer, val.texts), label_ids(val, labels, cfg.data))
    test_set = EncodedSet(encode_texts(tokenizer, test.texts), label_ids(test, labels, cfg.test_data or cfg.data))
    return Prepared(
        model_cfg=model_cfg, stream=stream, labels=labels, val=val_set, tests={"test": test_set},
        data_sha256=_data_hashes(cfg), tokenizer=tokenizer, embedding_init=embedding_init,
        test_rows_trained_on=rows_trained_on(train_tokens, test_set.tokens),
    )


MAX_TAUGHT_CELLS = 250_000_000
"""Training rows times labels beyond which no variants are drawn: per-row targets over every label are kept for
each (10,000 labels of 2 rows each drew 481,979 variants, and the fit held 22 GB of a 24 GB machine)."""


def rows_trained_on(trained: np.ndarray, tested: np.ndarray) -> int:
    """How many `tested` token rows a `trained` one equals: test inputs the model trained on (whatever their
    writing: the tokenizer's case, accents, spacing and cut at max_tokens aside)."""
    seen = {row.tobytes() for row in trained}
    return sum(row.tobytes() in seen for row in tested)


def prepare_grid(cfg: TrainConfig) -> Prepared:
    data = Path(cfg.data)
    model_cfg = ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, **cfg.model)
    trained_on = 0
    if data.is_dir():
        splits = sudoku_splits(data, cfg.seed)  # parse the shared CSVs once
        train = splits["train"]
        val = concatenate_splits([splits["val_easy"], splits["val_medium"]])
        tests = {tier: grid_set(splits[f"test_{tier}"]) for tier in SUDOKU_TIERS}
    else:
        full = load_grid_dataset(data, "train", cfg.seed)
        needed = 2 if cfg.test_data else 3
        if len(full) < needed:
            raise DataError(data, None, f"{len(full)} puzzle(s): a fit needs at least {needed}, to train on, to "
                            "validate" + ("" if cfg.test_data else " and to test (or give --test FILE)"))
        if cfg.test_data:
            test = load_grid_dataset(Path(cfg.test_data), "test", cfg.seed)
        else:  # the test puzzles first, so that validation's choices are never scored on the puzzles that made them
            full, test = _split_off(full, cfg.seed)
        train, val = _split_off(full, cfg.seed)
        if len(test) == 0 or len(val) == 0:
            raise DataError(data, None, f"{len(full)} rows but too few different puzzles to train on, validate and "
                            "test: give more puzzles")
        tests = {"test": grid_set(test)}
        tested = f"the test file's {counted(len(test), 'puzzle')}" if cfg.test_data else f"{len(test):,} for test"
        print(f"{cfg.name}: {counted(len(train), 'puzzle')} to train on (each drawn afresh, with a random number of "
              f"its cells given, and augmented), {len(val):,} held out for validation and {tested}", flush=True)
        if trained_on := _puzzles_of_trained_solutions(train, test):
            print(f"{cfg.name}: note: {trained_on:,} of the test file's {counted(len(test), 'puzzle')} have the "
                  "solution of a training puzzle, which the training stream may draw: their test figures read high",
                  flush=True)
    if cfg.eval_limit:
        val = val.take(sample_indices(len(val), cfg.eval_limit, cfg.seed))
        tests = {name: data_set.sample(cfg.eval_limit, cfg.seed) for name, data_set in tests.items()}
    stream = SudokuStream(train, cfg.stream_rng_seed, cfg.givens_min, cfg.givens_max, cfg.grid_original_fraction)
    return Prepared(
        model_cfg=model_cfg, stream=stream, labels=list(GRID_LABELS), val=grid_set(val), tests=tests,
        data_sha256=_data_hashes(cfg), test_rows_trained_on=trained_on,
    )


def resolve_out_of_scope_label(asked: str | None, labels: list[str]) -> str | None:
    """The configured out-of-scope label (which must be one of `labels`), or the one found by name; none at all
    where `asked` is "" (a real class named `none` or `None`, which its name would make out of scope)."""
    if asked == "":
        return None
    if asked is None:
        return find_out_of_scope_label(labels)
    if asked not in labels:
        raise ValueError(f"--oos-label {asked!r} is not a label of the training data (labels: "
                         f"{', '.join(labels[:8])}{', ...' if len(labels) > 8 else ''})")
    return asked


def label_ids(split: TextSplit, labels: list[str], path: str) -> np.ndarray:
    """Label names -> indices; a label the model does not know is a data error naming the file."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(split.labels) - set(index))
    if unknown:
        raise DataError(path, None, f"label(s) not seen in training data: {', '.join(unknown[:5])}"
                        + spelt_as(unknown, labels))
    return np.array([index[label] for label in split.labels], dtype=np.int64)


def eval_sets(
    manifest: Manifest, bundle: Path, data: Path, split: str, columns: tuple[str | None, str | None] = (None, None),
    left_out: Counter[str] | None = None,
) -> dict[str, EncodedSet]:
    """The requested split, encoded with the bundle's own tokenizer and label order (Sudoku's "test" of
    the shared folder: its three tiers; a user's text file read by its text and label `columns`, each by
    default the one the bundle was trained from). Rows of labels the model was not trained on are a data error,
    or, given `left_out`, left out and counted there by label (a test file of a newer version, scored on an older
    one)."""
    if manifest.task == "grid":
        if data.is_dir() and split == "test":
            check_sudoku_folder(data)
            splits = sudoku_splits(data)  # parse the shared CSVs once for all tiers
            return {tier: grid_set(splits[f"test_{tier}"]) for tier in SUDOKU_TIERS}
        return {split: grid_set(load_grid_dataset(data, split))}
    trained_with = manifest.training.config if manifest.training else {}
    text_column, label_column = columns
    texts = load_text_dataset(data, split, columns=(text_column or trained_with.get("text_column", TEXT_COLUMN),
                                                    label_column or trained_with.get("label_column", LABEL_COLUMN)))
    if left_out is not None:
        known = set(manifest.labels)
        left_out.update(label for label in texts.labels if label not in known)
        kept = [i for i, label in enumerate(texts.labels) if label in known]
        if not kept:
            raise DataError(data, None, f"none of its labels is one the model was trained on ({', '.join(left_out)})"
                            + spelt_as(left_out, manifest.labels))
        texts = TextSplit([texts.texts[i] for i in kept], [texts.labels[i] for i in kept])
    tokenizer = Tokenizer.from_file(str(bundle / manifest.input.tokenizer))
    return {split: EncodedSet(encode_texts(tokenizer, texts.texts), label_ids(texts, list(manifest.labels), str(data)))}


def text_splits(cfg: TrainConfig) -> TextSplits:
    """The texts of a text config: (train, val, test) of a shared dataset folder or a user's file; with
    cfg.train_on_val a stratified half of the validation rows joins train (`TRAINED_VAL_FRACTION`) and val is the
    other half, still held out. Train holds every training row (`sampled_training_rows` draws a fit's)."""
    train, val, test = _held_out_text_splits(cfg)
    if cfg.train_on_val:
        trained, held = stratified_holdout(val.labels, 1 - TRAINED_VAL_FRACTION, cfg.seed, val.texts)
        if held.size:
            joined = val.subset(trained)
            train, val = TextSplit(train.texts + joined.texts, train.labels + joined.labels), val.subset(held)
    return train, val, test  # a validation split too small to halve is held out whole


def sampled_training_rows(train: TextSplit, cfg: TrainConfig) -> TextSplit:
    """The training rows a fit reads: a stratified sample of about cfg.max_train_rows of `train` where that is
    fewer (the same rows for the same seed), else all of them."""
    if not 0 < cfg.max_train_rows < len(train):
        return train
    return train.subset(stratified_sample(train.labels, cfg.max_train_rows, cfg.seed))


def _split_off(grids: GridSplit, seed: int) -> tuple[GridSplit, GridSplit]:
    """(kept, held-out) puzzles of a user's grid file: a seeded tenth held out, the puzzles of one solution together
    (the training stream draws puzzles afresh from each training solution, so a held-out puzzle whose solution
    trains would be one the model may have trained on)."""
    kept, held = shuffled_holdout(_solution_keys(grids), seed, max(1, len(grids) // GRID_HOLDOUT_PARTS))
    return grids.take(kept), grids.take(held)


def _solution_keys(grids: GridSplit) -> list[str]:
    return ["".join(map(str, solution)) for solution in grids.solutions]


def _puzzles_of_trained_solutions(train: GridSplit, test: GridSplit) -> int:
    """How many `test` puzzles have the solution of a `train` puzzle: puzzles the training stream may draw."""
    trained = set(_solution_keys(train))
    return sum(key in trained for key in _solution_keys(test))


def _held_out_text_splits(cfg: TrainConfig) -> tuple[TextSplit, TextSplit, TextSplit]:
    data = Path(cfg.data)
    if data.is_dir():
        return (load_text_dataset(data, "train", cfg.seed), load_text_dataset(data, "val", cfg.seed),
                load_text_dataset(data, "test", cfg.seed))
    columns = (cfg.text_column, cfg.label_column)
    full = load_text_file(data, columns)
    check_label_counts(full.labels, data, lines=full.lines)
    if cfg.test_data:
        test = load_text_file(Path(cfg.test_data), columns, test=True)
        check_label_coverage(full, test, cfg.test_data)
        kept, held = stratified_holdout(full.labels, holdout_fraction(len(full.labels)), cfg.seed, full.texts)
    else:
        kept, held, tested = train_val_test_holdout(full.labels, cfg.seed, full.texts)
        test = full.subset(tested)
    if held.size == 0 or not test.texts:  # each label's rows are copies of one text: nothing can be held out
        shares = "validation rows" if cfg.test_data else "validation and test rows"
        raise DataError(data, None, f"too few distinct texts to hold out {shares} and keep every label to train on: "
                        "add texts" + ("" if cfg.test_data else ", or give --test FILE"))
    return full.subset(kept), full.subset(held), test


def _teacher_targets(
    cfg: TrainConfig, train: TextSplit, train_targets: np.ndarray, labels: list[str], tokenizer: Tokenizer,
    model_cfg: ModelConfig, labelled_rows: int,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The teachers' soft labels and sentence embeddings of the training texts, which rows MiniLM read where
    `teacher.max_rows` left some out (1.0 / 0.0 per row; their targets are placeholders), and the token
    embeddings to initialise the model with (each None unless cfg.teacher asks for it). The MiniLM soft labels
    come from a regression on the labelled texts it read (the first `labelled_rows`; the rest are variants)."""
    soft = teacher_vectors = taught_rows = embedding_init = None
    teacher = cfg.teacher
    if not (teacher.embedding_init or teacher.soft_label_weight or teacher.embedding_weight):
        return soft, teacher_vectors, taught_rows, embedding_init
    from trainer import teacher as teacher_lib  # the sentence-embedding model loads only when a teacher is used

    minilm_soft = teacher.soft_label_weight and teacher.soft_labels == "minilm"
    if minilm_soft or teacher.embedding_weight:
        read = np.arange(len(train.texts))
        if 0 < teacher.max_rows < len(read):
            read = sample_indices(len(read), teacher.max_rows, cfg.seed)
            print(f"{cfg.name}: MiniLM teaches {len(read):,} of the {len(train.texts):,} training rows "
                  "(teacher.max_rows); the others train on their labels alone", flush=True)
        teacher_vectors = teacher_lib.embed_texts([train.texts[i] for i in read])
        if minilm_soft:
            soft = teacher_lib.soft_labels(teacher_vectors, train_targets[read], len(labels), teacher.temperature,
                                           int((read < labelled_rows).sum()))
        if len(read) < len(train.texts):
            teacher_vectors, soft, taught_rows = (
                _rows_at(read, len(train.texts), teacher_vectors, 0.0),
                None if soft is None else _rows_at(read, len(train.texts), soft, 1 / len(labels)),
                _rows_at(read, len(train.texts), np.ones(len(read), dtype=np.float32), 0.0))
    elif teacher.soft_label_weight:
        kind = "svm" if teacher.soft_labels == "tfidf_svm" else "logistic"
        soft = cross_fitted_soft_labels(train.texts, train_targets, len(labels), teacher.temperature, cfg.seed, kind)
    if teacher.embedding_init:
        vocabulary = [tok for tok, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
        embedding_init = teacher_lib.token_embedding_init(
            vocabulary, model_cfg.embed_dim or model_cfg.hidden_size, cfg.seed
        )
    return soft, teacher_vectors, taught_rows, embedding_init


def _rows_at(rows: np.ndarray, count: int, values: np.ndarray, fill: float) -> np.ndarray:
    """`values` placed at `rows` of an array of `count` rows, `fill` elsewhere."""
    placed = np.full((count, *values.shape[1:]), fill, dtype=values.dtype)
    placed[rows] = values
    return placed


def _data_hashes(cfg: TrainConfig) -> dict[str, str]:
    return data_hashes(Path(cfg.data), Path(cfg.test_data) if cfg.test_data else None)
