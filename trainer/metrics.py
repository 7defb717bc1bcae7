"""The figures of a recursion trace: accuracy, halting, calibration, out-of-scope rejection.

A `Trace` holds every example's answer after each supervision step (trainer/evaluate.py runs the step to
make one); the functions here are numpy only. docs/BUNDLE.md defines each figure a manifest reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trm_bundle.probabilities import sigmoid

HALT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
CURVE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, *HALT_THRESHOLDS, 0.995, 0.999)
"""The halting thresholds swept for the accuracy-vs-mean-steps curve of a report (wider than calibration's)."""


@dataclass
class Trace:
    """Per step s, per example i: prediction, its confidence, and the halting logit."""

    predictions: np.ndarray  # [steps, N] (classes) or [steps, N, cells]
    confidence: np.ndarray  # same shape: probability of the predicted symbol
    halt_logits: np.ndarray  # [steps, N]

    @property
    def steps(self) -> int:
        return self.predictions.shape[0]

    def take(self, examples: np.ndarray) -> Trace:
        """The trace of the examples at `examples`, in that order."""
        return Trace(self.predictions[:, examples], self.confidence[:, examples], self.halt_logits[:, examples])

    def at(self, step_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and confidence of each example at its own step index."""
        rows = np.arange(self.predictions.shape[1])
        return self.predictions[step_index, rows], self.confidence[step_index, rows]


def exact(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Whole-answer correctness (the class, or every cell), broadcasting over leading step axes."""
    correct = predictions == targets
    return correct if targets.ndim == 1 else correct.all(-1)


def halting_steps(halt_logits: np.ndarray, threshold: float, min_steps: int = 1) -> np.ndarray:
    """Index of the step where each example halts: first sigmoid(q) >= threshold at or after min_steps."""
    confident = sigmoid(halt_logits) >= threshold
    confident[: max(0, min_steps - 1)] = False
    confident[-1] = True
    return confident.argmax(0)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins over [0, 1]."""
    confidence, correct = confidence.ravel(), correct.ravel().astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(ece)


def halting_summary(trace: Trace, targets: np.ndarray, threshold: float, min_steps: int = 1) -> dict:
    """Accuracy, mean steps and step histogram when each example stops at its learned halt."""
    stop = halting_steps(trace.halt_logits, threshold, min_steps)
    predictions, _ = trace.at(stop)
    return {
        "threshold": threshold,
        "accuracy": float(exact(predictions, targets).mean()),
        "mean_steps": float((stop + 1).mean()),
        "step_histogram": np.bincount(stop + 1, minlength=trace.steps + 1)[1:].tolist(),
    }


def halting_curve(trace: Trace, targets: np.ndarray, min_steps: int = 1) -> list[dict]:
    """Accuracy against mean steps as the halting threshold sweeps CURVE_THRESHOLDS (one point each)."""
    points = []
    for threshold in CURVE_THRESHOLDS:
        summary = halting_summary(trace, targets, threshold, min_steps)
        points.append({"threshold": threshold, "accuracy": round(summary["accuracy"], 5),
                       "mean_steps": round(summary["mean_steps"], 4)})
    return points


def calibrate_halting(trace: Trace, targets: np.ndarray, tolerance: float = 0.005) -> float:
    """Lowest-cost halting threshold whose accuracy is within `tolerance` of the best fixed step count."""
    best_fixed = exact(trace.predictions, targets).mean(1).max()
    candidates = [halting_summary(trace, targets, t) for t in HALT_THRESHOLDS]
    good = [c for c in candidates if c["accuracy"] >= best_fixed - tolerance]
    if good:
        return min(good, key=lambda c: c["mean_steps"])["threshold"]
    return max(candidates, key=lambda c: (c["accuracy"], -c["mean_steps"]))["threshold"]


def summarize(trace: Trace, targets: np.ndarray, halt_threshold: float, min_steps: int = 1) -> dict:
    """The metrics `trm-train eval` prints for one set of examples."""
    per_step = exact(trace.predictions, targets).mean(1)
    halting = halting_summary(trace, targets, halt_threshold, min_steps)
    stop = halting_steps(trace.halt_logits, halt_threshold, min_steps)
    predictions, confidence = trace.at(stop)
    summary = {
        "examples": len(targets),
        "accuracy": float(per_step[-1]),
        "anytime_accuracy": [round(float(a), 5) for a in per_step],
        "best_fixed": {"steps": int(per_step.argmax()) + 1, "accuracy": float(per_step.max())},
        "halting": halting,
        "halting_curve": halting_curve(trace, targets, min_steps),
        "ece": expected_calibration_error(confidence, predictions == targets),
    }
    if targets.ndim == 2:
        summary["cell_accuracy"] = float((trace.predictions[-1] == targets).mean())
    else:
        summary["labels"] = int(np.unique(targets).size)
    return summary


def per_label(predictions: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict[str, dict[str, float | None]]:
    """Each label of the `targets`: its rows, recall (the share of them answered with it) and precision (the share
    of its answers that are right; None where it is never answered)."""
    figures: dict[str, dict[str, float | None]] = {}
    for index in np.unique(targets):
        rows, answered = targets == index, predictions == index
        right = int((rows & answered).sum())
        figures[labels[index]] = {
            "rows": int(rows.sum()), "recall": round(right / int(rows.sum()), 5),
            "precision": round(right / int(answered.sum()), 5) if answered.any() else None,
        }
    return figures


def out_of_scope_mask(trace: Trace, stop: np.ndarray, oos_index: int, threshold: float) -> np.ndarray:
    """Out of scope: the oos label wins, or the top probability is below the threshold."""
    predictions, confidence = trace.at(stop)
    return (predictions == oos_index) | (confidence < threshold)


def calibrate_out_of_scope(
    trace: Trace, targets: np.ndarray, stop: np.ndarray, oos_index: int
) -> float:
    """Threshold maximising accuracy over in-scope + out-of-scope validation examples (oos as a class)."""
    predictions, _ = trace.at(stop)
    best, best_acc = 0.0, -1.0
    for threshold in np.linspace(0.0, 0.95, 96):
        rejected = out_of_scope_mask(trace, stop, oos_index, float(threshold))
        final = np.where(rejected, oos_index, predictions)
        acc = float((final == targets).mean())
        if acc > best_acc:
            best, best_acc = float(threshold), acc
    return round(best, 4)


def intent_metrics(
    trace: Trace, targets: np.ndarray, oos_index: int, halt_threshold: float, oos_threshold: float
) -> dict:
    """CLINC150-style figures: in-scope accuracy (with and without rejection) and out-of-scope recall."""
    stop = halting_steps(trace.halt_logits, halt_threshold)
    predictions, _ = trace.at(stop)
    rejected = out_of_scope_mask(trace, stop, oos_index, oos_threshold)
    in_scope = targets != oos_index
    return {
        "in_scope_accuracy": float((predictions[in_scope] == targets[in_scope]).mean()),
        "in_scope_accuracy_with_rejection": float(
            ((predictions == targets) & ~rejected)[in_scope].mean()
        ),
        "oos_recall": float(rejected[~in_scope].mean()) if (~in_scope).any() else float("nan"),
        "oos_threshold": oos_threshold,
    }


def abstain_metrics(trace: Trace, targets: np.ndarray, halt_threshold: float, threshold: float) -> dict:
    """A model without an out-of-scope label: the fraction of inputs it answers (top probability at least
    `threshold`, else it abstains) and the accuracy of those answers."""
    stop = halting_steps(trace.halt_logits, halt_threshold)
    predictions, confidence = trace.at(stop)
    answered = confidence >= threshold
    return {
        "answered_fraction": float(answered.mean()),
        "answered_accuracy": float((predictions == targets)[answered].mean()) if answered.any() else float("nan"),
        "abstain_threshold": threshold,
    }
