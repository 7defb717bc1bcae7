"""What people say for each piece of written code: the verbalizer's phrase tables.

Every symbol has several phrasings (shorter ones drop optional words: "open paren", "paren"); no
phrasing is shared by two symbols, so each written character stays recoverable from speech.
"""

from __future__ import annotations

Phrasings = tuple[str, ...]

BRACKETS: dict[str, Phrasings] = {
    "(": ("open paren", "left paren", "paren", "open parenthesis"),
    ")": ("close paren", "right paren", "close parenthesis", "end paren"),
    "[": ("open bracket", "left bracket", "open square bracket"),
    "]": ("close bracket", "right bracket", "close square bracket"),
    "{": ("open brace", "left brace", "open curly", "open curly brace"),
    "}": ("close brace", "right brace", "close curly", "close curly brace"),
}

# Operators and punctuation of code, the same inside strings.
SYMBOLS: dict[str, Phrasings] = {
    **BRACKETS,
    ",": ("comma",),
    ".": ("dot", "period"),
    ":": ("colon",),
    ";": ("semicolon", "semi colon"),
    "=": ("equals", "equal", "equals sign"),
    "==": ("double equals", "equal equal"),
    "!=": ("not equals", "not equal", "bang equals"),
    "<": ("less than",),
    ">": ("greater than",),
    "<=": ("less than or equal", "less than or equal to", "less or equal"),
    ">=": ("greater than or equal", "greater than or equal to", "greater or equal"),
    "+": ("plus",),
    "-": ("minus", "dash"),
    "*": ("times", "star", "asterisk"),
    "**": ("double star", "to the power of", "power"),
    "/": ("slash", "divided by"),
    "//": ("double slash", "floor divide"),
    "%": ("percent", "mod", "modulo"),
    "@": ("at", "at sign"),
    "&": ("ampersand", "bitwise and"),
    "|": ("pipe", "bitwise or", "vertical bar"),
    "^": ("caret", "xor"),
    "~": ("tilde",),
    "<<": ("shift left", "left shift"),
    ">>": ("shift right", "right shift"),
    "->": ("arrow", "returns"),
    ":=": ("walrus", "colon equals"),
    "+=": ("plus equals",),
    "-=": ("minus equals",),
    "*=": ("times equals", "star equals"),
    "/=": ("slash equals", "divide equals"),
    "//=": ("double slash equals", "floor divide equals"),
    "%=": ("percent equals", "mod equals"),
    "**=": ("double star equals", "power equals"),
    "@=": ("at equals",),
    "&=": ("ampersand equals", "and equals"),
    "|=": ("pipe equals", "or equals"),
    "^=": ("caret equals", "xor equals"),
    "<<=": ("shift left equals", "left shift equals"),
    ">>=": ("shift right equals", "right shift equals"),
    "...": ("ellipsis", "dot dot dot"),
    # characters that only occur inside strings
    "'": ("single quote", "tick", "apostrophe"),
    '"': ("double quote", "quote"),
    "'''": ("triple single quote", "triple tick"),
    '"""': ("triple quote", "triple double quote"),
    " ": ("space",),
    "!": ("bang", "exclamation mark", "exclamation point"),
    "?": ("question mark",),
    "#": ("hash", "pound sign"),
    "$": ("dollar", "dollar sign"),
    "\\": ("backslash",),
    "`": ("backtick",),
}

# How an operator is said where it is unary ("star args", "negative one", "at property").
UNARY: dict[str, Phrasings] = {
    "-": ("minus", "negative"),
    "*": ("star",),
    "**": ("double star",),
    "@": ("at", "decorator"),
}

# Keywords said differently from how they are written (others are said as written).
KEYWORDS: dict[str, Phrasings] = {
    "def": ("def", "define"),
    "elif": ("elif", "else if"),
    "True": ("true",),
    "False": ("false",),
    "None": ("none",),
    "nonlocal": ("nonlocal", "non local"),
}

# Common short words of identifiers, and what people say for them.
WORDS: dict[str, Phrasings] = {
    "kwargs": ("kwargs", "keyword args"),
    "str": ("str", "stir"),
    "dict": ("dict", "dictionary"),
    "bool": ("bool", "boolean"),
}

# Markers of how an identifier's words are joined and cased.
SNAKE = ("snake", "snake case")
CAMEL = ("camel", "camel case")
PASCAL = ("pascal", "pascal case")
CONSTANT = ("all caps", "constant")
CAPITAL = ("cap", "capital")
ALL_CAPS = ("all caps",)
SMASH = ("smash",)
DUNDER = ("dunder",)
UNDERSCORE = ("underscore",)
WORD = ("word",)  # said before an identifier that sounds like a command word ("word dot")

# Numbers: prefixes of non-decimal literals, the decimal point, the exponent, and string prefixes.
RADIX: dict[str, Phrasings] = {"x": ("hex", "zero x"), "o": ("octal", "zero o"), "b": ("binary", "zero b")}
POINT = ("point",)
EXPONENT = ("e",)
IMAGINARY = ("j",)
STRING_PREFIX: dict[str, Phrasings] = {
    "r": ("raw", "r"),
    "b": ("bytes", "b"),
    "f": ("f", "format"),
    "u": ("u", "unicode"),
}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Common speech-recognition confusions: a word may come out as one of these.
CONFUSIONS: dict[str, Phrasings] = {
    "two": ("to", "too"),
    "to": ("two", "too"),
    "too": ("to", "two"),
    "four": ("for",),
    "for": ("four",),
}


def command_words() -> frozenset[str]:
    """Single words that are whole phrasings of a symbol or a marker: an identifier spoken as one of them
    is said after "word" so that it is not read as the symbol."""
    tables: list[Phrasings] = [*SYMBOLS.values(), *UNARY.values(), *RADIX.values(), SNAKE, CAMEL, PASCAL,
                               CONSTANT, CAPITAL, SMASH, DUNDER, UNDERSCORE, WORD, POINT]
    return frozenset(phrase for table in tables for phrase in table if " " not in phrase)
