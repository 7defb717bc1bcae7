"""The shared public text datasets: CLINC150 (intents) and 20 Newsgroups (document routing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from trainer.data.containers import TextSplit
from trainer.data.errors import DataError
from trainer.data.jsonl import iter_json_objects, string_field
from trainer.data.reading import read_nonempty_text

CLINC_FILE = "data_full.json"
CLINC_SPLITS = ("train", "val", "test")
NEWSGROUPS_SPLITS = ("train", "test")


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
