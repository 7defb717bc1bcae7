"""Text datasets: the public loaders, the user's files, and the dispatcher that picks between them."""

from __future__ import annotations

from pathlib import Path

from trainer.data.containers import TextSplit
from trainer.data.errors import DataError
from trainer.data.holdout import stratified_holdout
from trainer.data.jsonl import first_json_object
from trainer.data.text_files import check_label_coverage, load_text_file
from trainer.data.text_public import CLINC_FILE, load_clinc150, load_newsgroups

__all__ = [
    "NEWSGROUPS_VAL_FRACTION",
    "TextSplit",
    "check_label_coverage",
    "load_clinc150",
    "load_newsgroups",
    "load_text_dataset",
    "load_text_file",
]

NEWSGROUPS_VAL_FRACTION = 0.1


def load_text_dataset(path: Path, split: str, seed: int = 0) -> TextSplit:
    """Load `split` of the dataset at `path`.

    A folder holding data_full.json is CLINC150 (train/val/test). A folder holding train.jsonl and
    test.jsonl with subject/body rows is 20 Newsgroups: "val" is a seeded, stratified 10% of its
    train file, "train" the other 90%, "train_full" all of it, "test" its test file. A file is the
    user's own .csv/.jsonl data, and `split` is ignored.
    """
    path = Path(path)
    if path.is_file():
        return load_text_file(path)
    if not path.is_dir():
        raise DataError(path, None, "no such file or folder")
    if (path / CLINC_FILE).is_file():
        return load_clinc150(path, split)
    if _is_newsgroups_folder(path):
        return _newsgroups_split(path, split, seed)
    raise DataError(
        path,
        None,
        f"folder is neither CLINC150 (no {CLINC_FILE}) nor 20 Newsgroups (train.jsonl and test.jsonl "
        "with subject/body rows); pass a .csv or .jsonl file for your own data",
    )


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
