"""Plain JSON-ready dicts of results, steps and model descriptions (for ``--json`` and scripts)."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from trm_client.model_info import ModelInfo
from trm_client.results import GridSolution, ReasonResult, ReasonStep


def jsonable(value: Any) -> Any:
    """Dataclasses become dicts, enums their values, tuples lists; everything else is kept. A grid's answer also
    gets its `confidence` (its least sure cell's), a property, as every other answer has one."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return fields | {"confidence": value.confidence} if isinstance(value, GridSolution) else fields
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def model_dict(info: ModelInfo) -> dict[str, Any]:
    """A model description as a dict."""
    return jsonable(info)


def result_dict(result: ReasonResult) -> dict[str, Any]:
    """A final result as a dict, with its confidence, prediction and verified flag spelled out."""
    return {
        **jsonable(result),
        "prediction": result.prediction,
        "confidence": result.confidence,
        "verified": result.verified,
    }


def step_dict(step: ReasonStep) -> dict[str, Any]:
    """One streamed step as a dict, with its confidence, prediction and verified flag spelled out."""
    return {
        **jsonable(step),
        "prediction": step.prediction,
        "confidence": step.confidence,
        "verified": step.verified,
    }


def error_dict(code: str, details: str, request_id: str | None) -> dict[str, Any]:
    """A failure as --json prints it; ``request_id`` is None for an option refused before any call."""
    return {"code": code, "details": details, "request_id": request_id}
