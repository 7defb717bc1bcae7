"""Server messages name API request fields (``ReasonRequest.grid``, ``budget.max_steps``); these
rewrite them in the words of the caller at hand: the CLI's flags, or an LLM tool's arguments.

Quoted parts of a message (a model name or version the caller sent, echoed with quotes) are kept.
"""

from __future__ import annotations

import re

Renames = tuple[tuple[str, str], ...]
"""(regular expression, replacement) pairs, applied in order."""

# The flags `reason` and `reason-batch` share.
_CLI_OPTIONS: Renames = (
    (r"\bReasonRequest\.grid\b", "--grid"),
    (r"\btop_k\b", "--top-k"),
    (r"\bModelInfo\.limits\.(\w+)", r"limits.\1 in `trm-client models --json`"),
    (r"\bModelInfo\.labels\b", "labels in `trm-client models --json`"),
)

CLI_FLAGS: Renames = (
    (r"\bReasonRequest\.text, not grid\b", "the text as the input argument, without --grid"),
    (r"\bReasonRequest\.text\b", "the input argument"),
    (r"\bgrid\.cells\[(\d+)\]", r"cell \1 of the --grid input"),
    (r"\bgrid\.cells\b", "the --grid input"),
    (r"\b(?:budget\.)?max_steps\b", "--max-steps"),
    (r"\b(?:budget\.)?min_steps\b", "--min-steps"),
    (r"\b(?:budget\.)?halt_threshold\b", "--halt-threshold"),
    (r"\b(?:budget\.)?time_budget_ms\b", "--budget-ms"),
    # A ReasonBatch over the server's limit: the server names its own flag, this is the caller's.
    (r"\bsplit the job into calls of at most (\d+)", r"set --batch-size to at most \1"),
    *_CLI_OPTIONS,
)
"""API fields (and the server's batch limit) as ``trm-client`` flags and ``trm-client reason``'s input argument."""

BATCH_LINES: Renames = (
    (r"\bReasonRequest\.text, not grid\b", "text lines, without --grid"),
    (r"\bReasonRequest\.text\b", "this line"),
    (r"\bgrid\.cells\[(\d+)\]", r"cell \1 of this line"),
    (r"\bgrid\.cells\b", "this line"),
    *_CLI_OPTIONS,
)
"""API fields as ``trm-client reason-batch`` flags and the input line a result belongs to."""

TOOL_ARGUMENTS: Renames = (
    (r"\bReasonRequest\.(text|grid)\b", r"the \1 argument"),
    (r"\bgrid\.cells\[(\d+)\]", r"cell \1 of grid"),
    (r"\bgrid\.cells\b", "grid"),
    (r"\bbudget\.max_steps\b", "max_steps"),
    (r"\bModelInfo\.limits\.max_text_chars\b", "maxLength of text in the tool's schema"),
    (r" \(ModelInfo\.limits\.max_tokens\)", ""),  # the tool's schema does not show it
    (r" \(ModelInfo\.labels\)", ""),  # the message already names the characters the model reads
)
"""API fields as the arguments of an LLM tool (trm_client.tool_schema)."""

# A quoted string starts and ends away from letters, so the apostrophe of "model's" is not a quote.
_QUOTED = re.compile(r"""((?<!\w)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?!\w))""")


def rename_fields(message: str, renames: Renames) -> str:
    """The message with each API field name outside quotes replaced as ``renames`` says."""
    parts = _QUOTED.split(message)
    for index in range(0, len(parts), 2):  # even parts lie outside quotes
        for pattern, replacement in renames:
            parts[index] = re.sub(pattern, replacement, parts[index])
    return "".join(parts)
