"""Checks an LLM's tool arguments against the tool's schema and turns them into a Reason call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from trm_client.model_info import Budget, ModelInfo
from trm_client.tool_schema import input_schema

# The input's content (grid size and symbols, the Sudoku rules, text length) is left to the
# server: its message names the offending cell or the limit, where the schema's would print a
# regular expression or echo the whole text.
_CHECKED_BY_SERVER = frozenset({"pattern", "minLength", "maxLength"})
# What JSON decodes to, in the words of JSON.
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               dict: "an object", type(None): "null"}
_SCHEMA_TYPES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
                 "object": "an object", "array": "an array"}
_MAX_ECHOED = 40  # characters of an argument's name or value that an error message repeats


class ToolArgumentError(ValueError):
    """The arguments do not match the tool's schema."""


def parse_arguments(info: ModelInfo, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Decodes (when given as the JSON string LLM APIs return) and validates the arguments.

    Every schema rule is checked except the input's content (_CHECKED_BY_SERVER), which the
    server checks with a clearer message.

    What LLMs send for optional arguments is read as they mean it: null as the argument left out, and an
    integer argument written as a string of digits (``"3"``) or with a zero fraction (``3.0``, an integer to JSON
    Schema) as that integer. Errors are told in JSON's words, and repeat no more of a value than its type.

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
    schema = input_schema(info)
    properties, required = schema["properties"], set(schema["required"])
    integers = {name for name, spec in properties.items() if spec["type"] == "integer"}
    decoded = {name: _digits_as_int(value) if name in integers else value for name, value in arguments.items()
               if value is not None or name in required or name not in properties}
    errors = Draft202012Validator(schema).iter_errors(decoded)
    problems = sorted({_problem(e, properties) for e in errors if e.validator not in _CHECKED_BY_SERVER})
    if problems:
        raise ToolArgumentError("; ".join(problems))
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


def _digits_as_int(value: Any) -> Any:
    """An integer written as a string of digits (``"3"``, as LLMs often send one) as that integer; else the value."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _problem(error: ValidationError, properties: Mapping[str, Any]) -> str:
    """One schema violation in JSON's words, naming the argument, echoing at most _MAX_ECHOED characters."""
    name = _shown(str(error.path[0])) if error.path else None
    if error.validator == "type":
        got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        return f"{name} must be {_SCHEMA_TYPES.get(str(error.validator_value), error.validator_value)}, got {got}"
    if error.validator in ("minimum", "maximum"):
        bound = "at least" if error.validator == "minimum" else "at most"
        return f"{name} must be {bound} {error.validator_value}, got {_shown(json.dumps(error.instance))}"
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"{', '.join(missing)} is required"
    if error.validator == "additionalProperties":
        unknown = ", ".join(_shown(key) for key in error.instance if key not in properties)
        return f"unknown argument {unknown}: the tool takes {', '.join(properties)}"
    return f"{name}: {_shown(error.message)}" if name else _shown(error.message)


def _shown(text: str) -> str:
    """`text` as an error message repeats it: at most _MAX_ECHOED characters."""
    return text if len(text) <= _MAX_ECHOED else text[: _MAX_ECHOED - 1] + "…"
