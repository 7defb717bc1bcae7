"""Request checks against a model's manifest; every failure is a RequestError a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from trm.v1 import trm_pb2

from trm_bundle.manifest import GridInput, Manifest, TextInput
from trm_service.runtime import sudoku
from trm_service.runtime.codec import grid_values
from trm_service.scheduler.halting import StepBudget

DEFAULT_TOP_K = 3
MAX_REQUEST_ID_CHARS = 128
_MessageT = TypeVar("_MessageT", bound=Message)


class RequestError(Exception):
    """A request the server will not run: carries the gRPC status and a human-actionable message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ValidRequest:
    """A ReasonRequest that passed every check: its input, resolved budget and top_k."""

    text: str | None
    grid: list[int] | None
    budget: StepBudget
    time_budget_ms: int
    top_k: int


def invalid(message: str) -> RequestError:
    """An INVALID_ARGUMENT error."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def parse_message(message_type: type[_MessageT], raw: bytes) -> _MessageT:
    """Decode a request body; a malformed one is INVALID_ARGUMENT, not INTERNAL."""
    try:
        return message_type.FromString(raw)
    except DecodeError as exc:
        raise invalid(f"the request body is not a valid {message_type.DESCRIPTOR.full_name}: {exc}") from exc


def check_request_id(value: str) -> str:
    """An x-request-id from metadata: 1-128 printable ASCII characters."""
    if not 0 < len(value) <= MAX_REQUEST_ID_CHARS or not value.isascii() or not value.isprintable():
        raise invalid(f"metadata x-request-id must be 1-{MAX_REQUEST_ID_CHARS} printable ASCII characters")
    return value


def validate_reason_request(
    request: trm_pb2.ReasonRequest, manifest: Manifest, max_time_budget_ms: int
) -> ValidRequest:
    """Check a ReasonRequest's input, budget and top_k against the model it names."""
    kind = request.WhichOneof("input")
    spec = manifest.input
    if kind is None:
        wanted = "grid (ReasonRequest.grid)" if isinstance(spec, GridInput) else "text (ReasonRequest.text)"
        raise invalid(f"the request has no input: model {manifest.name!r} takes a {wanted}")
    text = grid = None
    if isinstance(spec, TextInput):
        if kind != "text":
            raise invalid(f"model {manifest.name!r} classifies text: set ReasonRequest.text, not grid")
        text = check_text(request.text, spec, manifest.name)
    else:
        if kind != "grid":
            raise invalid(
                f"model {manifest.name!r} solves {spec.rows}x{spec.cols} grids: set ReasonRequest.grid"
            )
        grid = check_grid(request.grid.cells, spec)
    budget, time_budget_ms = resolve_budget(request.budget, manifest, max_time_budget_ms)
    return ValidRequest(
        text=text,
        grid=grid,
        budget=budget,
        time_budget_ms=time_budget_ms,
        top_k=resolve_top_k(request.top_k, manifest),
    )


def check_text(text: str, spec: TextInput, model: str) -> str:
    """Non-blank text of at most max_chars characters."""
    if not text.strip():
        raise invalid("text is empty: send the text to classify in ReasonRequest.text")
    if len(text) > spec.max_chars:
        raise invalid(
            f"text has {len(text)} characters; model {model!r} accepts at most {spec.max_chars} "
            "(ModelInfo.limits.max_text_chars)"
        )
    return text


def check_grid(cells: str, spec: GridInput) -> list[int]:
    """Cell values (0 = blank) of a well-formed grid whose givens break no rule."""
    if len(cells) != spec.cells:
        raise invalid(
            f"grid.cells must have {spec.cells} symbols ({spec.rows}x{spec.cols}, row-major), "
            f"got {len(cells)}"
        )
    blanks = " or ".join(repr(b) for b in spec.blank)
    for index, ch in enumerate(cells):
        if ch not in spec.alphabet and ch not in spec.blank:
            row, col = divmod(index, spec.cols)
            raise invalid(
                f"grid.cells[{index}] (row {row + 1}, column {col + 1}) is {ch!r}: use one of "
                f"{spec.alphabet!r} for a given and {blanks} for a blank"
            )
    values = grid_values(cells, spec)
    if spec.rules == "sudoku":
        problems = sudoku.rule_violations(values, spec.rows)
        if problems:
            raise invalid(f"the givens break the sudoku rules: {'; '.join(problems)}")
    return values


def resolve_budget(
    budget: trm_pb2.Budget, manifest: Manifest, max_time_budget_ms: int
) -> tuple[StepBudget, int]:
    """Fill a Budget's zero fields with the model's defaults and check the set ones are in range."""
    model_max = manifest.recursion.N_sup
    if budget.max_steps > model_max:
        raise invalid(
            f"budget.max_steps must be 1..{model_max} for model {manifest.name!r} (got {budget.max_steps}); "
            f"0 uses the model's maximum"
        )
    max_steps = budget.max_steps or model_max
    if budget.min_steps > max_steps:
        raise invalid(f"budget.min_steps ({budget.min_steps}) must not exceed max_steps ({max_steps})")
    min_steps = budget.min_steps or min(manifest.min_steps, max_steps)
    threshold = budget.halt_threshold
    if threshold == 0.0:
        threshold = manifest.halt_threshold
    elif not 0.0 < threshold <= 1.0:
        raise invalid(
            f"budget.halt_threshold must be in (0, 1] (got {threshold}); 0 uses the model's default "
            f"{manifest.halt_threshold:g}"
        )
    if budget.time_budget_ms > max_time_budget_ms:
        raise invalid(
            f"budget.time_budget_ms must be at most {max_time_budget_ms} (got {budget.time_budget_ms}); "
            "0 means no time budget"
        )
    resolved = StepBudget(max_steps=max_steps, min_steps=min_steps, halt_threshold=threshold)
    return resolved, budget.time_budget_ms


def resolve_top_k(top_k: int, manifest: Manifest) -> int:
    """top_k for classification (default 3, capped at the label count); grids ignore it."""
    labels = len(manifest.labels)
    if isinstance(manifest.input, TextInput) and top_k > labels:
        raise invalid(
            f"top_k must be at most {labels} (the number of labels of {manifest.name!r}), got {top_k}"
        )
    return top_k or min(DEFAULT_TOP_K, labels)
