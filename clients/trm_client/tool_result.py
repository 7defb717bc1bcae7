"""What a tool call returns to an LLM: a compact answer and whether the agent should reason itself."""

from __future__ import annotations

from typing import Any

from trm_client.model_info import ModelInfo
from trm_client.results import Classification, GridSolution, HaltReason, ReasonResult, ReasonStep, WrittenText

DEFER_REASONS = ("out_of_scope", "low_confidence", "unverified", "incomplete", "empty", "numbers_disagree")


def defer_reason(info: ModelInfo, result: ReasonResult) -> str | None:
    """Why the agent should not rely on the answer ("out_of_scope", "low_confidence", "unverified",
    "incomplete", "empty", "numbers_disagree"), or None.

    Classification: out of scope when the server flags it (its top label is the out-of-scope label, or its
    probability is below the model's calibrated out-of-scope threshold); for a model of more than one step without
    that threshold, low confidence when the halting head's confidence is below the calibrated halting threshold
    (a one-step model's halting threshold decides nothing and is not calibrated).
    Grid: unverified when the answer fails the deterministic rule check (a grid without rules never verifies).
    Written text: `text_defer_reason`.
    """
    answer = result.answer
    if isinstance(answer, GridSolution):
        return None if answer.verified else "unverified"
    if isinstance(answer, WrittenText):
        return text_defer_reason(result)
    if answer.out_of_scope:
        return "out_of_scope"
    if info.out_of_scope_threshold == 0 and info.limits.max_steps > 1 and result.halt_confidence < info.halt_threshold:
        return "low_confidence"
    return None


def text_defer_reason(result: ReasonResult | ReasonStep) -> str | None:
    """Why not to rely on a sequence model's written text, or None: "incomplete" unless the model ended it itself
    (a deadline, time budget or the output limit cut it short), "empty" when it wrote nothing, "numbers_disagree"
    when it writes a number its words do not say (the model's spoken-numbers check), "low_confidence" when the
    server marks it unsure otherwise (its confidence below the model's calibrated threshold)."""
    if result.halt_reason not in (HaltReason.HALTED, HaltReason.LOAD):
        return "incomplete"
    if not result.answer.text:
        return "empty"
    if result.answer.numbers_disagree:
        return "numbers_disagree"
    return "low_confidence" if result.answer.unsure else None


def tool_payload(info: ModelInfo, result: ReasonResult) -> dict[str, Any]:
    """The compact JSON-ready answer of one tool call."""
    answer = result.answer
    payload: dict[str, Any] = {"model": result.model, "version": result.model_version}
    if isinstance(answer, Classification):
        payload["answer"] = answer.label
        payload["confidence"] = round(answer.confidence, 3)
        payload["alternatives"] = [[s.label, round(s.probability, 3)] for s in answer.top[1:]]
        payload["out_of_scope"] = answer.out_of_scope
    elif isinstance(answer, WrittenText):
        payload["answer"] = answer.text
        payload["confidence"] = round(answer.confidence, 3)
        payload["mean_steps_per_character"] = round(answer.mean_steps_per_token, 2)
    else:
        payload["answer"] = answer.row_strings()
        payload["confidence"] = round(answer.confidence, 3)
        payload["verified"] = answer.verified
    payload["steps"] = result.steps
    payload["halt_reason"] = result.halt_reason.value
    reason = defer_reason(info, result)
    payload["defer_to_llm"] = reason is not None
    if reason is not None:
        payload["defer_reason"] = reason
    return payload


def error_payload(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """A failed tool call, told to the LLM instead of raised, so the agent can carry on by itself."""
    error: dict[str, Any] = {"code": code, "message": message}
    if request_id:
        error["request_id"] = request_id
    return {"error": error, "defer_to_llm": True}
