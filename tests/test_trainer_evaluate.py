"""Evaluation figures: a set that mixes source files is also reported per file, under documented names."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from trainer import metrics
from trainer.evaluate import (
    Thresholds,
    calibrate,
    evaluate_step,
    grid_result,
    headline_metrics,
    label_coverage,
    missed_labels,
    run_recursion,
)
from trainer.out_of_scope import AbstainCalibration, calibrate_abstain_threshold, deferral_note
from trainer.prepare import GRID_LABELS
from trainer.report import _labels_found_least, answered_line
from trainer.tasks import EncodedSet


def copy_step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """Answers every cell with its input symbol, confidently, and halts at once."""
    logits = 8.0 * np.eye(len(GRID_LABELS), dtype=np.float32)[tokens]
    return y, z, logits, np.full(len(tokens), 10.0, dtype=np.float32)


def calibrate_on(step, data: EncodedSet, labels: list[str], oos_label: str | None, **options) -> Thresholds:
    """`calibrate` on the trace of one supervision step over `data`, as the export gives it its validation trace."""
    return calibrate(run_recursion(step, data.tokens, (1, 4), 1), data.targets, labels, oos_label, **options)


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
    # QA: copying the givens scored their cells right: the blank cells' share is reported too (the one, wrong)
    assert summary["cell_accuracy"] == 15 / 16 and summary["blank_cell_accuracy"] == 0.0

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


def confidence_step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    """A text step over 3 labels: token 0 names the predicted label, token 1 its logit margin over the others."""
    logits = np.zeros((len(tokens), 3), dtype=np.float32)
    logits[np.arange(len(tokens)), tokens[:, 0]] = tokens[:, 1]
    return y, z, logits, np.full(len(tokens), 10.0, dtype=np.float32)


def test_each_labels_recall_and_precision_are_reported_and_a_label_never_answered_is_named() -> None:
    """QA: label 'lost_luggage' was never the model's answer on test (answered 'other', confidently), and neither
    REPORT.md nor the fit said so: only the overall accuracy was given."""
    tokens = np.array([[0, 6]] * 6 + [[1, 6]] * 2)  # answers: six 'other', two 'billing'
    targets = np.array([0, 0, 0, 2, 2, 2, 1, 1])  # the three 'lost_luggage' rows answered 'other'
    results = evaluate_step(confidence_step, (1, 2), 1, {"test": EncodedSet(tokens, targets)}, 0.5,
                            ["other", "billing", "lost_luggage"], None)
    assert results["test"]["per_label"] == {
        "other": {"rows": 3, "recall": 1.0, "precision": 0.5},
        "billing": {"rows": 2, "recall": 1.0, "precision": 1.0},
        "lost_luggage": {"rows": 3, "recall": 0.0, "precision": None},
    }
    assert missed_labels(results) == (
        "label 'lost_luggage' (3 test rows) was never the model's answer on test: its rows were answered as other "
        "labels (REPORT.md lists the labels found least often); more rows of it help")
    table = _labels_found_least({"results": results, "results_int8": {}, "int8_shipped": False})
    assert "| lost_luggage | 3 | 0.0% | never answered |\n| other | 3 | 100.0% | 50.0% |" in table
    assert "Labels on test (every label;" in table


def test_with_an_out_of_scope_label_its_threshold_is_calibrated() -> None:
    # label 2 is "oos": confident predictions of labels 0/1 are right, the unsure ones are really out of scope
    tokens = np.array([[0, 6], [1, 6], [0, 6], [1, 6], [0, 0], [1, 0], [2, 6]])
    targets = np.array([0, 1, 0, 1, 2, 2, 2])
    thresholds = calibrate_on(confidence_step, EncodedSet(tokens, targets), ["a", "b", "oos"], "oos")
    assert thresholds.out_of_scope is not None and thresholds.out_of_scope.label == "oos"
    assert 1 / 3 < thresholds.out_of_scope.threshold <= 0.95 and thresholds.abstain is None
    results = evaluate_step(confidence_step, (1, 4), 1, {"test": EncodedSet(tokens, targets)}, 0.5,
                            ["a", "b", "oos"], thresholds.out_of_scope)
    assert results["test"]["oos_recall"] == 1.0 and results["test"]["in_scope_accuracy"] == 1.0


def test_without_an_out_of_scope_label_an_abstain_threshold_keeps_answers_precise() -> None:
    # margin 6 (top probability 0.995) is always right, margin 1 (0.58) right only half the time
    tokens = np.array([[0, 6]] * 10 + [[1, 1]] * 4)
    targets = np.array([0] * 10 + [1, 1, 0, 0])
    thresholds = calibrate_on(confidence_step, EncodedSet(tokens, targets), ["a", "b", "c"], None)
    abstain = thresholds.out_of_scope
    assert abstain is not None and abstain.label is None
    assert 0.58 < abstain.threshold <= 0.996
    assert thresholds.abstain is not None and thresholds.abstain.coverage == 10 / 14
    results = evaluate_step(confidence_step, (1, 4), 1, {"test": EncodedSet(tokens, targets)}, 0.5,
                            ["a", "b", "c"], abstain)
    assert results["test"]["answered_fraction"] == 10 / 14 and results["test"]["answered_accuracy"] == 1.0
    assert headline_metrics(results)["test_answered_accuracy"] == 1.0
    # a lower precision asked for (--abstain-precision): every input answered, 12 of 14 right
    lenient = calibrate_on(confidence_step, EncodedSet(tokens, targets), ["a", "b", "c"], None, abstain_precision=0.8)
    assert lenient.abstain is not None and lenient.abstain.coverage == 1.0
    assert lenient.out_of_scope is not None and lenient.out_of_scope.threshold < 0.59


def test_a_model_that_answers_little_says_so_in_its_report_and_after_its_fit() -> None:
    nothing = {"answered_fraction": 0.0, "answered_accuracy": float("nan"), "abstain_threshold": 0.8925}
    assert answered_line("test", nothing, 0.95) == (
        "- test: answers none of the inputs: no confidence level was 95% precise on validation, so it abstains on "
        "every input (`out_of_scope`, `defer_to_llm`; threshold 0.8925)")
    some = {"answered_fraction": 0.25, "answered_accuracy": 0.96, "abstain_threshold": 0.7}
    assert answered_line("test", some, 0.8).startswith("- test: answers 25.00% of inputs, 96.00% of them right; below ")
    assert answered_line("test", some, 0.8).endswith("calibrated on validation for 80% precision)")
    assert deferral_note({"test_answered_fraction": 0.0, "test_accuracy": 0.5}, 0.8925, 0.95) == (
        "note: the model defers every test input (`out_of_scope`, the tools' `defer_to_llm`): no confidence level "
        "was 95% precise on validation; its top answer is right for 50.0% of the test inputs. More examples per "
        "label, or labels that are easier to tell apart, let it answer more; so does a lower --abstain-precision "
        "(now 0.95; 0 never defers), its answers less often right: the same command with it exports this run again")
    assert "it answers only 25.0% of them, those of confidence 0.700 or more" in deferral_note(
        {"test_answered_fraction": 0.25, "test_accuracy": 0.6}, 0.7, 0.95)
    assert deferral_note({"test_answered_fraction": 0.58, "test_answered_accuracy": 1.0, "test_accuracy": 1.0},
                         0.892, 0.95) == ("note: the model defers 42.0% of the test inputs (confidence below 0.892: "
                                    "`out_of_scope`, the tools' `defer_to_llm`) and answers the rest, 100.0% of them "
                                    "right; the accuracy above is its top answer's on every input")
    assert deferral_note({"test_answered_fraction": 1.0, "test_accuracy": 0.9}, 0.5, 0.95) is None
    assert deferral_note({"test_accuracy": 0.9}, 0.5, 0.95) is None  # an out-of-scope label instead of a threshold
    # the int8 step the server runs is what the note reads where it is served: it answers fewer here
    served = {"test_answered_fraction": 0.55, "test_answered_accuracy": 0.9, "test_accuracy": 0.8,
              "int8_test_answered_fraction": 0.45, "int8_test_accuracy": 0.78}
    assert deferral_note(served, 0.7, 0.95).startswith("note: the model defers 45.0% of the test inputs")
    assert "it answers only 45.0% of them" in deferral_note(served, 0.7, 0.95, int8_served=True)
    assert "right for 78.0% of the test inputs" in deferral_note(served, 0.7, 0.95, int8_served=True)


def test_a_threshold_below_which_validation_had_nothing_does_not_advise_a_lower_precision() -> None:
    """QA: 56 validation rows, all answered right: the threshold was the lowest confidence seen whatever precision
    was asked (0.8 gave 0.95's), and the note called its answers "80% right" beside "100% right" and advised a lower
    --abstain-precision, which changed nothing."""
    every_right = calibrate_abstain_threshold(np.array([0.99, 0.9, 0.8]), np.ones(3, dtype=bool), 0.8)
    assert (every_right.threshold, every_right.coverage) == (0.8, 1.0)
    note = deferral_note({"test_answered_fraction": 0.49, "test_accuracy": 0.67}, 0.8, 0.8, validation=every_right)
    assert "those of confidence 0.800 or more, the level at which its answers were 100% right on validation" in note
    assert "a lower --abstain-precision (now 0.8) changes nothing" in note
    assert "answers 100.0% of validation" not in note
    nothing_answered = deferral_note({"test_answered_fraction": 0.0, "test_accuracy": 0.67}, 0.8, 0.8,
                                     validation=every_right)
    assert nothing_answered.startswith("note: the model defers every test input")
    assert "no confidence level" not in nothing_answered
    # a lower precision is offered only where it answers more of validation
    half = calibrate_abstain_threshold(np.array([0.99, 0.9, 0.8, 0.7]), np.array([True, True, False, False]), 0.95)
    assert half.coverage_at_lower == ((0.9, 0.5), (0.8, 0.5)) and half.coverage == 0.5
    note = deferral_note({"test_answered_fraction": 0.3, "test_accuracy": 0.5}, 0.9, 0.95, validation=half)
    assert "(now 0.95; 0 never defers)" in note


def test_a_model_trained_on_its_validation_split_gets_no_abstain_threshold() -> None:
    tokens = np.array([[0, 6]] * 10 + [[1, 1]] * 4)
    targets = np.array([0] * 10 + [1, 1, 0, 0])
    thresholds = calibrate_on(confidence_step, EncodedSet(tokens, targets), ["a", "b", "c"], None,
                              abstain_precision=0.0)
    assert thresholds.out_of_scope is None and thresholds.abstain is None


def test_grids_have_no_out_of_scope_threshold() -> None:
    targets = np.array([[1, 2, 3, 4]] * 2, dtype=np.int64)
    thresholds = calibrate_on(copy_step, EncodedSet(targets, targets), GRID_LABELS, None, task="grid")
    assert thresholds.out_of_scope is None


def test_the_halting_curve_trades_steps_for_accuracy_as_the_threshold_sweeps() -> None:
    # two steps; examples 1 and 3 are wrong after step 1 and right after step 2, and only those two are unsure
    trace = metrics.Trace(
        predictions=np.array([[0, 0, 1, 0], [0, 1, 1, 1]]),
        confidence=np.ones((2, 4)),
        halt_logits=np.array([[3.0, -3.0, 3.0, -3.0], [3.0, 3.0, 3.0, 3.0]]),
    )
    targets = np.array([0, 1, 1, 1])
    curve = {p["threshold"]: (p["accuracy"], p["mean_steps"]) for p in metrics.halting_curve(trace, targets)}
    assert list(curve) == sorted(metrics.CURVE_THRESHOLDS)
    assert curve[0.05] == (1.0, 1.5)  # sigmoid(-3) = 0.047: the unsure two go on, and step 2 fixes them
    assert curve[0.9] == (1.0, 1.5)
    assert curve[0.999] == (1.0, 2.0)  # sigmoid(3) = 0.953: every example runs both steps
    low = metrics.halting_curve(trace, targets, min_steps=2)
    assert {(p["accuracy"], p["mean_steps"]) for p in low} == {(1.0, 2.0)}


GRID_METRICS = {"test_accuracy": 0.42, "test_halting_accuracy": 0.41333, "test_halting_mean_steps": 5.2,
                "test_cell_accuracy": 0.913, "int8_test_accuracy": 0.4, "int8_test_halting_accuracy": 0.39,
                "int8_test_cell_accuracy": 0.9}


def test_a_grid_fit_ends_with_its_exact_puzzles_cells_and_halting() -> None:
    assert grid_result(GRID_METRICS, int8_served=True, max_steps=16) == (
        "40.00% of the test puzzles solved exactly (the int8 step the server runs; 90.0% of their cells right); "
        "with learned halting 39.00% in 5.2 of 16 steps on average")
    assert grid_result(GRID_METRICS, int8_served=False, max_steps=16).startswith(
        "42.00% of the test puzzles solved exactly (91.3% of their cells right); with learned halting 41.33%")
    unsolved = {**GRID_METRICS, "int8_test_accuracy": 0.0}
    assert grid_result(unsolved, int8_served=True, max_steps=16).endswith(
        ": none solved yet; a grid model learns the rules over tens of minutes of training (the grid preset's "
        "default budget is 90 min)")
    assert grid_result({"test_accuracy": 0.9, "baseline_test_accuracy": 0.8}, int8_served=False, max_steps=1) is None
    blanks = {**GRID_METRICS, "int8_test_blank_cell_accuracy": 0.81}
    assert "(the int8 step the server runs; 90.0% of their cells right, 81.0% of the blank ones)" in grid_result(
        blanks, int8_served=True, max_steps=16)


def test_test_figures_that_leave_labels_out_say_so() -> None:
    """A file whose rare labels the test rows miss scored 100 % on its common label alone, without a word."""
    assert label_coverage({"test_accuracy": 1.0, "test_labels": 3.0}, 5) == (
        "the test rows are of 3 of the 5 labels: these figures say nothing of the other 2 (a test file with rows "
        "of every label, --test FILE, would)")
    assert label_coverage({"test_accuracy": 0.9, "test_labels": 5.0}, 5) is None
    assert label_coverage({"test_accuracy": 0.9}, 5) is None  # a bundle from before the count


def test_a_threshold_that_answers_little_tells_what_lower_precisions_answer_and_when_labels_disagree() -> None:
    """QA: a file with 15% of its labels wrong (a clean test file) got a threshold that deferred 98% of the test
    inputs, its top answer right for 96.6%; the note blamed too few examples per label and gave no alternative."""
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 1000)
    correct = rng.random(1000) < 0.79  # wrong labels: right or wrong whatever the confidence
    validation = calibrate_abstain_threshold(confidence, correct, 0.95)
    assert validation.accuracy == correct.mean() and validation.coverage < 0.05
    (at_90, answered_90), (at_80, answered_80) = validation.coverage_at_lower
    assert (at_90, at_80) == (0.9, 0.8) and answered_90 < answered_80
    restored = AbstainCalibration.from_json(json.loads(json.dumps(dataclasses.asdict(validation))))
    assert restored == validation  # as the fit reads it back from evaluation.json
    metrics = {"test_answered_fraction": 0.019, "test_accuracy": 0.966}
    note = deferral_note(metrics, validation.threshold, 0.95, validation=validation)
    assert f"Its top answer was right for {100 * correct.mean():.1f}% of the validation rows" in note
    assert "the training file's labels may disagree with the test file's" in note
    assert answered_90 == validation.coverage  # 0.9 answers no more than 0.95 here: not offered
    assert (f"a lower --abstain-precision (now 0.95; 0.8 answers {100 * answered_80:.1f}% of validation; 0 never "
            "defers)") in note
    alike = deferral_note({"test_answered_fraction": 0.019, "test_accuracy": 0.8}, 0.9, 0.95, validation=validation)
    assert "More examples per label" in alike and "may disagree" not in alike  # test as hard as validation


def test_a_threshold_set_on_few_validation_answers_is_told_with_its_precisions_range() -> None:
    """QA: a few-shot file's threshold, set for 95% on 40 validation rows, answered 91.6% right on test, unsaid."""
    confidence = np.linspace(0.2, 1.0, 40)
    correct = np.ones(40, dtype=bool)
    correct[[0, 1, 5]] = False  # the two least confident and one other
    validation = calibrate_abstain_threshold(confidence, correct, 0.95)
    assert validation.rows == 40 and validation.precision_range() is not None
    answered, low, high = validation.precision_range()
    assert answered == round(validation.coverage * 40) and low < 0.95 * validation.precision < high
    note = deferral_note({"test_answered_fraction": 0.96, "test_answered_accuracy": 0.916, "test_accuracy": 0.89},
                         validation.threshold, 0.95, validation=validation)
    told = (f"91.6% of them right (its threshold was set on {answered} validation answers, "
            f"{100 * validation.precision:.0f}% right, which bound new inputs' only to "
            f"{100 * low:.0f}-{100 * high:.0f}%")
    assert told in note
    plenty = calibrate_abstain_threshold(np.linspace(0.2, 1.0, 1000), np.ones(1000, dtype=bool), 0.95)
    assert plenty.precision_range() is None and "bound" not in deferral_note(
        {"test_answered_fraction": 0.96, "test_answered_accuracy": 0.99, "test_accuracy": 0.95}, 0.2, 0.95,
        validation=plenty)
