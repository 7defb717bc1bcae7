"""Text datasets: labelled texts in memory, the shared public datasets (CLINC150, 20 Newsgroups), a user's
own .csv/.tsv/.jsonl/.json file, and the dispatcher that picks between them.

How a record becomes the model's text (docs/BUNDLE.md): CLINC150 takes each query as it is; 20 Newsgroups
joins subject and body with one newline (never the headers, which leak the label); a user's file takes its
`text` column or field as it is.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from trainer.data.checks import spelt_as
from trainer.data.files import (
    FILE_KINDS,
    DataError,
    first_json_object,
    iter_json_objects,
    read_nonempty_text,
    read_records,
    string_field,
)
from trainer.data.holdout import stratified_holdout
from trm_bundle.manifest import MAX_LABEL_CHARS, MAX_LABELS_CHARS

CLINC_FILE = "data_full.json"
CLINC_SPLITS = ("train", "val", "test")
NEWSGROUPS_SPLITS = ("train", "test")
NEWSGROUPS_VAL_FRACTION = 0.1
TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
DEFAULT_COLUMNS = (TEXT_COLUMN, LABEL_COLUMN)  # a user's file: the texts' and the labels' column, unless named
COLUMN_FLAGS = "--text-column and --label-column"  # how `trm-train fit` names other columns
SHOWN_EMPTY = 5  # rows with an empty cell named in one error beyond the first
# A text is read as its first MAX_TEXT_CHARS characters: more than a model reads (16,384 tokens at most, a word of
# over 100 characters one [UNK]) and what a bundle serves; one cell of 290 MB took 23 GB in the tokenizer
MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class TextSplit:
    """Texts with their label names; `lines` optionally gives each row's 1-based line in its source file."""

    texts: list[str]
    labels: list[str]
    lines: list[int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")
        if self.lines is not None and len(self.lines) != len(self.texts):
            raise ValueError(f"{len(self.texts)} texts but {len(self.lines)} line numbers")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray) -> TextSplit:
        """The rows at `indices`, in that order."""
        lines = None if self.lines is None else [self.lines[i] for i in indices]
        return TextSplit([self.texts[i] for i in indices], [self.labels[i] for i in indices], lines)


def load_text_dataset(
    path: Path, split: str, seed: int = 0, columns: tuple[str, str] = DEFAULT_COLUMNS
) -> TextSplit:
    """Load `split` of the dataset at `path`.

    A folder holding data_full.json is CLINC150 (train/val/test). A folder holding train.jsonl and
    test.jsonl with subject/body rows is 20 Newsgroups: "val" is a seeded, stratified 10% of its
    train file, "train" the other 90%, "train_full" all of it, "test" its test file. A file is the
    user's own .csv/.tsv/.jsonl/.json data (its text and label `columns`), and `split` is ignored.
    """
    path = Path(path)
    if path.is_file():
        return load_text_file(path, columns)
    if not path.is_dir():
        raise DataError(path, None, "not a plain file or a folder (a pipe or a device?): give the data file"
                        if path.exists() else "no such file or folder")
    if (path / CLINC_FILE).is_file():
        return load_clinc150(path, split)
    if _is_newsgroups_folder(path):
        return _newsgroups_split(path, split, seed)
    raise DataError(
        path,
        None,
        f"folder is neither CLINC150 (no {CLINC_FILE}) nor 20 Newsgroups (train.jsonl and test.jsonl "
        f"with subject/body rows); pass a {FILE_KINDS} file for your own data",
    )


# --- the shared public datasets ------------------------------------------------------------------


def load_clinc150(root: Path, split: Literal["train", "val", "test"]) -> TextSplit:
    """CLINC150 `split` from root/data_full.json, followed by the matching oos_<split> rows (label "oos")."""
    path = Path(root) / CLINC_FILE
    if split not in CLINC_SPLITS:
        raise DataError(path, None, f"unknown split '{split}' (expected one of {', '.join(CLINC_SPLITS)})")
    try:
        data = json.loads(read_nonempty_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise DataError(path, None, "expected a JSON object of splits")
    texts: list[str] = []
    labels: list[str] = []
    for key in (split, f"oos_{split}"):
        rows = data.get(key)
        if not isinstance(rows, list):
            raise DataError(path, None, f"missing split '{key}'")
        for index, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)):
                raise DataError(path, None, f"{key}[{index}] is not a [text, intent] pair of strings")
            texts.append(row[0])
            labels.append(row[1])
    return TextSplit(texts, labels)


def load_newsgroups(root: Path, split: Literal["train", "test"]) -> TextSplit:
    """20 Newsgroups `split` from root/<split>.jsonl: text is subject + "\\n" + body (never the headers)."""
    path = Path(root) / f"{split}.jsonl"
    if split not in NEWSGROUPS_SPLITS:
        raise DataError(
            path, None, f"unknown split '{split}' (expected one of {', '.join(NEWSGROUPS_SPLITS)})"
        )
    texts: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    for line, obj in iter_json_objects(path, read_nonempty_text(path)):
        subject = string_field(path, line, obj, "subject")
        body = string_field(path, line, obj, "body")
        label = string_field(path, line, obj, "label")
        if not label.strip():
            raise DataError(path, line, "empty label")
        texts.append(f"{subject}\n{body}")
        labels.append(label)
        lines.append(line)
    return TextSplit(texts, labels, lines)


def _is_newsgroups_folder(folder: Path) -> bool:
    if not (folder / "test.jsonl").is_file():
        return False
    first = first_json_object(folder / "train.jsonl")
    return first is not None and "subject" in first and "body" in first


def _newsgroups_split(folder: Path, split: str, seed: int) -> TextSplit:
    if split == "test":
        return load_newsgroups(folder, "test")
    if split not in ("train", "val", "train_full"):
        raise DataError(folder, None, f"unknown split '{split}' (expected train, val, train_full or test)")
    full = load_newsgroups(folder, "train")
    if split == "train_full":
        return full
    kept, held = stratified_holdout(full.labels, NEWSGROUPS_VAL_FRACTION, seed)
    return full.subset(kept if split == "train" else held)


# --- a user's own labelled texts: .csv/.tsv (columns text,label) or .jsonl/.json (objects with text,label)


def load_text_file(path: Path, columns: tuple[str, str] = DEFAULT_COLUMNS, *, test: bool = False) -> TextSplit:
    """Load labelled texts from a .csv or .tsv (a header naming the text and label `columns`, matched without
    case; other columns ignored) or .jsonl or .json file (JSON Lines or an array of objects with those fields,
    matched exactly; a label may be a JSON integer, a class id, read as its decimal text; its spacing is made one
    space between words, its characters NFC: `_label_as_read`), each text as its first MAX_TEXT_CHARS characters.
    A `test` file is read by the training file's columns, and a missing one says so."""
    hint = (f"; a test file has the training file's columns ({', '.join(columns)}): rename them in one of the files"
            if test else f"; {COLUMN_FLAGS} name other columns")
    records = read_records(path, columns, integer_columns=columns[1:], missing_hint=hint, label_column=columns[1])
    _check_cells(path, records)
    lines, texts, labels = zip(*((line, text[:MAX_TEXT_CHARS], _label_as_read(label))
                                 for line, (text, label) in records), strict=True)
    distinct = set(labels)
    if (total := sum(map(len, distinct))) > MAX_LABELS_CHARS:
        raise DataError(path, None, f"its {len(distinct):,} labels hold {total:,} characters together, more than "
                                    f"a bundle's {MAX_LABELS_CHARS:,}: shorten them, or use ids")
    return TextSplit(list(texts), list(labels), list(lines))


def _label_as_read(label: str) -> str:
    """`label` with its white space made one space between words and its characters in Unicode's composed form
    (NFC): `greet` and ` greet` are one label, so are `set timer`, `set  timer` and `set\u00a0timer` (a pasted
    space), and so is `réservation` written with a combining accent (NFD, as some macOS tools write it)."""
    return unicodedata.normalize("NFC", " ".join(label.split()))


def check_label_coverage(train: TextSplit, test: TextSplit, test_path: str | Path) -> None:
    """Raise DataError at the first test row whose label never appears in the training data."""
    known = set(train.labels)
    for index, label in enumerate(test.labels):
        if label not in known:
            line = None if test.lines is None else test.lines[index]
            row = f" (test row {index + 1})" if line is None else ""
            raise DataError(test_path, line, f"label '{label}'{row} never appears in the training data"
                            + spelt_as([label], known))


def _text_problem(text: str) -> str | None:
    """Why a text gives the model nothing to read, if it does not: empty, or only characters that the
    tokenizers' normalisation drops (control, zero-width and other format characters, U+FFFD), which the server
    refuses in a request too."""
    if not text.strip():
        return "empty text"
    if all(ch.isspace() or ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        return "text of invisible characters only (control, zero-width or U+FFFD)"
    return None


def _label_problem(label: str) -> str | None:
    """What makes `label` one no bundle can hold: empty, or longer than a bundle's label may be."""
    if not label.strip():
        return "empty label"
    if len(label) > MAX_LABEL_CHARS:
        return f"a label of {len(label):,} characters (a bundle's labels have at most {MAX_LABEL_CHARS:,})"
    return None


def _check_cells(path: Path, records: list[tuple[int, list[str]]]) -> None:
    """Raise DataError at the first row with an empty text or label, or a label too long for a bundle, naming the
    next SHOWN_EMPTY such rows too (a spreadsheet's blank cells are fixed in one go, not one run each)."""
    empty = [(line, problem) for line, (text, label) in records
             if (problem := _text_problem(text) or _label_problem(label))]
    if not empty:
        return
    (line, problem), others = empty[0], empty[1:]
    if others:
        shown = ", ".join(f"line {other}: {kind}" for other, kind in others[:SHOWN_EMPTY])
        more = f" and {len(others) - SHOWN_EMPTY:,} more" if len(others) > SHOWN_EMPTY else ""
        problem += f" (also {shown}{more})"
    raise DataError(path, line, problem)
