"""Tool definitions for LLMs: one tool per hosted model, its JSON Schema, in OpenAI's function format."""

from __future__ import annotations

import re
from typing import Any

from trm_client.model_info import ModelInfo, TaskType

_MAX_LISTED_LABELS = 40
_MAX_NAME = 64


def tool_name(model_name: str) -> str:
    """The tool's name for a model: ``trm_`` plus the model name with anything but [A-Za-z0-9_] as '_'."""
    return ("trm_" + re.sub(r"[^A-Za-z0-9_]", "_", model_name))[:_MAX_NAME]


def tool_description(info: ModelInfo) -> str:
    """What the tool does and when to trust it, in words an LLM reads when choosing tools."""
    if info.task is TaskType.GRID:
        rows, cols = info.limits.grid_rows, info.limits.grid_cols
        what = (
            f"Solves a {rows}x{cols} grid puzzle with the tiny recursive model '{info.name}'. "
            "Returns the filled grid and whether it passed the deterministic rule check (verified)."
        )
    elif info.task is TaskType.SEQUENCE:
        what = (
            f"Writes out what was said with the tiny recursive model '{info.name}' (e.g. dictated code: "
            f"'def parse open paren path close paren colon' -> 'def parse(path):'); answers of up to "
            f"{info.limits.max_output_tokens} characters."
        )
    else:
        labels = info.labels
        unlisted = len(labels) - _MAX_LISTED_LABELS
        listed = ", ".join(labels[:_MAX_LISTED_LABELS]) + (f", and {unlisted} more" if unlisted > 0 else "")
        what = (
            f"Classifies a text into one of {len(labels)} labels with the tiny recursive model "
            f"'{info.name}'. Labels: {listed}."
        )
    return (
        f"{info.description.rstrip('.')}. {what} Fast (milliseconds) and cheap. The result has "
        "defer_to_llm=true when the model is unsure or the input is out of its scope: then answer yourself."
    )


def input_schema(info: ModelInfo) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the tool's arguments, within the model's input limits."""
    properties: dict[str, Any]
    if info.task is TaskType.GRID:
        rows, cols = info.limits.grid_rows, info.limits.grid_cols
        symbols = re.escape("".join(sorted(set(info.labels) | {"0", "."})))
        properties = {
            "grid": {
                "type": "string",
                "description": f"The {rows}x{cols} grid, row-major, {rows * cols} characters: "
                "a given digit, or '0' or '.' for a blank cell.",
                "pattern": f"^[{symbols}]{{{rows * cols}}}$",
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


def openai_tool(info: ModelInfo) -> dict[str, Any]:
    """The model as an OpenAI function-calling tool: ``{"type": "function", "function": {...}}``."""
    return {
        "type": "function",
        "function": {
            "name": tool_name(info.name),
            "description": tool_description(info),
            "parameters": input_schema(info),
        },
    }
