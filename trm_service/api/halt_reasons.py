"""The scheduler's halting reasons as the API's trm.v1.HaltReason values and names, and what an answer says of
itself (`answer_flag`)."""

from __future__ import annotations

from trm.v1 import trm_pb2

from trm_service.scheduler.halting import HaltReason

_WIRE: dict[HaltReason | None, trm_pb2.HaltReason] = {
    None: trm_pb2.HALT_REASON_UNSPECIFIED,
    HaltReason.HALTED: trm_pb2.HALT_REASON_HALTED,
    HaltReason.MAX_STEPS: trm_pb2.HALT_REASON_MAX_STEPS,
    HaltReason.BUDGET: trm_pb2.HALT_REASON_BUDGET,
    HaltReason.DEADLINE: trm_pb2.HALT_REASON_DEADLINE,
    HaltReason.SHUTDOWN: trm_pb2.HALT_REASON_SHUTDOWN,
    HaltReason.VERIFIED: trm_pb2.HALT_REASON_VERIFIED,
    HaltReason.LOAD: trm_pb2.HALT_REASON_LOAD,
}


HALT_REASON_NAMES = tuple(trm_pb2.HaltReason.Name(wire) for reason, wire in _WIRE.items() if reason is not None)
"""Every name `halt_reason_name` gives."""
FLAG_OF_TASK = {"text_classification": "out_of_scope", "grid": "unverified", "sequence": "unsure"}
"""The flag `answer_flag` gives a model's answers, by the manifest's task."""


def wire_halt_reason(reason: HaltReason | None) -> trm_pb2.HaltReason:
    """The trm.v1.HaltReason of `reason` (None: the request goes on, HALT_REASON_UNSPECIFIED)."""
    return _WIRE[reason]


def halt_reason_name(reason: HaltReason) -> str:
    """The trm.v1 enum name ("HALT_REASON_MAX_STEPS") that logs and metrics use."""
    return trm_pb2.HaltReason.Name(_WIRE[reason])


def answer_flag(answer: trm_pb2.Answer) -> str | None:
    """What an answer says of itself that its caller should act on, as logs and metrics name it: "out_of_scope" (a
    classification's flag), "unverified" (a grid that fails its rule check), "unsure" (a written text below its
    model's threshold or failing its checks), or None."""
    kind = answer.WhichOneof("kind")
    if kind == "classification":
        return FLAG_OF_TASK["text_classification"] if answer.classification.out_of_scope else None
    if kind == "grid":
        return None if answer.grid.verified else FLAG_OF_TASK["grid"]
    return FLAG_OF_TASK["sequence"] if answer.text.unsure else None
