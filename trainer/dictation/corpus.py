"""Lines of real code for dictation: the Python standard library's own source, split by source file.

Every file of the standard library (site-packages excluded) that parses as Python contributes its
one-line statements: a logical line that starts and ends on one physical line, holds code (not only
a comment, not a lone docstring) and can be said (``Verbalizer``). Each line is kept in its written form
(``layout.canonical_line``: PEP 8 spacing, no indentation or comment).

A file belongs to one split, picked from the SHA-256 of the seed and its path relative to the
library's root: the same files land in the same split on every machine with the same Python, and
no line of a test file is ever trained on.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trainer.dictation.layout import NotALine, canonical, lay_out, merge_tokens
from trainer.dictation.verbalize import Unspeakable, Verbalizer

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
MAX_LINE_CHARS = 120  # longer lines are not kept at all (the bar is on lines of up to 40 characters)
_CODE_TYPES = frozenset({tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP, tokenize.ERRORTOKEN,
                         *(getattr(tokenize, name) for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                           if hasattr(tokenize, name))})
_PRINTABLE = frozenset(chr(code) for code in range(32, 127))


@dataclass(frozen=True)
class CodeLine:
    """One line of the corpus: where it comes from, as found (comment and indentation cut) and as written."""

    path: str  # relative to the standard library's root, with forward slashes
    lineno: int
    original: str
    text: str  # the canonical written form: the dictation target


def stdlib_root() -> Path:
    """The directory of this interpreter's standard library source."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> list[Path]:
    """The library's .py files in path order, site-packages excluded."""
    return sorted(path for path in root.rglob("*.py") if "site-packages" not in path.relative_to(root).parts)


def split_of(relative_path: str, seed: int, fractions: dict[str, float] = DEFAULT_FRACTIONS) -> Split:
    """The split of a file: a fixed function of the seed and its relative path (SHA-256, not ``hash``)."""
    digest = hashlib.sha256(f"{seed}:{relative_path}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for split in SPLITS:
        total += fractions[split]
        if point < total:
            return split
    return SPLITS[-1]


def file_lines(source: str, relative_path: str, verbalizer: Verbalizer) -> list[CodeLine]:
    """The one-line statements of a file's source; [] when it is not Python 3 (test fixtures, Python 2)."""
    try:
        ast.parse(source)
        raw = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return []
    out = []
    for tokens in _logical_lines(raw):
        line = _one_line(tokens, relative_path, verbalizer)
        if line is not None:
            out.append(line)
    return out


def _logical_lines(raw: list[tokenize.TokenInfo]) -> Iterator[list[tokenize.TokenInfo]]:
    current: list[tokenize.TokenInfo] = []
    for tok in raw:
        if tok.type == tokenize.NEWLINE:
            if current:
                yield current
            current = []
        elif tok.type in _CODE_TYPES:
            current.append(tok)


def _one_line(tokens: list[tokenize.TokenInfo], relative_path: str, verbalizer: Verbalizer) -> CodeLine | None:
    row = tokens[0].start[0]
    if any(tok.start[0] != row or tok.end[0] != row for tok in tokens):
        return None  # spans several physical lines
    if len(tokens) == 1 and tokens[0].type == tokenize.STRING:
        return None  # a docstring
    physical = tokens[0].line
    original = physical[tokens[0].start[1]:tokens[-1].end[1]]
    if not set(original) <= _PRINTABLE:
        return None
    try:
        laid_out = lay_out(merge_tokens(tokens, physical))
        verbalizer.segments_of(laid_out)
    except (NotALine, Unspeakable):
        return None
    text = canonical(laid_out)
    if len(text) > MAX_LINE_CHARS:
        return None
    return CodeLine(relative_path, row, original, text)


@dataclass
class Corpus:
    """The corpus's lines by split, in file order."""

    lines: dict[Split, list[CodeLine]]
    seed: int

    def texts(self, split: Split, max_chars: int | None = None) -> list[str]:
        """The distinct written lines of a split (of at most `max_chars` characters), in first-seen order."""
        seen = dict.fromkeys(
            line.text for line in self.lines[split] if max_chars is None or len(line.text) <= max_chars
        )
        return list(seen)


def build_corpus(seed: int = 0, root: Path | None = None, verbalizer: Verbalizer | None = None,
                 splits: tuple[Split, ...] = SPLITS) -> Corpus:
    """Every usable line of the standard library under `root` (this interpreter's by default), split by file;
    only the files of `splits` are read (the others' splits stay empty)."""
    root = root or stdlib_root()
    verbalizer = verbalizer or Verbalizer(seed)
    lines: dict[Split, list[CodeLine]] = {split: [] for split in SPLITS}
    for path in source_files(root):
        relative = path.relative_to(root).as_posix()
        split = split_of(relative, seed)
        if split not in splits:
            continue
        try:
            with tokenize.open(path) as handle:
                source = handle.read()
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        lines[split].extend(file_lines(source, relative, verbalizer))
    return Corpus(lines, seed)


def load_corpus(cache_dir: Path, seed: int = 0) -> Corpus:
    """``build_corpus`` for this interpreter, cached under `cache_dir` (building reads every file: minutes).

    The cache file is named after everything the corpus depends on (the interpreter's version and
    library path, the seed, the generator's own source), so a stale one is never read."""
    path = Path(cache_dir) / f"stdlib-lines-{_cache_key(seed)}.json.gz"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            stored = json.load(handle)
        return Corpus({split: [CodeLine(*row) for row in stored[split]] for split in SPLITS}, seed)
    corpus = build_corpus(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        rows = {split: [[line.path, line.lineno, line.original, line.text] for line in corpus.lines[split]]
                for split in SPLITS}
        json.dump(rows, handle)
    tmp.replace(path)
    return corpus


def _cache_key(seed: int) -> str:
    digest = hashlib.sha256(f"{sys.version}|{stdlib_root()}|{seed}".encode())
    package = Path(__file__).parent
    for name in ("corpus.py", "layout.py", "phrases.py", "verbalize.py"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]
