"""A user's own source,target file: rows load with their lines; every problem names the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data.files import DataError
from trainer.sequence.pairs import Pair, load_pairs


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_jsonl_rows_load_with_their_lines(tmp_path: Path) -> None:
    csv_text = 'id,source,target\n1,x equals one,x = 1\n\n2,"open paren, close paren",()\n'
    csv_file = write(tmp_path / "pairs.csv", csv_text)
    jsonl = write(tmp_path / "pairs.jsonl", "\n".join(json.dumps(row) for row in [
        {"source": "x equals one", "target": "x = 1"}, {"source": "return", "target": "return", "extra": 3}]))
    assert load_pairs(csv_file, 100, 100) == [
        Pair("x equals one", "x = 1", 2), Pair("open paren, close paren", "()", 4)]
    assert load_pairs(jsonl, 100, 100) == [Pair("x equals one", "x = 1", 1), Pair("return", "return", 2)]
    digits = write(tmp_path / "digits.jsonl", '{"source": "twenty twenty five", "target": 2025}\n')  # pandas' to_json
    assert load_pairs(digits, 100, 100) == [Pair("twenty twenty five", "2025", 1)]


@pytest.mark.parametrize(
    ("name", "content", "line", "problem"),
    [
        ("a.csv", "source,label\nx,y\n", 1, "missing column 'target'"),
        ("a2.csv", "text,label\nx,y\n", 1, "missing column 'source' (the header has: text, label); a sequence model "
         "reads and writes text: its file's rows are source,target pairs"),  # probe: a text file given to its eval
        ("b.csv", "source,target\nx,1\ny,2,3\n", 3, "row has 3 fields but the header has 2 "
     "(a field holding a comma or a line break goes in double quotes)"),
        ("c.csv", "source,target\nx,1\ny,  \n", 3, "empty target"),
        ("d.csv", "source,target\nx,1\ny,caf\u00e9\n", 3, "target has characters outside printable ASCII: '\u00e9'"),
        ("e.csv", "source,target\nx,1\n" + "a" * 21 + ",2\n", 3,
         "source has 21 characters, more than the 20 a sequence model reads: shorten the row or split it"),
        ("e2.csv", "source,target\nx,1\ny," + "b" * 21 + "\n", 3,
         "target has 21 characters, more than the 20 a sequence model writes: shorten the row or split it"),
        ("f.jsonl", '{"source": "x", "target": "1"}\n{"source": "y"\n', 2, "invalid JSON"),
        ("g.jsonl", '{"source": "x", "target": "1"}\n\n{"source": "y"}\n', 3, "missing field 'target'"),
        ("h.jsonl", '{"source": "x", "target": [1]}\n', 1, "field 'target' must be a string, a whole number or"),
        ("i.jsonl", '{"source": 1, "target": "1"}\n', 1, "field 'source' must be a string, got 1"),
    ],
)
def test_problems_name_the_file_and_line(tmp_path: Path, name: str, content: str, line: int, problem: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as caught:
        load_pairs(path, 20, 20)
    assert caught.value.path == str(path) and caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: {problem}")


@pytest.mark.parametrize(("name", "content", "problem"),
                         [("x.txt", "a", "unknown file extension '.txt'"), ("y.csv", "  \n", "file is empty"),
                          ("z.csv", "source,target\n", "no data rows")])
def test_problems_of_the_whole_file_name_the_file(tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DataError, match=problem) as caught:
        load_pairs(path, 20, 20)
    assert caught.value.path == str(path)
