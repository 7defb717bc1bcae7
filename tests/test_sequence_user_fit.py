"""`trm-train fit --task sequence`: a user's source,target file becomes a served sequence bundle."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.cli import main
from trainer.sequence.bundle import bundle_halting, sequence_manifest, sequence_model_from_bundle, write_sequence_bundle
from trainer.sequence.evaluate import predict, score
from trainer.sequence.pairs import Pair
from trainer.sequence.user_fit import SPOKEN_NUMBERS_MIN_ROWS, split_pairs, spoken_numbers_checks, starting_point
from trainer.testing import make_random_sequence_bundle, random_sequence_model
from trm_bundle.manifest import Training, load_bundle
from trm_bundle.spoken_numbers import numbers_agree
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings

DICTATION = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "code-dictation"
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"])
        writer.writerows(rows)
    return path


def test_a_source_target_file_becomes_a_bundle_with_its_held_out_scores(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    rows = [(f"x equals {NUMBERS[i % 10]}", f"x = {i % 10}") for i in range(40)]
    data = _write(tmp_path / "assign.csv", rows)
    code = main(["fit", "--task", "sequence", "--train", str(data), "--out", str(tmp_path / "bundles"),
                 "--run-dir", str(tmp_path / "runs"), "--time-budget", "0.05", "--batch-size", "8",
                 "--bundle-version", "1.2.0", "--start-from", "scratch"])
    assert code == 0
    out = capsys.readouterr().out
    assert "assign: note: a budget of 0.05 min trains a few hundred steps at most: expect a weak model" in out
    printed, _ = json.JSONDecoder().raw_decode(out[out.rindex('{\n "bundle"'):])
    held_out = f"held-out exact match {100 * printed['metrics']['test_exact_match']:.2f}%"
    assert out.splitlines()[-1].startswith("assign: bundle ") and held_out in out.splitlines()[-1]
    bundle = load_bundle(Path(printed["bundle"]))
    assert bundle.manifest.task == "sequence" and (bundle.manifest.name, bundle.manifest.version) == ("assign", "1.2.0")
    assert set(printed["metrics"]) == {"test_exact_match", "test_cer", "test_mean_steps_per_token",
                                       "test_best_fixed_steps", "test_best_fixed_exact"}
    evaluation = json.loads((bundle.path / "evaluation.json").read_text())
    assert evaluation["scores"]["test"]["count"] == 4  # 10% of 40 rows held out
    report = (bundle.path / "REPORT.md").read_text()
    assert report.startswith("# assign 1.2.0\n")
    assert "Held-out exact match" in report and "one refinement step per character" in report
    shipped = evaluation["shipped_step"]  # the best-scored of the validation scores, the later of equals
    scored = [(entry["exact_match"], -entry["cer"], entry["step"]) for entry in evaluation["history"]]
    assert shipped == max(scored)[2] and f"- Weights: the EMA weights of step {shipped:,}, the best of" in report
    assert "4 validation rows" in report  # a tenth of the 36 rows left after the test share
    test = evaluation["scores"]["test"]  # QA: the report showed the first rows only, all of them right
    wrong = round(test["count"] * (1 - test["exact_match"]))
    assert len(test["misses"]) == min(12, wrong) and all(expected != written for _, expected, written, _ in
                                                         test["misses"])
    assert f"## Misses ({len(test['misses'])} of {wrong} wrong answers" in report
    for source, _, written, confidence in test["misses"]:  # each with its confidence, and whether the flag catches it
        marked = confidence < bundle.manifest.sequence.unsure_below or not numbers_agree(source, written)
        flagged = ", marked unsure" if marked else ""
        assert f"`{written}` (confidence {confidence:.3f}{flagged})" in report
    assert bundle.manifest.sequence.unsure_below == test["unsure"]["unsure_below"]  # chosen on the validation rows
    assert test["unsure"]["rows"] == 4 and "- Unsure answers: " in report
    assert bundle.manifest.sequence.checks == ("spoken_numbers",)  # every training row says its number in words
    assert re.search(r"- Spoken-numbers check: on \(each of the (\d+) training rows passes it: the \1 that write "
                     r"digits", report)
    assert test["unsure"]["flagged"] >= test["unsure"]["numbers_disagree"]  # the server's flags, both counted
    assert bundle.manifest.recursion.N_sup == 1  # the preset's measured choice (docs/TRAINING.md)
    assert "anytime.png" not in bundle.manifest.files and "## Adaptive compute" not in report  # one step: no curve
    assert bundle.manifest.input.max_chars == max(len(source) for source, _ in rows)
    assert load_model(bundle.path, LoadOptions(SessionSettings())).warm_step_s > 0

    # re-exported as it is (tests/test_sequence_reexport.py has the rest)
    assert main(["export", "--from-bundle", str(bundle.path), "--out", str(tmp_path / "x")]) == 0
    assert load_bundle(tmp_path / "x" / "assign").manifest.version == bundle.manifest.version

    # `eval` scores the bundle on a file as its fit scored the held-out rows; a source longer than the bundle
    # reads, which the server refuses, is left out and counted
    held_out_rows = [(source, target) for source, target, _ in test["examples"]]
    too_long = ("x equals " + "nine " * 20, "x = 9")
    capsys.readouterr()
    assert main(["eval", "--bundle", str(bundle.path), "--data",
                 str(_write(tmp_path / "new.csv", [*held_out_rows, too_long]))]) == 0
    captured = capsys.readouterr()
    rescored = json.loads(captured.out)
    assert (rescored["bundle"], rescored["version"], rescored["left_out"]) == (
        "assign", "1.2.0", {"rows": 1, "longer_than": bundle.manifest.input.max_chars})
    assert rescored["results"]["test"]["exact_match"] == test["exact_match"]
    assert rescored["results"]["test"]["examples"] == [list(row) for row in test["examples"]]
    assert rescored["results"]["test"]["unsure"]["unsure_below"] == bundle.manifest.sequence.unsure_below
    assert (f"1 row left out: their source is longer than the {bundle.manifest.input.max_chars} characters the "
            "model reads") in captured.err
    for flags, told in ((["--data", str(tmp_path)], "give --data a file of source,target rows, not a folder"),
                        (["--data", str(data), "--text-column", "source"], "leave out --text-column")):
        assert main(["eval", "--bundle", str(bundle.path), *flags]) == 2
        assert told in capsys.readouterr().err

    # export says that it does not take a sequence model's run (not a traceback)
    assert main(["export", "--checkpoint", str(tmp_path / "runs" / "assign"), "--out", str(tmp_path / "y")]) == 2
    assert "a sequence model's run: its fit (trm-train fit --task sequence) exports it" in capsys.readouterr().err


def test_the_time_budget_is_the_whole_command_s_held_out_decoding_included(tmp_path: Path) -> None:
    """QA: `--time-budget 15` trained 15 minutes and the command took 15.6: the held-out decoding (the halting
    curves decode the test rows 25 times over) and the export came after the budget."""
    torch.set_num_threads(1)
    rows = [(f"{name} equals {NUMBERS[i % 10]}", f"{name} = {i % 10}") for i in range(40) for name in ("x", "y")]
    data = _write(tmp_path / "assign.csv", rows)
    started = time.monotonic() - 5  # as if the command's imports had taken 5 s: the budget counts from there
    assert main(["fit", "--train", str(data), "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"),
                 "--time-budget", "0.5", "--batch-size", "8"], started=started) == 0
    wall_s = time.monotonic() - started
    training = load_bundle(tmp_path / "bundles" / "assign").manifest.training
    assert training.wall_time_s <= wall_s <= 30  # the report's wall time is the command's
    assert 15 <= training.train_time_s <= wall_s - 1  # the loop left room for what follows it


def test_rows_shorter_than_the_export_examples_still_give_a_bundle(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    rows = [(NUMBERS[i % 10][:3], str(i % 10)) for i in range(20)]  # sources of 3 characters, targets of 1
    data = _write(tmp_path / "digits.csv", rows)
    assert main(["fit", "--task", "sequence", "--train", str(data), "--out", str(tmp_path / "bundles"),
                 "--run-dir", str(tmp_path / "runs"), "--time-budget", "0.02", "--batch-size", "8"]) == 0
    bundle = load_bundle(tmp_path / "bundles" / "digits")
    assert bundle.manifest.input.max_chars == 3
    assert bundle.manifest.sequence.checks == ()  # too few rows write digits to try it (and "zer" says none)
    loaded = load_model(bundle.path, LoadOptions(SessionSettings()))
    for length in (1, 2, 3):  # every length the server lets through, not only the one traced
        assert loaded.session.encode([np.full(length, 5, dtype=np.int64)])[0].keys.shape[2] == length


@pytest.mark.parametrize(("row", "told"), [
    (("x equals one", "x = \u00bd"), "assign.csv:3: target has characters outside printable ASCII"),
    (("", "x = 1"), "assign.csv:3: empty source"),
])
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, capsys, row, told) -> None:
    data = _write(tmp_path / "assign.csv", [("x equals two", "x = 2"), row])
    assert main(["fit", "--task", "sequence", "--train", str(data), "--out", str(tmp_path)]) == 2
    assert told in capsys.readouterr().err


def test_flags_of_other_tasks_are_refused_by_name(tmp_path: Path, capsys) -> None:
    assert main(["fit", "--task", "sequence", "--train", "x.csv", "--preset", "short-text"]) == 2
    assert "--preset does not apply to --task sequence" in capsys.readouterr().err


def test_a_fit_of_an_edited_file_starts_over_and_the_same_file_resumes(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    rows = [(f"x equals {NUMBERS[i % 10]}", f"x = {i % 10}") for i in range(20)]
    data = _write(tmp_path / "assign.csv", rows)
    fit = ["fit", "--train", str(data), "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"),
           "--time-budget", "0.02", "--batch-size", "8"]

    def steps() -> int:
        return load_bundle(tmp_path / "bundles" / "assign").manifest.require_training().optimizer_steps

    assert main(fit) == 0
    trained = steps()
    assert main(fit) == 0  # the same file: resumed, and its time had ended it, so exported again as it was
    out = capsys.readouterr().out
    assert f"resumed from step {trained} (" in out and steps() == trained
    assert "(the run had ended: its weights are exported again; --restart trains anew)" in out
    _write(data, [*rows, ("y equals two", "y = 2")])
    assert main(fit) == 0
    out = capsys.readouterr().out
    assert "holds a run of other data; starting over" in out and "resumed from step" not in out


def test_a_fit_of_another_file_of_the_same_name_does_not_replace_its_bundle(tmp_path: Path, capsys) -> None:
    """QA: `fit --train shell.csv` then `fit --train shell.jsonl` replaced bundles/shell without a word (a text fit
    refuses): the check read the text bundles' `config.data`, where a sequence bundle records `config.train`."""
    torch.set_num_threads(1)
    rows = [(f"x equals {NUMBERS[i % 10]}", f"x = {i % 10}") for i in range(20)]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    first, other = (_write(tmp_path / folder / "assign.csv", rows) for folder in ("a", "b"))
    out = tmp_path / "bundles"
    fit = ["--out", str(out), "--run-dir", str(tmp_path / "runs"), "--time-budget", "0.02", "--batch-size", "8"]
    assert main(["fit", "--train", str(first), *fit]) == 0
    fitted = (out / "assign" / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(["fit", "--train", str(other), *fit]) == 2
    assert (f"{out / 'assign'} holds the model fitted on {first}, another file than {other}"
            in capsys.readouterr().err)
    assert (out / "assign" / "manifest.json").read_bytes() == fitted


def test_copies_of_a_source_stay_on_one_side_of_each_split_and_a_test_files_seen_rows_are_named() -> None:
    """QA: 30 rows repeated 10 times had all 30 held-out rows in training too, and the score counted them."""
    from trainer.sequence.pairs import Pair
    from trainer.sequence.user_fit import split_pairs, split_sentence

    pairs = [Pair(f"number {i}", str(i), i + 2) for i in range(30)] * 10
    training, validation, held_out = split_pairs(pairs, None, seed=0)
    sources = [{p.source for p in rows} for rows in (training, validation, held_out)]
    assert all(sources) and not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    assert len(held_out) == 30 and len(validation) == 30  # a tenth of the rows, then of the rest, in whole groups
    unique = [Pair(f"number {i}", str(i), i + 2) for i in range(300)]
    order = np.random.default_rng(0).permutation(300)  # without copies: the first rows of a shuffle, as before
    assert [p.source for p in split_pairs(unique, None, seed=0)[2]] == [unique[i].source for i in sorted(order[:30])]
    test = [*unique[:5], Pair("something new", "x", 7)]
    training, validation, tested = split_pairs(unique, test, seed=0)
    assert len(validation) == 30 and tested == test
    assert sum(p in training for p in test) == 4  # one of the 5 is a validation row
    assert split_sentence(training, validation, tested, test_file=True) == (
        "270 training rows, 30 validation, the test file's 6 rows (4 of them with a source the training rows have "
        "too: the test figures count what the model saw)")
    assert split_pairs(unique[:1] * 3, test, seed=0)[1] == []  # one source: nothing to validate on, all to train
    # a source given two targets (a probe's dates, written two ways) is named: the model learns one of them
    ambiguous = [*unique[:20], Pair("number 3", "three", 40), Pair("number 5", "5.0", 41)]
    training, validation, tested = split_pairs(ambiguous, None, seed=0)
    assert split_sentence(training, validation, tested, test_file=False).endswith(
        "; note: 2 sources of the file have more than one target ('number 3': '3', 'three'): the model learns one "
        "way to write each, so write each source's target one way")
    assert "more than one target" not in split_sentence(*split_pairs(unique, None, seed=0), test_file=False)
    # QA: `source, target` / `three, 3` kept a space before every target, which the model then learned to write
    spaced = [Pair(f"number {i}", f" {i}", i + 2) for i in range(20)]
    assert split_sentence(*split_pairs(spaced, None, seed=0), test_file=False).endswith(
        "; note: 20 targets begin or end with white space (' 0'), which the model learns to write: remove it if it "
        "is not part of the answer (a space after each comma of a CSV file, say)")
    assert "white space" not in split_sentence(*split_pairs(unique, None, seed=0), test_file=False)


def test_ctrl_c_during_a_sequence_fit_says_where_its_checkpoint_is(tmp_path: Path) -> None:
    """QA: the line read "trm-train: " and nothing more. Its progress lines reach a file as they are printed (they
    came at the end, Python's buffer of a file or pipe, e.g. `| tee fit.log`), with the minutes of the budget."""
    import subprocess
    import sys

    from test_trainer_fit import _interrupted_once

    data = _write(tmp_path / "assign.csv", [(f"x equals {NUMBERS[i % 10]}", f"x = {i % 10}") for i in range(40)])
    log = tmp_path / "fit.log"
    with log.open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainer", "fit", "--train", str(data), "--out", str(tmp_path / "bundles"),
             "--run-dir", str(tmp_path / "runs"), "--time-budget", "5", "--batch-size", "8", "--start-from", "scratch"],
            stdout=stdout, stderr=subprocess.PIPE, text=True)
        _, err = _interrupted_once(process, lambda: "\nstep 100 " in log.read_text(), "first progress line", 300)
    assert process.returncode == 130
    assert re.fullmatch(r"trm-train: stopped at step \d+; checkpoint saved to \S+: the same command resumes from it\n",
                        err), err
    # the loop's minutes: the budget's, less what comes before and after the loop
    minutes = re.search(r"^step 100 \d+\.\d of (\d\.\d+) min lines 800 loss ", log.read_text(), re.MULTILINE)
    assert minutes and 4.5 < float(minutes.group(1)) < 5


def test_the_unsure_line_of_a_report_when_nothing_validates_or_everything_is_flagged() -> None:
    """QA: a file too small for validation rows read "no threshold made more right calls on the 0 validation rows",
    and a model that flagged every test row wrote "the 0 it keeps are nan% exact" (NaN in evaluation.json)."""
    from trainer.sequence.evaluate import unsure_figures
    from trainer.sequence.user_fit import unsure_sentence

    assert unsure_sentence(unsure_figures([0.5], [True], 0.0), 0) == (
        "never flagged (no validation rows to choose a threshold on)")
    everything = unsure_figures([0.1, 0.2], [False, False], 0.3)
    assert everything["kept_exact_match"] is None and "NaN" not in json.dumps(everything)
    assert unsure_sentence(everything, 20).endswith("on the test rows it flags 2 answers, 2 of them wrong (of 2 "
                                                    "wrong answers), and it keeps none")
    near_one = unsure_figures([0.5, 0.99995], [False, True], 0.9999)  # QA: "below confidence 1": every answer
    assert unsure_sentence(near_one, 20).startswith("below confidence 0.9999 (chosen on 20 validation rows)")


def test_the_spoken_numbers_check_is_on_only_where_every_training_row_says_its_numbers() -> None:
    said = [Pair(f"x equals {NUMBERS[i % 10]}", f"x = {i % 10}", i + 2) for i in range(SPOKEN_NUMBERS_MIN_ROWS)]
    assert spoken_numbers_checks(said)[0] == ("spoken_numbers",)
    checks, sentence = spoken_numbers_checks(said[:-1])
    assert checks == () and sentence.startswith(f"off (19 training rows write digits; it is tried on "
                                                f"{SPOKEN_NUMBERS_MIN_ROWS} or more")
    translated = [*said, Pair("x vaut sept", "x = 7", 99)]  # another language: right answers would be flagged
    checks, sentence = spoken_numbers_checks(translated)
    assert checks == ()
    assert "1 of the 21 training rows fail it, e.g. `x vaut sept` -> `x = 7`" in sentence
    checks, sentence = spoken_numbers_checks([*said, Pair("return none", "return None", 99)])
    assert checks == ("spoken_numbers",)
    assert sentence.startswith("on (each of the 21 training rows passes it: the 20 that write digits say their numbers")
    # QA: shell commands, whose "for" and "to" are no numbers: 46 of 113 right answers were flagged
    shell = [*said, Pair("search for admin in todo dot txt", "grep -n admin todo.txt", 99)]
    checks, sentence = spoken_numbers_checks(shell)
    assert checks == ()
    assert ("1 of the 21 training rows fail it, e.g. `search for admin in todo dot txt` -> `grep -n admin todo.txt`"
            in sentence)


def test_a_fit_starts_from_the_packaged_dictation_model_and_ships_nothing_below_its_start(tmp_path: Path,
                                                                                          capsys) -> None:
    """Without --start-from a sequence fit trains the packaged code-dictation's weights, model and halting rule;
    the start is scored on the validation rows first, so the shipped weights are never below it there."""
    torch.set_num_threads(1)
    rows = [(f"{name} equals {NUMBERS[i % 10]}", f"{name} = {i % 10}") for i in range(10) for name in ("x", "y", "z")]
    data = _write(tmp_path / "assign.csv", rows)
    fit = ["fit", "--train", str(data), "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"),
           "--time-budget", "0.02", "--batch-size", "8"]
    assert main(fit) == 0
    out = capsys.readouterr().out
    assert "min, starting from code-dictation " in out
    start, bundle = load_bundle(DICTATION).manifest, load_bundle(tmp_path / "bundles" / "assign")
    manifest = bundle.manifest
    assert manifest.require_training().model_config == start.require_training().model_config
    assert manifest.recursion.N_sup == start.recursion.N_sup > 1
    assert (manifest.halt_threshold, manifest.sequence.halt_when_unchanged) == (start.halt_threshold, True)
    assert manifest.require_training().config["depth"] == start.require_training().config["depth"]
    assert manifest.input.max_chars == max(len(source) for source, _ in rows)

    evaluation = json.loads((bundle.path / "evaluation.json").read_text())
    first = evaluation["history"][0]  # the start's own weights, scored before the first step
    assert first["step"] == 0 and first["count"] == 3
    pairs = [Pair(source, target, line) for line, (source, target) in enumerate(rows, 2)]
    _, validation, _ = split_pairs(pairs, None, 0)  # the fit's seeded split
    assert first["exact_match"] == score(predict(sequence_model_from_bundle(DICTATION), [p.source for p in validation],
                                                 halting=bundle_halting(DICTATION)).texts,
                                         [p.target for p in validation])["exact_match"]
    best = max((entry["exact_match"], -entry["cer"], entry["step"]) for entry in evaluation["history"])
    assert evaluation["shipped_step"] == best[2]  # never below the start on the validation rows
    report = (bundle.path / "REPORT.md").read_text()
    assert f"- Started from: the weights, model and halting rule of code-dictation {start.version}" in report
    fixed = evaluation["scores"]["fixed_steps"]
    assert [point["steps"] for point in fixed] == [1, 2, 3, 4] and "steps per character at its halting" in report
    assert "anytime.png" in manifest.files and "![anytime](anytime.png)" in report  # QA: N_sup 4, and no plot
    assert (bundle.path / "anytime.png").read_bytes().startswith(b"\x89PNG")
    assert load_model(bundle.path, LoadOptions(SessionSettings())).warm_step_s > 0

    assert main([*fit, "--start-from", "scratch"]) == 0  # the same file, a fresh model: that run is not resumed
    assert "model sizes and model settings; starting over" in capsys.readouterr().out


def test_the_loops_scores_read_answers_no_longer_than_the_longest_target_and_8_more(tmp_path: Path) -> None:
    """QA: long sources to short targets: the start's answers ran to 128 wrong characters, and scoring them before
    the first step took 2.3 of a 3.7-minute loop, which trained one step and shipped the start (0 % exact)."""
    torch.set_num_threads(1)
    names = ["ada", "bob", "cyd", "dee", "eve", "fay"]
    rows = [(f"please forward the minutes of the planning meeting on day {NUMBERS[i % 10]} to {name} at example dot "
             "com and copy the team", f"{name}@example.com") for i in range(6) for name in names]
    data = _write(tmp_path / "mail.csv", rows)
    assert main(["fit", "--train", str(data), "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"),
                 "--time-budget", "0.02", "--batch-size", "8"]) == 0
    first = json.loads((tmp_path / "bundles" / "mail" / "evaluation.json").read_text())["history"][0]
    pairs = [Pair(source, target, line) for line, (source, target) in enumerate(rows, 2)]
    _, validation, _ = split_pairs(pairs, None, 0)
    sources, targets = [p.source for p in validation], [p.target for p in validation]
    start, halting = sequence_model_from_bundle(DICTATION), bundle_halting(DICTATION)
    longest = max(len(target) for _, target in rows)
    whole = predict(start, sources, halting=halting).texts
    assert max(map(len, whole)) > longest + 8  # the start writes on past any target here
    capped = predict(start, sources, halting=halting, max_len=longest + 8).texts
    assert first["step"] == 0 and first["cer"] == pytest.approx(score(capped, targets)["cer"])


def test_a_start_that_cannot_be_trained_on_is_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    data = _write(tmp_path / "assign.csv", [(f"x equals {NUMBERS[i]}", f"x = {i}") for i in range(10)])
    fit = ["fit", "--train", str(data), "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs")]
    untrained, _ = make_random_sequence_bundle(tmp_path / "random")
    short = random_sequence_model(0, max_source_len=12)
    record = Training(model_config=short.cfg.to_dict(), config={}, data_sha256={}, command="", wall_time_s=0.0,
                      optimizer_steps=0, train_time_s=0.0, device="cpu", parameters=0)
    narrow = write_sequence_bundle(tmp_path / "narrow", short, sequence_manifest(
        short, name="narrow", version="1.0.0", description="", max_chars=12, training=record)).path
    intent = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "intent-clinc150"
    for start, told in ((intent, "intent-clinc150 is a text_classification model; give a sequence bundle's folder"),
                        (untrained, "records no training section (its model's shape), so no fit can start from it"),
                        (narrow, "its model reads at most 12 characters and writes at most"),
                        (tmp_path / "missing", "manifest.json")):
        assert main([*fit, "--start-from", str(start)]) == 2
        assert f"--start-from {start}: " in (err := capsys.readouterr().err) and told in err, err
    text = tmp_path / "labels.csv"
    text.write_text("text,label\n" + "book a table,restaurant\nplay jazz,music\n" * 10)
    assert main(["fit", "--train", str(text), "--start-from", str(DICTATION)]) == 2
    assert "--start-from applies to --task sequence" in capsys.readouterr().err


def test_a_fresh_models_weights_are_drawn_from_the_seed() -> None:
    """`--start-from scratch --seed N`: the same seed, the same initial weights, whatever ran before; another
    seed, others."""
    rows = [Pair("say one", "1", 2), Pair("say two", "2", 3)]

    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.rand(3)  # whatever drew from torch's generator before the fit
        return starting_point(None, rows, seed).model.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)
