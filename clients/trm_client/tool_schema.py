"""Tool definitions for LLMs: one tool per hosted model, its JSON Schema, in OpenAI's function format."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from trm_client.model_info import ModelInfo, TaskType
from trm_client.results import HaltReason
from trm_client.tool_result import DEFER_REASONS

_MAX_LISTED_LABELS = 40
_MAX_NAME = 64
# A tool's description within the 1,024 characters LLM APIs take (OpenAI refuses a longer one): the bundle's own, its
# name and its labels, each cut, and the labels listed fewer where the rest is long.
_MAX_DESCRIPTION, _MAX_DESCRIBED, _LISTED_CHARS, _MAX_LABEL_SHOWN, _MAX_NAME_SHOWN = 1024, 200, 560, 40, 64
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def tool_name(model_name: str) -> str:
    """The tool's name for a model: ``trm_`` plus the model name with anything but [A-Za-z0-9_] as '_' (where two
    hosted models' names give the same, `tool_names` tells them apart)."""
    return ("trm_" + re.sub(r"[^A-Za-z0-9_]", "_", model_name))[:_MAX_NAME]


def tool_names(model_names: Iterable[str]) -> dict[str, str]:
    """Each model's tool name, unique among `model_names`: its `tool_name`, but for models whose names give the same
    one (`mine-train` and `mine_train`, or names alike in their first 60 characters), which end in a hash of their
    own name each (`trm_mine_train_3f1a9c2e`), so that a call never reaches another model."""
    plain = {name: tool_name(name) for name in model_names}
    shared = {tool for tool, count in Counter(plain.values()).items() if count > 1}
    hashed = {name: _hashed(tool, name) for name, tool in plain.items() if tool in shared}
    # a model named like another's hashed tool name (`intent_v2_31fc9650` beside `intent-v2` and `intent_v2`) is
    # hashed too, or it would take that tool's name and its calls
    taken = set(hashed.values())
    names = {name: hashed.get(name) or (_hashed(tool, name) if tool in taken else tool) for name, tool in plain.items()}
    uses = Counter(names.values())
    clashes = sorted(name for name, tool in names.items() if uses[tool] > 1)
    if clashes:  # two hashes alike in their 8 digits: a name made to clash
        raise ValueError(f"models {', '.join(map(repr, clashes))} give one tool name: rename one of them")
    return names


def _hashed(tool: str, model_name: str) -> str:
    suffix = "_" + hashlib.sha256(model_name.encode()).hexdigest()[:8]
    return tool[: _MAX_NAME - len(suffix)] + suffix


def tool_description(info: ModelInfo) -> str:
    """What the tool does and when to trust it, in words an LLM reads when choosing tools; at most _MAX_DESCRIPTION
    characters."""
    listed_chars = _LISTED_CHARS
    while len(described := _description(info, listed_chars)) > _MAX_DESCRIPTION and listed_chars > 0:
        listed_chars -= len(described) - _MAX_DESCRIPTION
    return described


def _description(info: ModelInfo, listed_chars: int) -> str:
    """The tool's description, listing labels in at most `listed_chars` characters."""
    name = _plain(info.name, _MAX_NAME_SHOWN)
    if info.task is TaskType.GRID:
        rows, cols = info.limits.grid_rows, info.limits.grid_cols
        what = (
            f"Solves a {rows}x{cols} grid puzzle with the tiny recursive model '{name}'. "
            "Returns the filled grid and whether it passed the deterministic rule check (verified)."
        )
    elif info.task is TaskType.SEQUENCE:
        what = (
            f"Writes out the answer to a text, character by character, with the tiny recursive model "
            f"'{name}'; answers of up to {info.limits.max_output_tokens} characters."
        )
    else:
        what = (
            f"Classifies a text into one of {len(info.labels)} labels with the tiny recursive model "
            f"'{name}'. Labels: {_listed(info.labels, listed_chars)}."
        )
    described = _plain(info.description, _MAX_DESCRIBED).rstrip(".")  # a user's fit may leave it empty
    return (
        f"{described + '. ' if described else ''}{what} Fast (milliseconds) and cheap. The result has "
        "defer_to_llm=true when the model is unsure or the input is out of its scope: then answer yourself."
    )


def _plain(text: str, most: int) -> str:
    """`text` as one line for an LLM's tool list: control characters and runs of white space as one space, cut to
    `most` characters (a bundle's description, or a label, may hold anything up to the bundle's bounds)."""
    flat = " ".join(_CONTROLS.sub(" ", text).split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def _listed(labels: tuple[str, ...], listed_chars: int) -> str:
    """The labels, each `_plain`, comma-separated, as many as fit in `listed_chars` (at most _MAX_LISTED_LABELS), and
    the count of the rest ("a, b, and 111 more")."""
    listed: list[str] = []
    for label in labels[:_MAX_LISTED_LABELS]:
        shown = _plain(label, _MAX_LABEL_SHOWN)
        if listed and sum(len(item) + 2 for item in listed) + len(shown) > listed_chars:
            break
        listed.append(shown)
    rest = len(labels) - len(listed)
    return ", ".join(listed) + (f", and {rest} more" if rest > 0 else "")


_SHIPPED_BLANK = "0."
"""The blank symbols of the shipped grid models. A server before 2026-12-07 does not say a model's
(InputLimits.grid_blank), and a grid model may read another: its tool's pattern then takes any character but white
space, and the server tells a wrong one."""
_CLASS_SYNTAX = frozenset("\\]^-[")


def _class_of(symbols: str) -> str:
    """`symbols` inside a regular expression's [...], escaped alike for Python and for ECMA-262 in unicode mode
    (JSON Schema's dialect: it refuses an escape such as `\\#`, which Python's re.escape writes)."""
    return "".join(f"\\{symbol}" if symbol in _CLASS_SYNTAX else symbol for symbol in sorted(set(symbols)))


def input_schema(info: ModelInfo) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the tool's arguments, within the model's input limits."""
    properties: dict[str, Any]
    if info.task is TaskType.GRID:
        rows, cols = info.limits.grid_rows, info.limits.grid_cols
        givens = "".join(info.labels)
        blank = info.limits.grid_blank
        said = (f"{' or '.join(repr(b) for b in blank)} for a blank one" if blank else
                f"the model's blank symbol for a blank one ({' or '.join(map(repr, _SHIPPED_BLANK))} for the shipped "
                "grid models; this server does not say)")
        properties = {
            "grid": {
                "type": "string",
                "description": f"The {rows}x{cols} grid, row-major, {rows * cols} characters: one of "
                f"{givens!r} for a given cell, {said}.",
                "pattern": f"^[{_class_of(givens + blank)}]{{{rows * cols}}}$" if blank else f"^\\S{{{rows * cols}}}$",
            }
        }
        required = ["grid"]
    else:
        sequence = info.task is TaskType.SEQUENCE
        text: dict[str, Any] = {"type": "string", "minLength": 1,
                                "description": "The words to write out." if sequence else "The text to classify."}
        if info.limits.max_text_chars:
            text["maxLength"] = info.limits.max_text_chars
        properties = {"text": text} if sequence else {
            "text": text,
            "top_k": {
                "type": "integer",
                "minimum": 1,
                "maximum": max(1, len(info.labels)),
                "description": "How many candidate labels to return, most probable first (default 3).",
            },
        }
        required = ["text"]
    if info.limits.max_steps:
        properties["max_steps"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": info.limits.max_steps,
            "description": ("Most refinement steps to spend on each written character"
                            if info.task is TaskType.SEQUENCE else "Most refinement steps to spend")
            + "; fewer is faster and less accurate.",
        }
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def output_schema(info: ModelInfo) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of what a call of the tool returns (tool_result.py): the model's answer,
    or an error told to the LLM; both say whether to defer to the LLM."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    answer: dict[str, Any]
    if info.task is TaskType.GRID:
        answer = {"answer": {"type": "array", "items": {"type": "string"}, "description": "The filled grid, a string "
                             "per row."},
                  "confidence": probability,
                  "verified": {"type": "boolean", "description": "Whether the grid passed the rule check."}}
    elif info.task is TaskType.SEQUENCE:
        answer = {"answer": {"type": "string", "description": "The written text."},
                  "confidence": {**probability, "description": "The probability the model gives the whole text."},
                  "mean_steps_per_character": {"type": "number", "minimum": 0}}
    else:
        answer = {"answer": {"type": "string", "description": "The most probable label."},
                  "confidence": probability,
                  "alternatives": {"type": "array", "description": "The next labels, most probable first, each "
                                   "[label, probability].",
                                   # read alike by draft-07 validators (the MCP TypeScript SDK's), which ignore
                                   # prefixItems: a label and a probability, in that order
                                   "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                             "items": {"type": ["string", "number"], "minimum": 0, "maximum": 1}}},
                  "out_of_scope": {"type": "boolean"}}
    answered = {
        "type": "object",
        "properties": {
            "model": {"type": "string"}, "version": {"type": "string"}, **answer,
            "steps": {"type": "integer", "minimum": 0},
            "halt_reason": {"enum": [reason.value for reason in HaltReason]},
            "defer_to_llm": {"type": "boolean"},
            "defer_reason": {"enum": list(DEFER_REASONS)},
        },
        "required": ["model", "version", *answer, "steps", "halt_reason", "defer_to_llm"],
        "additionalProperties": False,
    }
    failed = {
        "type": "object",
        "properties": {
            "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                                       "request_id": {"type": "string"}},
                      "required": ["code", "message"], "additionalProperties": False},
            "defer_to_llm": {"const": True},
        },
        "required": ["error", "defer_to_llm"],
        "additionalProperties": False,
    }
    return {"type": "object", "anyOf": [answered, failed]}


def openai_tool(info: ModelInfo, name: str | None = None) -> dict[str, Any]:
    """The model as an OpenAI function-calling tool named `name` (default: `tool_name`): ``{"type": "function",
    "function": {...}}``."""
    return {
        "type": "function",
        "function": {
            "name": name or tool_name(info.name),
            "description": tool_description(info),
            "parameters": input_schema(info),
        },
    }
