"""Names said alone (``x``, ``os.path``, ``MAX_SIZE``): what a dictating user often says by itself, and what
the corpus, one example per distinct line, almost never holds as a whole line."""

from __future__ import annotations

import keyword
from collections.abc import Iterable

from trainer.dictation.layout import tokens_of_line

VALUES = ("True", "False", "None")  # the keywords that are said alone as names are


def dotted_names(lines: Iterable[str]) -> list[str]:
    """The distinct names of lines, each at its longest dotted form (``self.x`` and ``x`` in ``self.x = x``;
    keywords but `VALUES` left out), in sorted order."""
    found: set[str] = set()
    for line in lines:
        chain = ""
        for kind, text in [*tokens_of_line(line), ("end", "")]:
            is_name = kind == "name" and (text in VALUES or not keyword.iskeyword(text))
            open_end = not chain or chain.endswith(".")
            if (is_name and open_end) or (text == "." and not open_end):
                chain += text
            else:
                if chain:
                    found.add(chain.rstrip("."))
                chain = text if is_name else ""
    return sorted(found)
