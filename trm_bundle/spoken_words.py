"""How a sequence model that reads spoken words takes a speech recogniser's text (manifest `input.normalize`,
docs/BUNDLE.md): as the words it was trained on. A recogniser writes "Um, def main open paren." where such a model
learnt "def main open paren"; read as given, the capital, the comma, the period, the filler and a trailing space
each made code-dictation write other code (0.3 to 49 % of its test lines right, from 97 %).

The rule, applied to the text before its characters are checked and encoded: each word lowercased and stripped of
the punctuation a recogniser writes at its edges (`.,!?;:`; code symbols are said as words), words left empty
dropped, the fillers "uh" and "um" dropped from the start, the words joined by single spaces.
"""

from __future__ import annotations

SPOKEN_WORDS = "spoken_words"
"""The normalisation's name in a manifest's `input.normalize`."""
RECOGNISER_PUNCTUATION = ".,!?;:"
LEADING_FILLERS = frozenset({"uh", "um"})


def as_spoken_words(text: str) -> str:
    """`text` as a model trained on lowercase spoken words reads it (the module's rule); "" where no word is left."""
    words = [word.strip(RECOGNISER_PUNCTUATION).lower() for word in text.split()]
    words = [word for word in words if word]
    start = 0
    while start < len(words) and words[start] in LEADING_FILLERS:
        start += 1
    return " ".join(words[start:])
