"""Checks an LLM's tool arguments against the tool's schema and turns them into a Reason call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator

from trm_client.model_info import Budget, ModelInfo
from trm_client.tool_schema import input_schema

# The input's content (grid size and symbols, the Sudoku rules, text length) is left to the
# server: its message names the offending cell or the limit, where the schema's would print a
# regular expression or echo the whole text.
_CHECKED_BY_SERVER = frozenset({"pattern", "minLength", "maxLength"})
# What JSON that is not an object decodes to, in the words of JSON.
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class ToolArgumentError(ValueError):
    """The arguments do not match the tool's schema."""


def parse_arguments(info: ModelInfo, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Decodes (when given as the JSON string LLM APIs return) and validates the arguments.

    Every schema rule is checked except the input's content (_CHECKED_BY_SERVER), which the
    server checks with a clearer message.

    Integer arguments sent as numbers with a zero fraction (``3.0``, an integer to JSON Schema) come back
    as ints.

    Raises:
        ToolArgumentError: on invalid JSON, JSON that is not an object, or arguments outside the schema.
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as error:
            raise ToolArgumentError(f"arguments are not valid JSON: {error}") from error
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        kind = _JSON_TYPES.get(type(arguments), type(arguments).__name__)
        raise ToolArgumentError(f"arguments must be a JSON object of the tool's parameters, got {kind}")
    decoded = dict(arguments)
    schema = input_schema(info)
    errors = Draft202012Validator(schema).iter_errors(decoded)
    problems = sorted((e for e in errors if e.validator not in _CHECKED_BY_SERVER), key=str)
    if problems:
        raise ToolArgumentError("; ".join(_describe(p.json_path, p.message) for p in problems))
    integers = {name for name, spec in schema["properties"].items() if spec["type"] == "integer"}
    return {name: int(value) if name in integers else value for name, value in decoded.items()}


def reason_kwargs(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``client.reason(model, **kwargs)`` from validated tool arguments."""
    kwargs: dict[str, Any] = {"top_k": arguments.get("top_k", 0)}
    if "grid" in arguments:
        kwargs["grid"] = arguments["grid"]
    else:
        kwargs["text"] = arguments["text"]
    if "max_steps" in arguments:
        kwargs["budget"] = Budget(max_steps=arguments["max_steps"])
    return kwargs


def _describe(path: str, message: str) -> str:
    return message if path == "$" else f"{path.removeprefix('$.')}: {message}"
