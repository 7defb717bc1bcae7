"""Checks of a labelled training file before anything is trained on it."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from trainer.data.files import DataError, counted

# with one example, no model that did not see it knows its label (the cross-fitted teachers' soft labels)
MIN_EXAMPLES_PER_LABEL = 2
SHOWN_LABELS = 5


def check_label_counts(labels: Sequence[str], path: str | Path, minimum: int = MIN_EXAMPLES_PER_LABEL,
                       lines: Sequence[int] | None = None) -> None:
    """Raise DataError when the file has a single label, or naming the labels with fewer than `minimum`
    examples and their counts (the rarest SHOWN_LABELS, then how many more), and with the rows' `lines` (each row's
    line in the file) the line of each one's first row (QA: a label of one row among 300,000 named no line)."""
    counts = Counter(labels)
    if len(counts) == 1:
        raise DataError(path, None, f"every row has the label '{labels[0]}': a classifier needs at least 2 labels")
    rare = sorted((count, label) for label, count in counts.items() if count < minimum)
    if not rare:
        return
    first_line = {} if lines is None else _first_lines({label for _, label in rare[:SHOWN_LABELS]}, labels, lines)
    located = first_line[rare[0][1]] if len(rare) == 1 and first_line else None  # the error's own place: FILE:LINE
    named = ", ".join(
        f"'{label}' has {counted(count, 'example')}"
        + (f" (line {first_line[label]:,})" if first_line and located is None else "")
        for count, label in rare[:SHOWN_LABELS]
    )
    more = f" (and {len(rare) - SHOWN_LABELS} more labels)" if len(rare) > SHOWN_LABELS else ""
    raise DataError(
        path, located,
        f"label {named}{more}: every label needs at least {minimum} examples; add examples of it or remove "
        f"its rows{_spelling_hint({label for _, label in rare}, counts)}",
    )


def _first_lines(wanted: set[str], labels: Sequence[str], lines: Sequence[int]) -> dict[str, int]:
    """The line of the first row of each label in `wanted`."""
    found: dict[str, int] = {}
    for label, line in zip(labels, lines, strict=True):
        if label in wanted and label not in found:
            found[label] = line
    return found


def spelling_variants(labels: Iterable[str]) -> list[tuple[str, ...]]:
    """The groups of labels that are one label spelt differently, each sorted: labels that differ only in case
    ('Greet' and 'greet' are two labels) or that write the same number ('1' and '1.0', as a spreadsheet or pandas
    may write a class id)."""
    by_spelling: dict[str, set[str]] = {}
    for label in labels:
        by_spelling.setdefault(_as_read(label), set()).add(label)
    return sorted(tuple(sorted(spellings)) for spellings in by_spelling.values() if len(spellings) > 1)


def joined_labels(labels: Iterable[str]) -> list[str]:
    """Labels that write several labels of one row ('billing;refund', 'a|b'), where a part is also another row's
    label or a part of another such label: a classifier learns each combination as one label of its own."""
    distinct = set(labels)
    parts_of = {label: [part.strip() for part in re.split(r"[;|]", label)] for label in distinct}
    parts_of = {label: parts for label, parts in parts_of.items() if len(parts) > 1 and all(parts)}
    parts_elsewhere = Counter(part for parts in parts_of.values() for part in set(parts))
    return sorted(label for label, parts in parts_of.items()
                  if any(part in distinct or parts_elsewhere[part] > 1 for part in parts))


def how_they_differ(spellings: Sequence[str]) -> str:
    """What makes a group of `spelling_variants` differ, in words."""
    if _number(spellings[0]) is not None:
        return "write the same number"
    if len({spelling.casefold() for spelling in spellings}) == 1:
        return "differ only in case"
    return "differ only in invisible or full-width characters (or case)"


def spelt_as(labels: Iterable[str], known: Iterable[str]) -> str:
    """Where `labels` the model does not know are `known` ones spelt differently (`spelling_variants`), what to
    write instead, e.g. " (the training data writes 'thank you' for 'Thank You': they differ only in case)";
    "" where none is."""
    known_as = {_as_read(label): label for label in known}
    pairs = [(label, known_as[_as_read(label)]) for label in labels if _as_read(label) in known_as]
    if not pairs:
        return ""
    shown = ", ".join(f"{theirs!r} for {label!r}" for label, theirs in pairs[:3])
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    return f" (the training data writes {shown}{more}: they {how_they_differ(pairs[0])})"


def _as_read(label: str) -> str:
    """A label as a reader sees it: its number, or its characters less invisible ones (zero-width spaces, marks of
    direction), their full-width forms read as the plain ones (NFKC), without case."""
    number = _number(label)
    if number is not None:
        return str(number)
    shown = "".join(char for char in unicodedata.normalize("NFKC", label) if unicodedata.category(char) != "Cf")
    return shown.casefold()


def _number(label: str) -> Decimal | None:
    """The number a label writes, exactly ('1' and '1.0' one number; 20 digits and 20 others two), or None."""
    try:
        number = Decimal(label)
    except InvalidOperation:
        return None
    return number.normalize() if number.is_finite() else None


def _spelling_hint(rare: set[str], counts: Counter[str]) -> str:
    """A hint when a rare label is another label spelt differently."""
    for spellings in spelling_variants(counts):
        if rare.intersection(spellings):
            named = " and ".join(repr(label) for label in spellings)
            return f"; {named} {how_they_differ(spellings)}: write each label one way"
    return ""
