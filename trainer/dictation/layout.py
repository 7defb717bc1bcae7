"""A line of Python as tokens with PEP 8 spacing: the written form the dictation model must produce.

Speech says nothing about spaces, so the target of a spoken line is its tokens re-spaced by one fixed
rule set (PEP 8 as most of the standard library writes it): spaces around binary operators, after
commas and after colons outside slices; none inside brackets, around ``=`` of keyword arguments and
unannotated defaults, or after unary operators. Each token also carries the role the verbalizer needs
(``-`` unary or binary). Indentation and comments are not part of a dictated line.
"""

from __future__ import annotations

import io
import keyword
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Kind = Literal["name", "number", "string", "op"]

KEYWORDS = frozenset(keyword.kwlist) - {"True", "False", "None"}
OPENERS = frozenset("([{")
CLOSERS = frozenset(")]}")
UNARY_CAPABLE = frozenset({"-", "+", "~", "*", "**", "@"})
NO_SPACE_BEFORE = frozenset({",", ";", ":", "."})
_SKIPPED = frozenset({tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
                      tokenize.COMMENT})
_KINDS: dict[int, Kind] = {tokenize.NAME: "name", tokenize.NUMBER: "number", tokenize.STRING: "string",
                           tokenize.OP: "op"}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ splits f-strings into parts
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


class NotALine(ValueError):
    """The text is not one complete logical line of Python (or uses something a line cannot hold)."""


@dataclass(frozen=True)
class Token:
    """One token of a laid-out line: its text, kind, whether a space precedes it, and unary use."""

    text: str
    kind: Kind
    space_before: bool = False
    unary: bool = False


def tokens_of_line(line: str) -> list[tuple[Kind, str]]:
    """(kind, text) of each code token of one logical line; comments and indentation dropped."""
    try:
        raw = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise NotALine(f"not a complete line of Python: {line!r} ({exc})") from exc
    return merge_tokens(raw, line.strip())


def merge_tokens(raw: list[tokenize.TokenInfo], source_line: str) -> list[tuple[Kind, str]]:
    """Code tokens of one physical line; 3.12+ f-string parts are joined back into one string token."""
    out: list[tuple[Kind, str]] = []
    fstring_from: int | None = None
    depth = 0
    for tok in raw:
        if tok.type == _FSTRING_START:
            if depth == 0:
                fstring_from = tok.start[1]
            depth += 1
            continue
        if tok.type == _FSTRING_END:
            depth -= 1
            if depth == 0 and fstring_from is not None:
                out.append(("string", source_line[fstring_from:tok.end[1]]))
            continue
        if depth or tok.type in _SKIPPED:
            continue
        if tok.type == tokenize.ERRORTOKEN:
            if tok.string.isspace():
                continue
            raise NotALine(f"unexpected character {tok.string!r}")
        if tok.type not in _KINDS:
            raise NotALine(f"unexpected token {tokenize.tok_name[tok.type]} {tok.string!r}")
        out.append((_KINDS[tok.type], tok.string))
    if not out:
        raise NotALine("no code on the line")
    return out


@dataclass
class _Bracket:
    char: str
    is_def_params: bool
    annotated: bool = False  # the current parameter of a def has an annotation (so its default is spaced)


def _is_operand_end(token: Token) -> bool:
    """Whether a token ends an operand (so a following ``-`` or ``(`` binds to it)."""
    kind, text = token.kind, token.text
    if kind in ("number", "string"):
        return True
    if kind == "name":
        return text not in KEYWORDS
    return text in CLOSERS or text == "..."


def lay_out(tokens: list[tuple[Kind, str]]) -> list[Token]:
    """The tokens with PEP 8 spacing and unary roles decided (see the module docstring)."""
    out: list[Token] = []
    brackets: list[_Bracket] = []
    lambdas: list[int] = []  # bracket depths at which a lambda's parameters are open
    space_after = False  # whether the previous token lets a space follow it
    for index, (kind, text) in enumerate(tokens):
        depth = len(brackets)
        previous = out[-1] if out else None
        op = text if kind == "op" else None
        unary = op == "~" or (op == "@" and previous is None) or (
            op in UNARY_CAPABLE and op != "@" and (previous is None or not _is_operand_end(previous)))
        innermost = brackets[-1] if brackets else None
        keyword_argument = innermost is not None and innermost.char == "(" and not (
            innermost.is_def_params and innermost.annotated)
        tight_equals = op == "=" and (keyword_argument or (bool(lambdas) and lambdas[-1] == depth))
        if previous is None:
            space = False
        elif kind == "name" and text == "import":
            space = True  # "from . import x"
        elif op in CLOSERS or op in NO_SPACE_BEFORE:  # except "from . import" and "x[1:2, ::2]"
            space = (op == "." and previous.kind == "name" and previous.text in ("from", "import")) or (
                op == ":" and previous.text == ",")
        elif tight_equals or (op in ("(", "[") and _is_operand_end(previous)):
            space = False
        else:
            space = space_after
        out.append(Token(text, kind, space, unary))
        lambda_colon = op == ":" and bool(lambdas) and lambdas[-1] == depth
        slice_colon = op == ":" and not lambda_colon and bool(brackets) and brackets[-1].char == "["
        space_after = not (unary or tight_equals or slice_colon or op in OPENERS or op == ".")
        if kind == "name" and text == "lambda":
            lambdas.append(depth)
        elif op in OPENERS:
            is_def = op == "(" and index >= 2 and tokens[index - 2] == ("name", "def")
            brackets.append(_Bracket(text, is_def))
        elif op in CLOSERS:
            if brackets:
                brackets.pop()
            while lambdas and lambdas[-1] > len(brackets):
                lambdas.pop()
        elif lambda_colon:
            lambdas.pop()
        elif op == ":" and brackets and brackets[-1].is_def_params:
            brackets[-1].annotated = True
        elif op == "," and brackets and brackets[-1].is_def_params:
            brackets[-1].annotated = False
    return out


def canonical(tokens: Sequence[Token]) -> str:
    """The written line: token texts joined with the laid-out spaces."""
    return "".join((" " if token.space_before else "") + token.text for token in tokens)


def canonical_line(line: str) -> str:
    """One logical line of Python re-spaced by the rules above (comments and indentation dropped)."""
    return canonical(lay_out(tokens_of_line(line)))
