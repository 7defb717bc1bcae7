"""What every model's codec does: a request's input to token ids, and each step's logits to an answer.

A codec is built once per model when its bundle loads (runtime/loader.py): TextCodec for text
classifiers (text_codec.py), GridCodec for grid puzzles (grid_codec.py). The servicer only calls
`encode` and the reader it returns, whatever the model's task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from trm.v1 import trm_pb2

from trm_service.scheduler.ticket import StepResult

DEFAULT_TOP_K = 3  # labels or candidates a request gets without top_k


def top_scores(labels: tuple[str, ...], probabilities: np.ndarray, k: int) -> list[trm_pb2.LabelScore]:
    """The `k` most probable labels of a distribution [len(labels)], most probable first (ties by index)."""
    order = (-probabilities).argsort(kind="stable")[:k]
    return [trm_pb2.LabelScore(label=labels[i], probability=p)
            for i, p in zip(order.tolist(), probabilities[order].tolist(), strict=True)]


class InputError(ValueError):
    """The request's input does not suit the model; the message tells the caller what to send."""


def emptiness(text: str) -> str:
    """How a text with nothing but white space is told: "empty" or "blank (white space only)"."""
    return "empty" if not text else "blank (white space only)"


@dataclass(frozen=True)
class DecodedStep:
    """The answer of one step, and the distribution it came from (used to measure change)."""

    answer: trm_pb2.Answer
    probabilities: np.ndarray
    unit: int = 0
    """What the probabilities are of: sequence models, the index of the token (0 for other models)."""

    def change_from(self, previous: DecodedStep | None) -> float:
        """Total-variation distance (classification, a sequence's current token) or fraction of changed cells
        (grid); 1.0 at step 1 and at a sequence's new token."""
        if previous is None or previous.unit != self.unit:
            return 1.0
        if self.probabilities.ndim == 1:
            return float(0.5 * np.abs(self.probabilities - previous.probabilities).sum())
        current = self.probabilities.argmax(axis=-1)
        return float((current != previous.probabilities.argmax(axis=-1)).mean())


class StepReader(Protocol):
    """Decodes the steps of one request (it knows that request's top_k or givens)."""

    def read(self, result: StepResult) -> DecodedStep:
        """The answer that a step's result (its logits: this request's row of the step's output) stands for."""
        ...


@dataclass(frozen=True)
class EncodedRequest:
    """A request's input, checked and encoded for its model."""

    tokens: np.ndarray
    """The step's `tokens` input for this request: int64, the model's full sequence length."""
    reader: StepReader
    logged_input: str
    """The input as the request log shows it with --log-inputs."""
    verifier: Callable[[np.ndarray], bool] | None = None
    """Grid models with rules: whether a step's logits (this request's row) stand for an answer that passes
    the deterministic check; None for models without one."""


class Codec(Protocol):
    """Encodes requests for one model and decodes its steps."""

    def encode(self, request: trm_pb2.ReasonRequest) -> EncodedRequest:
        """Check the request's input (and top_k) against the model and encode it; raise InputError."""
        ...
