"""Names said alone: the names of corpus lines at their longest dotted form, drawn as training examples at their
share (short names at a share of their own, each length equally likely), and scored on the test files' names."""

from __future__ import annotations

from trainer.dictation.examples import SHORT_NAME_CHARS, DictationExamples
from trainer.dictation.names import dotted_names
from trainer.dictation.verbalize import Verbalizer

LINES = ["self.x = x", "os.path.join(a, b.c)", "return None", "if key in self.cache: pass", "f(1).real",
         "import os.path as p", "value = self.x"]


def test_names_are_the_distinct_longest_dotted_names_without_keywords() -> None:
    assert dotted_names(LINES) == ["None", "a", "b.c", "f", "key", "os.path", "os.path.join", "p", "real", "self.cache",
                                   "self.x", "value", "x"]


def test_names_are_drawn_at_their_share_said_as_the_verbalizer_says_a_line() -> None:
    verbalizer = Verbalizer(0)
    names = dotted_names(LINES)
    examples = DictationExamples(LINES, ["7"], verbalizer, seed=0, max_source_chars=200, number_share=0.1,
                                 names=names, name_share=0.3)(2000)
    written = [line for _, line in examples]
    share = {kind: sum(line in pool for line in written) / len(written)
             for kind, pool in (("names", set(names) - set(LINES)), ("numbers", {"7"}), ("lines", set(LINES)))}
    assert abs(share["names"] - 0.3) < 0.04 and abs(share["numbers"] - 0.1) < 0.03
    assert abs(share["lines"] - 0.6) < 0.04
    spoken = dict((line, said) for said, line in examples if line == "os.path.join")
    assert spoken["os.path.join"] in {verbalizer.speak("os.path.join", variant) for variant in range(64)}


def test_without_a_name_share_the_examples_are_those_drawn_before_names_were_added() -> None:
    def draw(**names: object) -> list[tuple[str, str]]:
        return DictationExamples(LINES, ["7", "112"], Verbalizer(0), seed=3, max_source_chars=200, **names)(300)

    assert draw() == draw(names=dotted_names(LINES), name_share=0.0) == draw(names=(), name_share=0.5)
    assert draw() == draw(names=dotted_names(LINES), short_name_share=0.0) == draw(names=(), short_name_share=0.5)


def test_short_names_are_drawn_at_their_share_each_length_equally_likely() -> None:
    verbalizer = Verbalizer(0)
    names = dotted_names(LINES)  # of at most 3 characters: a, f, p, x, and b.c and key (no name of 2)
    examples = DictationExamples(LINES, ["7"], verbalizer, seed=0, max_source_chars=200, number_share=0.1,
                                 names=names, name_share=0.2, short_name_share=0.4)(4000)
    written = [line for _, line in examples]
    single = sum(len(line) == 1 and line.isalpha() for line in written)
    three = written.count("key") + written.count("b.c")
    longer_names = sum(line in set(names) and len(line) > SHORT_NAME_CHARS for line in written)
    # the names share draws short names too (6 of the 13 names), at their share of the names
    assert abs((single + three) / len(written) - (0.4 + 0.2 * 6 / 13)) < 0.03
    assert abs(longer_names / len(written) - 0.2 * 7 / 13) < 0.02
    assert abs(single / len(written) - (0.2 + 0.2 * 4 / 13)) < 0.03  # half of the short share: one of two lengths
    assert abs(written.count("x") / written.count("a") - 1) < 0.25  # every name of a length equally likely
    assert {said for said, line in examples if line == "key"} <= {verbalizer.speak("key", v) for v in range(256)}
