"""Request checks: the body, the request id, the input (through its model's codec) and the budget; every
failure is a RequestError a person can act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message
from trm.v1 import trm_pb2

from trm_bundle.manifest import Manifest
from trm_service.caller_strings import quote
from trm_service.runtime.codec import Codec, EncodedRequest, InputError
from trm_service.scheduler.halting import StepBudget

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
    """A ReasonRequest that passed every check: its encoded input and its resolved budget."""

    input: EncodedRequest
    budget: StepBudget
    time_budget_ms: int


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
    """An x-request-id from metadata: 1-128 printable ASCII characters, no space at either end
    (HTTP/2 forbids surrounding whitespace in header values)."""
    problem = _request_id_problem(value)
    if problem:
        raise invalid(
            f"metadata x-request-id {quote(value)} {problem}: use 1-{MAX_REQUEST_ID_CHARS} printable ASCII "
            "characters with no space at either end, or send none and the server makes one"
        )
    return value


def _request_id_problem(value: str) -> str | None:
    if not value:
        return "is empty"
    if len(value) > MAX_REQUEST_ID_CHARS:
        return "is too long"
    for position, char in enumerate(value, start=1):
        if not (char.isascii() and char.isprintable()):
            return f"has {char!r} (U+{ord(char):04X}) at position {position}"
    if value != value.strip():
        return "starts or ends with a space"
    return None


def validate_reason_request(
    request: trm_pb2.ReasonRequest, codec: Codec, manifest: Manifest, max_time_budget_ms: int
) -> ValidRequest:
    """Check and encode a ReasonRequest's input (its model's codec), then its budget."""
    try:
        encoded = codec.encode(request)
    except InputError as exc:
        raise invalid(str(exc)) from exc
    budget, time_budget_ms = resolve_budget(request.budget, manifest, max_time_budget_ms)
    return ValidRequest(input=encoded, budget=budget, time_budget_ms=time_budget_ms)


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
        bound = f"max_steps ({max_steps})" if budget.max_steps else (
            f"{model_max}, the most steps model {manifest.name!r} runs")
        raise invalid(f"budget.min_steps ({budget.min_steps}) must not exceed {bound}")
    min_steps = budget.min_steps or min(manifest.min_steps, max_steps)
    threshold = budget.halt_threshold
    if threshold == 0.0:
        threshold = manifest.halt_threshold
    elif not 0.0 < threshold <= 1.0:
        raise invalid(
            f"budget.halt_threshold must be in (0, 1] (got {_float32_text(threshold)}); 0 uses the model's default "
            f"{manifest.halt_threshold:g}"
        )
    if budget.time_budget_ms > max_time_budget_ms:
        raise invalid(
            f"budget.time_budget_ms must be at most {max_time_budget_ms} (got {budget.time_budget_ms}); "
            "0 means no time budget"
        )
    resolved = StepBudget(max_steps=max_steps, min_steps=min_steps, halt_threshold=threshold)
    return resolved, budget.time_budget_ms


def _float32_text(value: float) -> str:
    """A proto float as its shortest 32-bit text (1.0000001, not 1; 2, not 2.0)."""
    text = str(np.float32(value))
    return text.removesuffix(".0")
