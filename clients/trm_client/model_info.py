"""What a hosted model is and accepts: ModelInfo, its input limits and request budgets."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from trm.v1 import trm_pb2

MAX_UINT32 = 2**32 - 1
"""The largest value of the API's unsigned 32-bit fields (budget steps and milliseconds, top_k)."""


def check_request_count(name: str, value: object) -> None:
    """Raises ValueError naming `name` unless `value` is a whole number from 0 (the model's default) to
    MAX_UINT32: protobuf's own error ("Value out of range") names no field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT32:
        raise ValueError(f"{name} must be a whole number from 0 (the model's default) to {MAX_UINT32}, got {value!r}")


class TaskType(enum.Enum):
    """What a model does with its input."""

    UNSPECIFIED = "unspecified"
    TEXT_CLASSIFICATION = "text_classification"
    GRID = "grid"
    SEQUENCE = "sequence"

    @classmethod
    def from_proto(cls, value: int) -> TaskType:
        """Maps trm.v1.TaskType to this enum."""
        return {
            trm_pb2.TASK_TYPE_TEXT_CLASSIFICATION: cls.TEXT_CLASSIFICATION,
            trm_pb2.TASK_TYPE_GRID: cls.GRID,
            trm_pb2.TASK_TYPE_SEQUENCE: cls.SEQUENCE,
        }.get(value, cls.UNSPECIFIED)


SMALLEST_FLOAT32 = 1.401298464324817e-45  # the smallest float32 above 0 (a denormal), Budget.halt_threshold's type


@dataclass(frozen=True)
class Budget:
    """Limits for one request; zero means "the model's default" (see trm.v1.Budget)."""

    max_steps: int = 0
    min_steps: int = 0
    halt_threshold: float = 0.0
    time_budget_ms: int = 0
    continue_when_verified: bool = False  # grid models with rules: refine past a verified answer

    def __post_init__(self) -> None:
        for name in ("max_steps", "min_steps", "time_budget_ms"):
            check_request_count(f"budget.{name}", getattr(self, name))
        if isinstance(self.halt_threshold, bool) or not isinstance(self.halt_threshold, int | float):
            raise ValueError(f"budget.halt_threshold must be a number (0: the model's default), got "
                             f"{self.halt_threshold!r}")
        if 0 < abs(self.halt_threshold) < SMALLEST_FLOAT32:  # the wire's float: it would arrive as 0, the default
            raise ValueError(f"budget.halt_threshold {self.halt_threshold!r} is below the smallest the wire carries "
                             f"({SMALLEST_FLOAT32:g}) and would read as 0, the model's default: give at least that")

    def to_proto(self) -> trm_pb2.Budget:
        """Builds the wire message."""
        return trm_pb2.Budget(
            max_steps=self.max_steps,
            min_steps=self.min_steps,
            halt_threshold=self.halt_threshold,
            time_budget_ms=self.time_budget_ms,
            continue_when_verified=self.continue_when_verified,
        )

    @classmethod
    def from_proto(cls, message: trm_pb2.Budget) -> Budget:
        """Reads the wire message."""
        return cls(
            max_steps=message.max_steps,
            min_steps=message.min_steps,
            halt_threshold=message.halt_threshold,
            time_budget_ms=message.time_budget_ms,
            continue_when_verified=message.continue_when_verified,
        )


@dataclass(frozen=True)
class InputLimits:
    """What a model accepts: text length and token window, or grid shape, and the largest budget; sequence
    models also the longest answer in tokens (max_steps is then per token). ``grid_blank``: the symbols a grid
    model reads as a blank cell ("" from a server older than the field, whose grid models read '0' and '.')."""

    max_text_chars: int
    max_tokens: int
    grid_rows: int
    grid_cols: int
    max_steps: int
    max_time_budget_ms: int
    max_output_tokens: int = 0
    grid_blank: str = ""

    @classmethod
    def from_proto(cls, message: trm_pb2.InputLimits) -> InputLimits:
        """Reads the wire message."""
        return cls(
            max_text_chars=message.max_text_chars,
            max_tokens=message.max_tokens,
            grid_rows=message.grid_rows,
            grid_cols=message.grid_cols,
            max_steps=message.max_steps,
            max_time_budget_ms=message.max_time_budget_ms,
            max_output_tokens=message.max_output_tokens,
            grid_blank=message.grid_blank,
        )


@dataclass(frozen=True)
class ModelInfo:
    """One hosted model, as ListModels and GetModel describe it."""

    name: str
    version: str
    task: TaskType
    description: str
    labels: tuple[str, ...]
    limits: InputLimits
    default_budget: Budget
    metrics: dict[str, float] = field(default_factory=dict)
    out_of_scope_threshold: float = 0.0
    versions: tuple[str, ...] = ()
    served_step: str = "fp32"
    """The ONNX step the server runs: "int8" (the metrics named int8_* are its figures) or "fp32"; "" from a server
    before 2026-12-03, which does not say (it ran a bundle's int8 step where there was one, unless --fp32)."""
    unsure_below: float = 0.0
    """Sequence models: the calibrated confidence below which a written text is marked unsure (0: never)."""
    checks: tuple[str, ...] = ()
    """Sequence models: the checks run on each finished text ("spoken_numbers": `WrittenText.numbers_disagree`)."""

    def listed_labels(self, most: int) -> str:
        """The first `most` labels, comma-separated, and the count of the rest ("a, b, and 111 more")."""
        rest = len(self.labels) - most
        return ", ".join(self.labels[:most]) + (f", and {rest} more" if rest > 0 else "")

    @property
    def halt_threshold(self) -> float:
        """The calibrated halting threshold a request gets by default."""
        return self.default_budget.halt_threshold

    @classmethod
    def from_proto(cls, message: trm_pb2.ModelInfo) -> ModelInfo:
        """Reads the wire message."""
        return cls(
            name=message.name,
            version=message.version,
            task=TaskType.from_proto(message.task),
            description=message.description,
            labels=tuple(message.labels),
            limits=InputLimits.from_proto(message.limits),
            default_budget=Budget.from_proto(message.default_budget),
            metrics=dict(message.metrics),
            out_of_scope_threshold=message.out_of_scope_threshold,
            versions=tuple(message.versions),
            served_step=message.served_step,
            unsure_below=message.unsure_below,
            checks=tuple(message.checks),
        )
