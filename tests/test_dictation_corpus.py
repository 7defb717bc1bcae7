"""The standard-library corpus: lines split by source file, stable across machines, test files never trained on."""

from __future__ import annotations

from collections import Counter

import pytest

from trainer.dictation.corpus import SPLITS, build_corpus, file_lines, source_files, split_of, stdlib_root
from trainer.dictation.verbalize import Verbalizer


def test_the_split_is_a_fixed_function_of_seed_and_path() -> None:
    """SHA-256 of "seed:path": pinned values, so a change to the assignment (say, to hash()) is caught."""
    pinned = ("json/decoder.py", "argparse.py", "asyncio/base_tasks.py", "asyncio/exceptions.py", "asyncio/events.py")
    assert [split_of(path, 0) for path in pinned] == ["train", "train", "test", "test", "val"]
    assert [split_of(path, 1) for path in pinned] != [split_of(path, 0) for path in pinned]  # the seed moves files


def test_every_library_file_is_in_one_split_with_the_intended_shares() -> None:
    root = stdlib_root()
    files = [path.relative_to(root).as_posix() for path in source_files(root)]
    # every folder read (Debian's and Docker's Pythons leave test/ and some packages out: 668 files, against 1,790)
    assert {"os.py", "json/decoder.py", "email/mime/text.py"} <= set(files)
    assert not any("site-packages" in path for path in files)
    shares = Counter(split_of(path, 0) for path in files)
    assert set(shares) == set(SPLITS)
    assert 0.75 < shares["train"] / len(files) < 0.85
    assert 0.06 < shares["test"] / len(files) < 0.14


def test_splits_of_a_real_package_share_no_file() -> None:
    corpus = build_corpus(seed=0, root=stdlib_root() / "email")
    files = {split: {line.path for line in corpus.lines[split]} for split in SPLITS}
    assert files["train"] and (files["test"] or files["val"])
    assert not files["train"] & files["test"]
    assert not files["train"] & files["val"]
    assert not files["val"] & files["test"]
    for split in SPLITS:
        assert all(split_of(path, 0) == split for path in files[split])


def test_lines_are_one_line_statements_without_comments_or_docstrings() -> None:
    source = '''"""Module docstring."""
import os  # a comment

# only a comment
def f(x,
      y):
    """Docstring."""
    return x+y
CONSTANT = {"a": 1,
            "b": 2}
name = "caf\u00e9"
'''
    lines = file_lines(source, "m.py", Verbalizer())
    assert [(line.lineno, line.original, line.text) for line in lines] == [
        (2, "import os", "import os"),
        (8, "return x+y", "return x + y"),
    ]


@pytest.mark.parametrize("source", ["print 'python 2'\n", "def broken(:\n"])
def test_files_that_are_not_python_3_give_no_lines(source: str) -> None:
    assert file_lines(source, "fixture.py", Verbalizer()) == []
