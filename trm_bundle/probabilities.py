"""How a step's outputs become the probabilities an answer reports (docs/BUNDLE.md, "Reading the outputs"):
softmax of `logits` over the labels, sigmoid of `halt_logit` for the halting confidence."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed in float64 for stable sums (a new array; `logits` is untouched)."""
    probabilities = logits.astype(np.float64)
    probabilities -= probabilities.max(axis=-1, keepdims=True)
    np.exp(probabilities, out=probabilities)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return probabilities


def sigmoid(halt_logit: np.ndarray) -> np.ndarray:
    """The halting confidence sigmoid(q), in float64; a request halts when it reaches the threshold."""
    return 1.0 / (1.0 + np.exp(-np.asarray(halt_logit, dtype=np.float64)))
