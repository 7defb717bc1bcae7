"""Names said alone: the names of corpus lines at their longest dotted form, drawn as training examples at their
share, and scored on the test files' names."""

from __future__ import annotations

from trainer.dictation.examples import DictationExamples
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
