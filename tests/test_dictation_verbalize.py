"""The verbalizer: seeded and deterministic, varied across seeds, and every written character said."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.dictation import phrases
from trainer.dictation.corpus import file_lines, stdlib_root
from trainer.dictation.layout import canonical_line
from trainer.dictation.verbalize import Unspeakable, Verbalizer

LINES = (
    "def parse(path, strict=True):",
    "raise ValueError('bad value: %r' % (x,))",
    "class HTTPResponse(io.BufferedIOBase):",
    "MAX_SIZE = 0x7fff",
    "return getValue(x2, 3.14, 1e-5) ** -2",
    "def __init__(self, *args, **kwargs):",
    "for i in range(4, 112):",
    "if x is not None and y != 2:",
    'print(f"{name!r} at {0}")',
)


def real_lines() -> list[str]:
    """The one-line statements of two real library modules."""
    lines = []
    for name in ("argparse.py", "json/decoder.py"):
        source = (stdlib_root() / name).read_text(encoding="utf-8")
        lines += [line.text for line in file_lines(source, name, Verbalizer())]
    return lines


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def said(line: str, variants: int = 40, **kwargs) -> set[str]:
    verbalizer = Verbalizer(**kwargs)
    return {verbalizer.speak(line, variant) for variant in range(variants)}


def test_same_seed_and_variant_say_the_same_words() -> None:
    first, second = Verbalizer(seed=3), Verbalizer(seed=3)
    for line in LINES:
        for variant in range(3):
            assert first.speak(line, variant) == second.speak(line, variant)


def test_words_do_not_depend_on_the_process_hash_seed() -> None:
    """Another interpreter with another PYTHONHASHSEED says the same words (splits and data are stable)."""
    script = "from trainer.dictation.verbalize import Verbalizer\nimport sys\n" \
             "print('\\n'.join(Verbalizer(seed=5).speak(line, 2) for line in sys.argv[1:]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", script, *LINES], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [Verbalizer(seed=5).speak(line, 2) for line in LINES]


def test_seeds_and_variants_vary_the_phrasing_not_the_written_line() -> None:
    lines = real_lines()
    assert len(lines) > 300
    seed0, seed1 = Verbalizer(seed=0), Verbalizer(seed=1)
    differing = sum(seed0.speak(line) != seed1.speak(line) for line in lines)
    assert differing > 0.5 * len(lines)
    for line in lines[:50]:
        assert "".join(s.code for s in seed1.segments(line, 7)) == canonical_line(line)


def test_every_written_character_is_said() -> None:
    """Round trip in principle: the written line is its segments' code, every non-space piece has words,
    and every symbol is said with one of its own phrasings (which no other symbol shares)."""
    verbalizer = Verbalizer(seed=0, confusion_rate=0.0)
    symbol_of_phrase = {}
    for table in (phrases.SYMBOLS, phrases.UNARY):
        for symbol, phrasings in table.items():
            for phrasing in phrasings:
                assert symbol_of_phrase.setdefault(phrasing, symbol) == symbol, phrasing
    for line in real_lines() + list(LINES):
        segments = verbalizer.segments(line, variant=1)
        assert "".join(segment.code for segment in segments) == canonical_line(line)
        for segment in segments:
            code = segment.code.strip()
            if not code:  # a space in a string: said, or heard as the gap between two words
                assert segment.code == " " and segment.spoken in ((), ("space",)), (line, segment)
                continue
            assert segment.spoken, (line, segment)
            if code in phrases.SYMBOLS and not code.isalnum():
                assert symbol_of_phrase[" ".join(segment.spoken)] == code, (line, segment)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("get_value", {"snake get value", "snake case get value", "get underscore value"}),
        ("getValue", {"camel get value", "camel case get value"}),
        ("ValueError", {"pascal value error", "pascal case value error"}),
        ("MAX_SIZE", {"all caps max size", "constant max size"}),
        ("HTTPResponse", {"smash all caps http cap response", "smash all caps http capital response"}),
        ("__init__", {"dunder init", "underscore underscore init underscore underscore"}),
        ("x2", {"x two"}),
        ("dot", {"word dot"}),
        ("112", {"one hundred and twelve", "one hundred twelve", "one one two"}),
        ("3.5", {"three point five"}),
        ("0x1F", {"hex one cap f", "hex one capital f", "zero x one cap f", "zero x one capital f"}),
        ("x[-1]", {"x open bracket minus one close bracket", "x open bracket negative one close bracket",
                   "x left bracket minus one close bracket", "x left bracket negative one close bracket",
                   "x open square bracket minus one close bracket",
                   "x open square bracket negative one close bracket",
                   *(f"x {opening} {sign} one {closing}"
                     for opening in ("open bracket", "left bracket", "open square bracket")
                     for sign in ("minus", "negative")
                     for closing in ("right bracket", "close square bracket"))}),
    ],
)
def test_pieces_are_said_the_way_people_say_them(line: str, expected: set[str]) -> None:
    assert said(line, confusion_rate=0.0) == expected


def test_recognition_confusions_swap_homophones_at_the_set_rate() -> None:
    line = "for i in range(4, 2):"
    assert said(line, confusion_rate=0.0) == {f"for i in range {o} four comma two {c} colon"
                                               for o in ("open paren", "left paren", "paren", "open parenthesis")
                                               for c in ("close paren", "right paren", "close parenthesis",
                                                         "end paren")}
    always = said(line, confusion_rate=1.0)
    assert all(words.startswith("four i in range") and " for comma " in words for words in always)
    assert {words.split(" comma ")[1].split()[0] for words in always} == {"to", "too"}


@pytest.mark.parametrize("line", ["x = 1E5", "x = 0X1F", "name = 'caf\u00e9'"])
def test_what_has_no_words_is_refused(line: str) -> None:
    with pytest.raises(Unspeakable):
        Verbalizer().speak(line)


def test_numbers_alone_are_said_as_numbers() -> None:
    verbalizer = Verbalizer(seed=0, confusion_rate=0.0)
    assert {verbalizer.speak_number("112", variant) for variant in range(30)} == {
        "one hundred and twelve", "one hundred twelve", "one one two"}
    assert verbalizer.speak_number("1024.25") in {
        "one thousand and twenty four point two five", "one thousand twenty four point two five",
        "one zero two four point two five", "ten twenty four point two five"}
    assert Path(stdlib_root()).is_dir()
