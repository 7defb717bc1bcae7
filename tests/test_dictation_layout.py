"""The written form of a dictated line: PEP 8 spacing decided from the tokens alone."""

from __future__ import annotations

import pytest

from trainer.dictation.layout import NotALine, canonical_line


@pytest.mark.parametrize(
    ("line", "written"),
    [
        ("def parse(path,strict=True):", "def parse(path, strict=True):"),
        ("def f(a: int=1, *, b=2) -> int:", "def f(a: int = 1, *, b=2) -> int:"),
        ("x=a[1:-1]", "x = a[1:-1]"),
        ("nd = ex[1:2:, ::-2]", "nd = ex[1:2:, ::-2]"),
        ("lst[i+1:]", "lst[i + 1:]"),
        ("f = lambda x=1: x[1:2]", "f = lambda x=1: x[1:2]"),
        ("key = d[lambda: 0]", "key = d[lambda: 0]"),
        ("d = {a:b, **c}", "d = {a: b, **c}"),
        ("print(*args, **kw)", "print(*args, **kw)"),
        ("a, *b = c", "a, *b = c"),
        ("return -1", "return -1"),
        ("a = b**-c", "a = b ** -c"),
        ("n = ~x + -y", "n = ~x + -y"),
        ("@property", "@property"),
        ("y = x@z", "y = x @ z"),
        ("from . import x", "from . import x"),
        ("from ..mod import y", "from ..mod import y"),
        ("from ... import z", "from ... import z"),
        ("def g(): ...", "def g(): ..."),
        ("x: int=5", "x: int = 5"),
        ("z = (a:=1)", "z = (a := 1)"),
        ("print (x, end='')  # a comment", "print(x, end='')"),
        ("    if not(x): pass", "if not (x): pass"),
        ("t = (1,)", "t = (1,)"),
        ("s = 'a  b'%(x, )", "s = 'a  b' % (x,)"),
        ("foo(x)[0].y", "foo(x)[0].y"),
    ],
)
def test_lines_are_written_with_pep8_spacing(line: str, written: str) -> None:
    assert canonical_line(line) == written


@pytest.mark.parametrize("line", ["", "   # only a comment", "x = (1,", "s = 'unterminated"])
def test_what_is_not_one_line_of_code_is_refused(line: str) -> None:
    with pytest.raises(NotALine):
        canonical_line(line)
