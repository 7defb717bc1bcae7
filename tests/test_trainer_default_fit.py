"""`trm-train fit --train FILE --test FILE` with no other flag: the preset chosen for the data, the offline
teacher, the built-in baseline beside the TRM, an abstain threshold, the time budget, and the data errors."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from trainer_support import write_keyword_csv

from trainer.cli import main
from trainer.data.sudoku import GridSplit
from trainer.prepare import _puzzles_of_trained_solutions, _split_off, resolve_out_of_scope_label
from trainer.presets import MINILM_NOTICE, SHORT_TEXT, plan_fit, without_minilm


def fit(*args: str) -> int:
    return main(["fit", *args])


def test_a_default_fit_learns_and_reports_the_baseline_beside_it(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = keyword_data
    started = time.monotonic()
    code = fit("--train", str(train), "--test", str(test), "--out", str(tmp_path / "b"),
               "--run-dir", str(tmp_path / "runs"), "--time-budget", "2.5")
    wall_s = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 0
    bundle = tmp_path / "b" / "train"  # named after the training file
    manifest = json.loads((bundle / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["test_accuracy"] >= 0.95 and metrics["test_labels"] == 4  # the test rows are of every label
    assert metrics["baseline_test_accuracy"] >= 0.95  # one keyword decides the label: the baseline learns it too
    evaluation = json.loads((bundle / "evaluation.json").read_text())
    assert evaluation["baseline"]["accuracy"] == metrics["baseline_test_accuracy"]
    assert evaluation["baseline"]["test_rows"] == 100 and evaluation["baseline"]["train_rows"] == 360
    report = (bundle / "REPORT.md").read_text()
    # the verdict weighs the step the server runs: the int8 one where the bundle ships it
    assert manifest["onnx"]["int8"] == "model.int8.onnx"
    trm, baseline = 100 * metrics["int8_test_accuracy"], 100 * metrics["baseline_test_accuracy"]
    versus = f"TRM {trm:.2f}% (the int8 step the server runs), linear baseline {baseline:.2f}%"
    assert versus in report and out.rstrip().splitlines()[-1].startswith(f"train: {versus}")
    assert "these figures say nothing of the other" not in out + report
    labels = evaluation["results_int8"]["test"]["per_label"]  # each label's figures, and REPORT.md's table of them
    assert sum(figures["rows"] for figures in labels.values()) == 100 and len(labels) == 4
    assert "Labels on test (every label; recall: its rows answered with it" in report

    # the preset, the figures that chose it and the expected wall time come first
    assert out.startswith("Preset short-text") and "400 texts of median 5 tokens, 4 labels" in out
    assert "Expected wall time" in out
    config = manifest["training"]["config"]
    assert config["model"] == SHORT_TEXT.settings["model"] and config["teacher"]["embedding_init"]
    assert config["max_tokens"] == 8 and 0 < config["max_minutes"] < 2.5
    # the EMA weights that scored best on validation ship, among four evaluations and the run's end
    history = evaluation["training_history"]
    best = max(reversed(history), key=lambda entry: entry["val_last_step"])
    assert config["keep_best"] and history[-1]["step"] == manifest["training"]["optimizer_steps"]
    assert f"- weights: the EMA weights of step {best['step']:,}, the best of {len(history)} evaluations" in report
    timing = f"fit {wall_s:.1f} s, training {manifest['training']['train_time_s']} s of {config['max_minutes']} min"
    assert wall_s < 2.5 * 60, timing  # the whole fit within its budget
    assert manifest["training"]["train_time_s"] <= config["max_minutes"] * 60 + 5, timing

    # no out-of-scope label in the file: an abstain threshold, and what it does on the test file
    assert manifest["out_of_scope"]["label"] is None
    assert 0 < manifest["out_of_scope"]["threshold"] <= 1
    assert metrics["test_answered_fraction"] > 0.5 and metrics["test_answered_accuracy"] >= 0.95
    served = metrics["int8_test_answered_fraction"]  # the share the served step answers, beside fp32's
    assert f"- test (int8, as served): answers {100 * served:.2f}% of inputs" in report


def test_a_tiny_time_budget_ends_training_and_still_exports(keyword_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = keyword_data
    started = time.monotonic() - 45  # as if the command's imports had taken 45 s: the budget counts from there
    code = main(["fit", "--train", str(train), "--test", str(test), "--out", str(tmp_path / "b"),
                 "--run-dir", str(tmp_path / "runs"), "--time-budget", "2.2", "--set", "max_steps=1000000"],
                started=started)
    wall_s = time.monotonic() - started
    assert code == 0
    manifest = json.loads((tmp_path / "b" / "train" / "manifest.json").read_text())
    training = manifest["training"]
    assert training["optimizer_steps"] < 1000000
    budget_s = training["config"]["max_minutes"] * 60
    # the loop ends early by the evaluations after it at its last one's measured time: here 1 + 7 of 40 rows each
    assert budget_s - 5 <= training["train_time_s"] <= budget_s + 5
    # the loop timed itself to end with the budget, less the estimate of evaluating and exporting (about 6 s here),
    # not after the minutes the plan estimated (1.09, leaving about 40 s of the budget unused on a quiet machine)
    assert 2.2 * 60 - 25 <= wall_s <= 2.2 * 60 + 10


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_a_label_with_one_example_is_named_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_keyword_csv(tmp_path / "train.csv", 40, seed=0)
    with open(tmp_path / "train.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["book a table", "restaurant"])
    assert fit("--train", str(tmp_path / "train.csv"), "--out", str(tmp_path / "b")) == 2
    err = capsys.readouterr().err
    assert "'restaurant' has 1 example" in err and "at least 2 examples" in err
    assert not (tmp_path / "b").exists()


def test_a_grid_file_too_small_to_train_validate_and_test_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    puzzle = ".................1.....2.3......3.2...1.4......5....6..3......4.7..8...962...7..."
    solution = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"
    (tmp_path / "two.csv").write_text(f"question,answer\n{puzzle},{solution}\n" + f"{puzzle},{solution}\n")
    assert fit("--train", str(tmp_path / "two.csv"), "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path)) == 2
    assert "2 puzzle(s): a fit needs at least 3, to train on, to validate and to test (or give --test FILE)" in (
        capsys.readouterr().err)


def test_a_source_target_file_is_taken_as_sequence_data_without_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pairs.csv").write_text("source,target\nx equals one,x = 1\n")
    assert fit("--train", str(tmp_path / "pairs.csv"), "--preset", "short-text") == 2
    assert "--preset does not apply to --task sequence" in capsys.readouterr().err


def test_an_out_of_scope_label_must_be_a_label_of_the_data(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = keyword_data
    assert fit("--train", str(train), "--oos-label", "other", "--out", str(tmp_path / "b")) == 2
    assert "--oos-label 'other' is not a label of the training data" in capsys.readouterr().err


def test_a_class_named_none_is_out_of_scope_by_its_name_unless_no_label_is_named() -> None:
    labels = ["Banking", "None", "Tools"]
    assert resolve_out_of_scope_label(None, labels) == "None"
    assert resolve_out_of_scope_label("", labels) is None  # --oos-label '': "None" means "no action" here


def test_preset_flags_belong_to_a_fit_without_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "intent-clinc150.yaml"
    assert fit("--config", str(config), "--time-budget", "5", "--out", str(tmp_path)) == 2
    assert "a config sets everything" in capsys.readouterr().err
    assert fit("--out", str(tmp_path)) == 2
    assert "--train FILE" in capsys.readouterr().err


def test_without_the_teacher_installed_the_plan_says_so_and_keeps_the_tfidf_teacher(
    keyword_data: tuple[Path, Path]
) -> None:
    plan = plan_fit(keyword_data[0], teacher_installed=False)
    assert plan.description.endswith(MINILM_NOTICE)
    assert plan.settings["teacher"] == {"temperature": 2.0}  # nothing of MiniLM is left
    assert "augment_per_label" not in plan.settings  # no teacher to label variants
    assert plan.settings["vocab_size"] < SHORT_TEXT.text.max_vocab  # the data's own words only
    long_text = {"teacher": {"embedding_init": True, "soft_label_weight": 1.0, "soft_labels": "tfidf"}, "lr": 0.001}
    assert without_minilm(long_text) == {"teacher": {"soft_label_weight": 1.0, "soft_labels": "tfidf"}, "lr": 0.001}
    with_teacher = plan_fit(keyword_data[0])
    assert MINILM_NOTICE not in with_teacher.description
    assert with_teacher.settings["vocab_size"] == SHORT_TEXT.text.max_vocab  # the teacher's words fill it


def test_the_presets_command_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("short-text", "long-text", "grid")) and "15 min" in out


def test_a_grid_file_of_one_puzzle_repeated_is_refused_not_scored_on_its_training_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copies of a puzzle go to one side of each hold-out, so ten copies of one leave nothing to test on."""
    puzzle = ".................1.....2.3......3.2...1.4......5....6..3......4.7..8...962...7..."
    solution = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"
    (tmp_path / "ten.csv").write_text("question,answer\n" + f"{puzzle},{solution}\n" * 10)
    assert fit("--train", str(tmp_path / "ten.csv"), "--out", str(tmp_path / "b"), "--run-dir", str(tmp_path)) == 2
    assert "too few different puzzles to train on, validate and test: give more puzzles" in capsys.readouterr().err


SOLUTION = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"


def test_a_grid_files_puzzles_of_one_solution_are_held_out_together() -> None:
    """QA: 100 solutions of 15 puzzles each, held out by puzzle: every test and validation puzzle had its solution in
    training, from which the training stream draws puzzles afresh."""
    solution = np.array([int(c) for c in SOLUTION])
    rng = np.random.default_rng(0)
    solutions = [np.concatenate([[0], rng.permutation(9) + 1])[solution] for _ in range(20)]  # digits relabelled
    puzzles = [np.where(np.arange(81) % 5 == k, 0, grid) for grid in solutions for k in range(5)]
    grids = GridSplit(np.array(puzzles, dtype=np.uint8), np.repeat(np.array(solutions, dtype=np.uint8), 5, axis=0))
    kept, held = _split_off(grids, seed=0)
    assert len(held) >= 5 and len(kept) + len(held) == 100
    assert _puzzles_of_trained_solutions(kept, held) == 0
    assert _puzzles_of_trained_solutions(kept, kept.take(np.arange(3))) == 3  # a test file's repeats are counted


def test_a_task_the_file_does_not_hold_is_refused_before_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA: --task text on a grid file printed the grid plan, then a missing 'text' column."""
    puzzle = ".................1.....2.3......3.2...1.4......5....6..3......4.7..8...962...7..."
    solution = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"
    (tmp_path / "grids.csv").write_text(f"question,answer\n{puzzle},{solution}\n")
    assert fit("--train", str(tmp_path / "grids.csv"), "--task", "text", "--out", str(tmp_path / "b")) == 2
    captured = capsys.readouterr()
    assert "Preset" not in captured.out
    assert (f"--task text, but {tmp_path / 'grids.csv'} holds grid data (question,answer columns): drop --task, or "
            "give a file of text,label columns") in captured.err
