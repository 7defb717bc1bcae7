"""Evaluation figures: a set that mixes source files is also reported per file, under documented names."""

from __future__ import annotations

import numpy as np

from trainer.evaluate import evaluate_step, headline_metrics
from trainer.prepare import GRID_LABELS
from trainer.tasks import EncodedSet


def copy_step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Answers every cell with its input symbol, confidently, and halts at once."""
    logits = 8.0 * np.eye(len(GRID_LABELS), dtype=np.float32)[tokens]
    return y, z, logits, np.full(len(tokens), 10.0, dtype=np.float32)


def test_a_set_that_mixes_files_is_also_reported_per_file() -> None:
    targets = np.array([[1, 2, 3, 4]] * 4, dtype=np.int64)
    tokens = targets.copy()
    tokens[3] = [1, 2, 3, 0]  # the one "hard" puzzle keeps a blank: its copy is wrong
    sources = np.array(["easy_file", "easy_file", "hard_file", "hard_file"])
    results = evaluate_step(copy_step, (1, 4), 2, {"hard": EncodedSet(tokens, targets, sources)}, 0.5,
                            GRID_LABELS, None)
    summary = results["hard"]
    assert summary["accuracy"] == 0.75
    assert list(summary["by_source"]) == ["easy_file", "hard_file"]
    assert [part["examples"] for part in summary["by_source"].values()] == [2, 2]
    assert summary["by_source"]["hard_file"]["accuracy"] == 0.5
    assert summary["by_source"]["hard_file"]["cell_accuracy"] == 7 / 8

    metrics = headline_metrics(results)
    assert metrics["test_hard_accuracy"] == 0.75
    assert metrics["test_hard_easy_file_accuracy"] == 1.0
    assert metrics["test_hard_hard_file_accuracy"] == 0.5
    assert sorted(name for name in metrics if "_file_" in name) == [
        "test_hard_easy_file_accuracy", "test_hard_easy_file_halting_accuracy",
        "test_hard_hard_file_accuracy", "test_hard_hard_file_halting_accuracy",
    ]


def test_a_set_from_one_file_has_no_per_file_figures() -> None:
    targets = np.array([[1, 2, 3, 4]] * 2, dtype=np.int64)
    results = evaluate_step(copy_step, (1, 4), 1, {"test": EncodedSet(targets, targets)}, 0.5, GRID_LABELS, None)
    assert "by_source" not in results["test"]
    assert set(headline_metrics(results)) == {
        "test_accuracy", "test_halting_accuracy", "test_halting_mean_steps", "test_ece", "test_cell_accuracy",
    }
