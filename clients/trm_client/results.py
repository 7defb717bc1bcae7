"""Typed answers: the result of Reason and each step of ReasonStream."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from trm.v1 import trm_pb2


class HaltReason(enum.Enum):
    """Why the server stopped refining an answer (see trm.v1.HaltReason)."""

    UNSPECIFIED = "unspecified"
    HALTED = "halted"
    MAX_STEPS = "max_steps"
    BUDGET = "budget"
    DEADLINE = "deadline"
    SHUTDOWN = "shutdown"
    VERIFIED = "verified"
    LOAD = "load"

    @classmethod
    def from_proto(cls, value: int) -> HaltReason:
        """Maps trm.v1.HaltReason to this enum."""
        return {
            trm_pb2.HALT_REASON_HALTED: cls.HALTED,
            trm_pb2.HALT_REASON_MAX_STEPS: cls.MAX_STEPS,
            trm_pb2.HALT_REASON_BUDGET: cls.BUDGET,
            trm_pb2.HALT_REASON_DEADLINE: cls.DEADLINE,
            trm_pb2.HALT_REASON_SHUTDOWN: cls.SHUTDOWN,
            trm_pb2.HALT_REASON_VERIFIED: cls.VERIFIED,
            trm_pb2.HALT_REASON_LOAD: cls.LOAD,
        }.get(value, cls.UNSPECIFIED)


@dataclass(frozen=True)
class LabelScore:
    """One candidate label and its probability."""

    label: str
    probability: float


@dataclass(frozen=True)
class Classification:
    """A text model's answer."""

    label: str
    confidence: float
    top: tuple[LabelScore, ...]
    out_of_scope: bool

    @property
    def prediction(self) -> str:
        """The answer as a string: the label."""
        return self.label


@dataclass(frozen=True)
class GridSolution:
    """A grid model's answer: one symbol per cell, row-major."""

    rows: int
    cols: int
    cells: str
    cell_confidence: tuple[float, ...]
    verified: bool

    @property
    def confidence(self) -> float:
        """The weakest cell's probability: a grid is only as sure as its least sure cell."""
        return min(self.cell_confidence, default=0.0)

    @property
    def prediction(self) -> str:
        """The answer as a string: the cells, row-major."""
        return self.cells

    def row_strings(self) -> list[str]:
        """The cells split into rows."""
        return [self.cells[r * self.cols : (r + 1) * self.cols] for r in range(self.rows)]


@dataclass(frozen=True)
class WrittenText:
    """A sequence model's answer (final), or where its decoding stands (a streamed step): the text emitted
    so far with its confidence (the product of its tokens' probabilities) and whether that is below the model's
    calibrated threshold (`unsure`: the text is likely wrong; also when `numbers_disagree`: the finished text writes
    a number its words do not say), the token the step refined (its index, its refinement step, its top candidates,
    whether this step emitted it), and the tokens emitted with their mean refinement steps."""

    text: str
    token_index: int
    token_step: int
    candidates: tuple[LabelScore, ...]
    token_emitted: bool
    tokens: int
    mean_steps_per_token: float
    confidence: float
    unsure: bool
    numbers_disagree: bool = False

    @property
    def prediction(self) -> str:
        """The answer as a string: the text."""
        return self.text


Answer = Classification | GridSolution | WrittenText


def answer_from_proto(message: trm_pb2.Answer) -> Answer:
    """Reads whichever answer kind the message holds."""
    if message.WhichOneof("kind") == "text":
        text = message.text
        return WrittenText(
            text=text.text,
            token_index=text.token_index,
            token_step=text.token_step,
            candidates=tuple(LabelScore(s.label, s.probability) for s in text.candidates),
            token_emitted=text.token_emitted,
            tokens=text.tokens,
            mean_steps_per_token=text.mean_steps_per_token,
            confidence=text.confidence,
            unsure=text.unsure,
            numbers_disagree=text.numbers_disagree,
        )
    if message.WhichOneof("kind") == "grid":
        grid = message.grid
        return GridSolution(
            rows=grid.rows,
            cols=grid.cols,
            cells=grid.cells,
            cell_confidence=tuple(grid.confidence),
            verified=grid.verified,
        )
    cls = message.classification
    return Classification(
        label=cls.label,
        confidence=cls.confidence,
        top=tuple(LabelScore(s.label, s.probability) for s in cls.top),
        out_of_scope=cls.out_of_scope,
    )


class _AnswerAccessors:
    """Shortcuts shared by a final result and a streamed step: both carry an ``answer``."""

    answer: Answer

    @property
    def confidence(self) -> float:
        """The answer's confidence (top probability, the weakest grid cell's, or the written text's)."""
        return self.answer.confidence

    @property
    def prediction(self) -> str:
        """The answer as a string: the label, the grid cells, or the written text."""
        return self.answer.prediction

    @property
    def verified(self) -> bool | None:
        """For grids, whether the answer passed the deterministic check; None for text."""
        return self.answer.verified if isinstance(self.answer, GridSolution) else None


@dataclass(frozen=True)
class ReasonResult(_AnswerAccessors):
    """The final answer of one Reason call.

    ``latency_ms`` is the server's time for the request; ``round_trip_ms`` is what the caller waited,
    retries included.
    """

    model: str
    model_version: str
    answer: Answer
    halt_confidence: float
    steps: int
    halt_reason: HaltReason
    latency_ms: float
    round_trip_ms: float
    request_id: str

    @classmethod
    def from_proto(
        cls, message: trm_pb2.ReasonResponse, round_trip_ms: float, request_id: str
    ) -> ReasonResult:
        """Reads the wire message; ``request_id`` is used when the server did not echo one."""
        return cls(
            model=message.model,
            model_version=message.model_version,
            answer=answer_from_proto(message.answer),
            halt_confidence=message.halt_confidence,
            steps=message.steps,
            halt_reason=HaltReason.from_proto(message.halt_reason),
            latency_ms=message.latency_ms,
            round_trip_ms=round_trip_ms,
            request_id=message.request_id or request_id,
        )


@dataclass(frozen=True)
class ReasonStep(_AnswerAccessors):
    """One supervision step of a streamed request; the last one has ``final`` set."""

    step: int
    answer: Answer
    halt_confidence: float
    change: float
    elapsed_ms: float
    final: bool
    halt_reason: HaltReason | None
    request_id: str
    model_version: str

    @classmethod
    def from_proto(cls, message: trm_pb2.ReasonStep, request_id: str) -> ReasonStep:
        """Reads the wire message; ``request_id`` is used when the server did not echo one."""
        return cls(
            step=message.step,
            answer=answer_from_proto(message.answer),
            halt_confidence=message.halt_confidence,
            change=message.change,
            elapsed_ms=message.elapsed_ms,
            final=message.final,
            halt_reason=HaltReason.from_proto(message.halt_reason) if message.final else None,
            request_id=message.request_id or request_id,
            model_version=message.model_version,
        )
