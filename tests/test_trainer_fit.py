"""End to end on a user's CSV: `trm-train fit` learns a small task, `eval` measures it, a killed run resumes."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import torch
from trainer_support import KEYWORDS, TINY_MODEL

import trainer.cli as cli
import trainer.evaluate
import trainer.export
import trainer.fit
from trainer.checkpoint_file import NoRoomForCheckpoint
from trainer.cli import _fit_config, build_parser, check_bundle_folder, main
from trainer.config import TrainConfig
from trainer.export import torch_model_from_bundle
from trainer.fit import export_evaluations
from trainer.prepare import Prepared, text_splits
from trainer.report import write_report
from trainer.train import run_differences
from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import is_model_name, load_bundle, model_name_from
from trm_service.config import DEFAULT_MODELS_DIR


@pytest.mark.parametrize("storage", ["fp32", "int8"])  # int8: the bundle stores its token table as int8 rows
def test_fit_learns_a_small_task_and_eval_reproduces_it(
    storage: str, keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = keyword_data
    started = time.monotonic()
    code = main([
        "fit", "--task", "text", "--data", str(train), "--test", str(test), "--name", "keywords",
        "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--max-steps", "150",
        "--batch-size", "32", "--threads", "1", *TINY_MODEL, "--set", f"model.embedding_storage={storage}",
        "--bundle-version", "2.1.0-rc1",
    ], started=started)
    took = time.monotonic() - started
    assert code == 0
    bundle = tmp_path / "bundles" / "keywords"
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the report's wall time is the command's, the export's evaluation included (all but writing the report)
    assert took - 2.0 <= manifest["training"]["wall_time_s"] <= took
    assert manifest["version"] == "2.1.0-rc1"
    assert (bundle / "REPORT.md").read_text().startswith("# keywords 2.1.0-rc1\n")
    evaluation = json.loads((bundle / "evaluation.json").read_text())
    rows = (evaluation["baseline"]["train_rows"], evaluation["validation_rows"], evaluation["baseline"]["test_rows"])
    assert sum(rows[:2]) == 400 and rows[2] == 100  # probe: REPORT.md gave the test rows alone
    assert f"- data: {rows[0]} training rows, {rows[1]} validation rows, 100 test rows\n" in (
        bundle / "REPORT.md").read_text()
    assert manifest["metrics"]["test_accuracy"] >= 0.95
    assert manifest["metrics"]["test_rows_trained_on"] == 0  # the keyword files share no text
    assert "the model trained on" not in (bundle / "REPORT.md").read_text()
    seen = dataclasses.replace(loaded := load_bundle(bundle).manifest,
                               metrics={**loaded.metrics, "test_rows_trained_on": 3})
    reported = write_report(tmp_path, seen, evaluation)["REPORT.md"].read_text()  # QA: REPORT.md said nothing
    assert ("- 3 test rows are inputs the model trained on (the tokenizer reads a training row's words in it): the "
            "test figures read high\n") in reported
    assert "- halting threshold (calibrated on validation): " in reported  # two steps: the threshold was chosen
    one_step = dataclasses.replace(seen, recursion=dataclasses.replace(seen.recursion, N_sup=1))
    assert (f"- halting threshold: {seen.halt_threshold} (one supervision step: nothing to halt, not calibrated)\n"
            in write_report(tmp_path, one_step, evaluation)["REPORT.md"].read_text())  # probe: "calibrated" before
    tables = {init.name: init.data_type for init in onnx.load(str(bundle / "model.onnx")).graph.initializer}
    stored_table = "embed.tokens.codes" if storage == "int8" else "embed.tokens.weight"
    assert tables[stored_table] == (onnx.TensorProto.INT8 if storage == "int8" else onnx.TensorProto.FLOAT)
    assert manifest["labels"] == sorted(KEYWORDS)
    assert {"REPORT.md", "anytime.png", "model.onnx", "tokenizer.json"} <= set(manifest["files"])
    evaluation = json.loads((bundle / "evaluation.json").read_text())  # int8 chosen on validation, test measured
    assert evaluation["int8_shipped"] == (evaluation["int8_validation_accuracy_loss"] <= 0.005)
    assert evaluation["int8_accuracy_loss"] == pytest.approx(
        manifest["metrics"]["test_accuracy"] - manifest["metrics"]["int8_test_accuracy"], abs=1e-5)

    capsys.readouterr()
    assert main(["eval", "--bundle", str(bundle), "--data", str(test)]) == 0
    report = json.loads(capsys.readouterr().out)["results"]["test"]
    assert report["examples"] == 100
    assert len(report["anytime_accuracy"]) == 2
    assert abs(report["accuracy"] - manifest["metrics"]["test_accuracy"]) <= 0.01
    assert {"halting", "best_fixed", "ece"} <= set(report)

    # re-exporting the bundle's own weights (after an exporter change) keeps its figures and training record
    # (with an ablation bundle beside it, here the bundle itself, whose figures go into REPORT.md)
    again_dir = str(tmp_path / "again")
    assert main(["export", "--from-bundle", str(bundle), "--out", again_dir, "--ablation", str(bundle)]) == 0
    again = json.loads((tmp_path / "again" / "keywords" / "manifest.json").read_text())
    report = (tmp_path / "again" / "keywords" / "REPORT.md").read_text()
    accuracy = f"{100 * manifest['metrics']['test_accuracy']:.2f}%"
    assert "## What recursion buys" in report and f"| test_accuracy | {accuracy} | {accuracy} |" in report
    assert 'No description given (`--set description="..."` sets one).' in report  # not an empty paragraph
    model_config = manifest["training"]["model_config"]
    reader_weights = model_config["reader_rows"] * model_config["num_outputs"]
    assert f"- parameters: {manifest['training']['parameters']:,}" + (
        f" (of which {reader_weights:,} in the linear reader's table)" if reader_weights else "") + "\n" in report
    assert again["metrics"] == pytest.approx(manifest["metrics"], abs=1e-4)
    assert again["training"]["command"] == manifest["training"]["command"] and again["version"] == "2.1.0-rc1"
    assert again["training"]["config"] == manifest["training"]["config"]  # how the weights were trained
    assert again["training"]["optimizer_steps"] == manifest["training"]["optimizer_steps"] == 150
    first, second = (torch_model_from_bundle(b)[0].state_dict() for b in (bundle, tmp_path / "again" / "keywords"))
    assert all(torch.equal(first[name], second[name]) for name in first)

    # an ablation already in a report can be kept for a retrained model: pass that bundle's evaluation.json
    kept = tmp_path / "again" / "keywords" / "evaluation.json"
    assert main(["export", "--from-bundle", str(bundle), "--out", str(tmp_path / "kept"), "--ablation", str(kept)]) == 0
    evaluation = json.loads((tmp_path / "kept" / "keywords" / "evaluation.json").read_text())
    assert evaluation["ablation"] == json.loads(kept.read_text())["ablation"]
    assert f"| test_accuracy | {accuracy} | {accuracy} |" in (tmp_path / "kept" / "keywords" / "REPORT.md").read_text()
    capsys.readouterr()
    no_ablation = ["--ablation", str(bundle / "evaluation.json")]
    assert main(["export", "--from-bundle", str(bundle), "--out", str(tmp_path / "none"), *no_ablation]) == 2
    assert "records no ablation" in capsys.readouterr().err

    # data recorded as a path relative to where the fit ran, and not found from here: the fix is named
    for source in (["--from-bundle", str(bundle)], ["--checkpoint", str(tmp_path / "runs" / "keywords")]):
        moved = [*source, "--out", str(tmp_path / "moved"), "--set", "data=moved/train.csv"]
        assert main(["export", *moved]) == 2
        assert capsys.readouterr().err == ("trm-train: data error: moved/train.csv: the data the model was trained on "
                                           "is not there (relative to the folder the fit ran in): run this in that "
                                           "folder, or give its path with --set data=PATH\n")


def test_the_console_counts_the_linear_readers_parameters_once_it_is_mixed_in(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two steps leave the TRM near chance, so the reader, which reads the keywords, is mixed in: the count
    printed before training is the TRM's; the bundle's, the reader's table included, follows the reader's line."""
    train, test = keyword_data
    assert main(["fit", "--task", "text", "--data", str(train), "--test", str(test), "--name", "keywords",
                 "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--max-steps", "2",
                 "--threads", "1", *TINY_MODEL]) == 0
    training = json.loads((tmp_path / "bundles" / "keywords" / "manifest.json").read_text())["training"]
    assert training["model_config"]["reader_rows"] > 0
    printed = capsys.readouterr().out
    reader_line = next(line for line in printed.splitlines() if "linear reader over" in line)
    assert "mixed in" in reader_line and reader_line.endswith(f"; {training['parameters']:,} parameters in all")
    assert "unknown word" not in printed  # every validation word is a training word


def test_the_abstain_precision_of_a_finished_fit_is_changed_by_exporting_it_again(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """QA: a 1,000-post fit deferred 99% of its test posts (95% precision on validation asked of an 82% model), and
    nothing but retraining on other data changed that."""
    train, test = keyword_data
    fit = ["fit", "--task", "text", "--data", str(train), "--test", str(test), "--name", "keywords", "--out",
           str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--max-steps", "8", "--threads", "1",
           "--set", "linear_reader=false", *TINY_MODEL]  # 8 steps: about half right, 5% of the test answered

    def manifest() -> dict:
        return json.loads((tmp_path / "bundles" / "keywords" / "manifest.json").read_text())

    monkeypatch.setattr(sys, "argv", ["trm-train", *fit])  # the command each run records
    assert main(fit) == 0
    strict = manifest()
    assert strict["out_of_scope"]["label"] is None and strict["training"]["config"]["abstain_precision"] == 0.95
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["trm-train", *fit, "--abstain-precision", "0.5"])
    assert main([*fit, "--abstain-precision", "0.5"]) == 0
    assert "(the run had ended: its weights are exported again" in capsys.readouterr().out
    lenient = manifest()
    assert lenient["training"]["optimizer_steps"] == strict["training"]["optimizer_steps"]
    assert lenient["out_of_scope"]["threshold"] < strict["out_of_scope"]["threshold"]
    assert lenient["metrics"]["test_answered_fraction"] > 2 * strict["metrics"]["test_answered_fraction"]
    assert lenient["metrics"]["test_accuracy"] == strict["metrics"]["test_accuracy"]  # the same weights
    # QA: the record named only the command that exported them again, not the one that trained them
    assert lenient["training"]["command"].startswith(f"{strict['training']['command']}; run again as: trm-train fit ")
    assert lenient["training"]["command"].endswith("--abstain-precision 0.5")
    assert main([*fit, "--abstain-precision", "0"]) == 0
    assert manifest()["out_of_scope"] is None  # never defers
    assert main([*fit, "--abstain-precision", "1.5"]) == 2
    assert "abstain_precision (the flag --abstain-precision) must lie between 0" in capsys.readouterr().err


def test_a_fit_whose_validation_words_are_mostly_unknown_says_so_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Texts of numbers only (even or odd): each number seen once, so unseen ones are all the unknown word."""
    rows = [(f"{n} {n + 2} {3 * n}", "odd" if n % 2 else "even") for n in range(1000, 1240, 3)]
    data = tmp_path / "numbers.csv"
    data.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    assert main(["fit", "--task", "text", "--data", str(data), "--out", str(tmp_path / "bundles"), "--run-dir",
                 str(tmp_path / "runs"), "--max-steps", "2", "--threads", "1", *TINY_MODEL]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "unknown word" in line)
    share = int(note.split("note: ")[1].split("%")[0])
    assert 60 <= share <= 100 and "numbers, codes and names" in note


def test_a_test_file_whose_words_are_mostly_unknown_is_named_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA: Russian and Arabic test files of phrasings the training file lacked left 23-25 % of their words unknown
    (word endings, attached prefixes), their validation rows far fewer: the note looked at validation only."""
    words = {"even": ["zero", "two", "four", "six"], "odd": ["one", "three", "five", "seven"]}
    rows = [(f"{a} {b}", label) for label, group in words.items() for a in group for b in group] * 3
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    test.write_text("text,label\nnull zwei,even\neins drei,odd\nzwei vier,even\nfunf sieben,odd\n")
    assert main(["fit", "--task", "text", "--data", str(train), "--test", str(test), "--out", str(tmp_path / "b"),
                 "--run-dir", str(tmp_path / "runs"), "--max-steps", "2", "--threads", "1", *TINY_MODEL]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if "unknown word" in line]
    assert len(notes) == 1 and "of the test file's words are not among the training texts' words" in notes[0]


def test_a_file_with_other_column_names_fits_and_evaluates_by_them(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON Lines as exported data sets write them: other field names, labels as class ids."""
    files = []
    for source in keyword_data:
        rows = list(csv.DictReader(source.open(newline="")))
        files.append(tmp_path / f"{source.stem}.jsonl")
        files[-1].write_text("".join(json.dumps({"utterance": row["text"], "intent": sorted(KEYWORDS).index(
            row["label"])}) + "\n" for row in rows))
    train, test = files
    code = main(["fit", "--train", str(train), "--test", str(test), "--text-column", "utterance", "--label-column",
                 "intent", "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--max-steps",
                 "150", "--batch-size", "32", "--threads", "1", *TINY_MODEL, "--set", "teacher.embedding_init=false"])
    assert code == 0
    assert "400 texts of median" in capsys.readouterr().out  # the plan read the named columns
    manifest = json.loads((tmp_path / "bundles" / "train" / "manifest.json").read_text())
    assert manifest["labels"] == ["0", "1", "2", "3"] and manifest["metrics"]["test_accuracy"] >= 0.95
    config = manifest["training"]["config"]
    assert (config["text_column"], config["label_column"]) == ("utterance", "intent")
    assert main(["eval", "--bundle", str(tmp_path / "bundles" / "train"), "--data", str(test)]) == 0  # its columns
    report = json.loads(capsys.readouterr().out)["results"]["test"]
    assert report["examples"] == 100 and report["accuracy"] == pytest.approx(manifest["metrics"]["test_accuracy"],
                                                                            abs=0.01)
    renamed = tmp_path / "renamed.csv"  # the same rows under yet other names: eval takes the flags fit took
    renamed.write_text("said,meant\n" + "".join(f'"{row["utterance"]}",{row["intent"]}\n'
                                                 for row in map(json.loads, test.read_text().splitlines())))
    assert main(["eval", "--bundle", str(tmp_path / "bundles" / "train"), "--data", str(renamed),
                 "--text-column", "said", "--label-column", "meant"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["test"]["accuracy"] == report["accuracy"]


def test_eval_leaves_out_the_rows_of_labels_the_model_never_saw_and_names_them(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older version scored on a newer version's test file (a label added) was refused whole."""
    from trainer.testing import make_random_bundle

    bundle = make_random_bundle(tmp_path, "text", labels=["open_file", "commit"])
    assert main(["eval", "--bundle", str(bundle), "--data", str(keyword_data[1])]) == 0  # 100 rows, 4 labels
    printed = capsys.readouterr()
    scored = json.loads(printed.out)
    assert scored["left_out"] == {"rows": 50, "labels": {"run_tests": 25, "undo": 25}}
    assert scored["results"]["test"]["examples"] == 50
    assert printed.err == ("trm-train eval: 50 rows of labels the model was not trained on left out (run_tests, "
                           "undo): it cannot answer them\n")
    cased = make_random_bundle(tmp_path / "cased", "text", labels=["open_file", "commit", "Run_tests", "undo"])
    assert main(["eval", "--bundle", str(cased), "--data", str(keyword_data[1])]) == 0  # QA: no hint of the case
    assert capsys.readouterr().err.endswith(
        "left out (run_tests): it cannot answer them (the training data writes 'Run_tests' for 'run_tests': they "
        "differ only in case)\n")
    other = make_random_bundle(tmp_path / "other", "text", labels=["push", "pull"])
    assert main(["eval", "--bundle", str(other), "--data", str(keyword_data[1])]) == 2
    assert "none of its labels is one the model was trained on" in capsys.readouterr().err
    numbered = make_random_bundle(tmp_path / "numbered", "text", labels=["0", "1"])  # QA: not told why
    as_floats = tmp_path / "floats.csv"
    as_floats.write_text("text,label\nopen it,0.0\ncommit it,1.0\n")
    assert main(["eval", "--bundle", str(numbered), "--data", str(as_floats)]) == 2
    assert ("none of its labels is one the model was trained on (0.0, 1.0) (the training data writes '0' for '0.0', "
            "'1' for '1.0': they write the same number)") in capsys.readouterr().err


def test_eval_refuses_int8_without_an_int8_step_and_a_split_of_a_file(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.testing import make_random_bundle

    bundle = make_random_bundle(tmp_path, "text", labels=KEYWORDS)
    assert not (bundle / "model.int8.onnx").exists()
    assert main(["eval", "--bundle", str(bundle), "--data", str(keyword_data[1]), "--int8"]) == 2
    assert "ships no int8 step (its REPORT.md says why): evaluate it without --int8" in capsys.readouterr().err
    assert main(["eval", "--bundle", str(bundle), "--data", str(keyword_data[1]), "--split", "train"]) == 2
    assert "a file (" in capsys.readouterr().err  # evaluated whole: --split would be ignored
    assert main(["eval", "--bundle", str(bundle), "--data", str(keyword_data[1])]) == 0
    assert main(["eval", "--bundle", str(bundle), "--test", str(keyword_data[1])]) == 0  # as fit names the file
    capsys.readouterr()
    tokenizer = json.loads((bundle / "tokenizer.json").read_text())  # QA: the server refused it, eval scored it
    tokenizer["padding"]["pad_id"] = 7
    (bundle / "tokenizer.json").write_text(json.dumps(tokenizer))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["tokenizer.json"] = sha256_of(bundle / "tokenizer.json")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert main(["eval", "--bundle", str(bundle), "--data", str(keyword_data[1])]) == 2
    assert "tokenizer.json: pads with id 7, but input.pad_id is 0" in capsys.readouterr().err


def _interrupted_once(process: subprocess.Popen[str], ready: Callable[[], bool], waiting_for: str,
                      wait_s: float, then_s: float = 0.0, sig: int = signal.SIGINT) -> tuple[str, str]:
    """Ctrl-C (or `sig`) `process` once `ready()` holds (and `then_s` seconds later); its stdout and stderr."""
    try:
        deadline = time.monotonic() + wait_s
        while not ready():
            assert time.monotonic() < deadline and process.poll() is None, f"no {waiting_for}"
            time.sleep(0.01)
        time.sleep(then_s)
        process.send_signal(sig)
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize(("sig", "told"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_while_the_libraries_import_ends_with_a_line_not_a_traceback(sig: int, told: str) -> None:
    """QA: a SIGTERM in the first second (a container stopped as it started) ended it silently, status 143."""
    process = subprocess.Popen([sys.executable, "-m", "trainer", "presets"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    def importing_torch() -> bool:
        return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()

    out, err = _interrupted_once(process, importing_torch, "import of torch", 60, sig=sig)
    assert (process.returncode, out, err) == (130, "", f"trm-train: interrupted ({told})\n")


def test_sigterm_outside_the_training_loop_ends_a_fit_as_ctrl_c_does(keyword_data: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    """Probe: a SIGTERM while the fit prepared its data, fitted its baseline or wrote its bundle ended it silently
    (status -15), and one during the bundle's writing left its staging folder behind."""
    log = tmp_path / "fit.out"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "trainer", "fit", "--train", str(keyword_data[0]), "--out",
                                    str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--time-budget",
                                    "1.5"], stdout=out, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while "Expected wall time" not in log.read_text():  # the plan is told; the data's preparation begins
                assert time.monotonic() < deadline and process.poll() is None, "no plan"
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130
    assert err.startswith("trm-train: ") and ("interrupted (SIGTERM)" in err or "stopped at step" in err)
    assert not list((tmp_path / "bundles").glob(".*"))  # no staging folder left


@pytest.mark.parametrize("limit_gib", [1.5, 2.0])
def test_an_address_space_limit_too_small_for_torch_is_refused_at_once(limit_gib: float) -> None:
    """Probe: under `ulimit -v` 1.5 GB a fit hung in OpenBLAS's allocator, deaf to Ctrl-C (1.25 GB: a MemoryError
    traceback). The least it runs in is refused at once; the limit a fit was measured to run at is not."""
    limit = int(limit_gib * 2**30)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    done = subprocess.run([sys.executable, "-m", "trainer", "presets"], capture_output=True, text=True, timeout=120,
                          preexec_fn=limited)
    if limit_gib == 2.0:
        assert done.returncode == 0, done.stderr
        return
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("trm-train: the address-space limit (ulimit -v) is 1.50 GiB; torch and its BLAS reserve "
                           "more address space than they use and need at least 2 GiB: raise it (ulimit -v unlimited), "
                           "or limit memory with a container's limit instead, which the fit plans for\n")


def test_without_the_trainers_libraries_it_says_to_install_them(tmp_path: Path) -> None:
    """`make serve` installs the server alone: trm-train there said ModuleNotFoundError in a traceback."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'torch\'", '
                                                    'name="torch")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "trainer", "presets"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("trm-train: the trainer's libraries are not installed (no module 'torch'): run `make "
                           "install` (or pip install -e '.[train]')\n")


def test_a_killed_run_resumes_from_its_last_checkpoint(keyword_data: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = keyword_data
    args = [
        sys.executable, "-m", "trainer", "fit", "--task", "text", "--data", str(train), "--name", "resume",
        "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--batch-size", "16",
        "--threads", "1", "--set", "checkpoint_every=5", *TINY_MODEL,
    ]
    checkpoint = tmp_path / "runs" / "resume" / "checkpoint.pt"
    process = subprocess.Popen([*args, "--max-steps", "100000"], stderr=subprocess.PIPE, text=True)
    # a second after the first checkpoint: a few more steps, so that the interrupt lands between checkpoints
    _, err = _interrupted_once(process, checkpoint.exists, "checkpoint written", 120, then_s=1.0)
    assert process.returncode == 130, err
    assert "checkpoint saved" in err

    stopped_at = torch.load(checkpoint, weights_only=True)["step"]
    assert stopped_at >= 5
    resumed = subprocess.run([*args, "--max-steps", str(stopped_at + 5)], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed resume from step {stopped_at}" in resumed.stdout
    manifest = json.loads((tmp_path / "bundles" / "resume" / "manifest.json").read_text())
    assert manifest["training"]["optimizer_steps"] == stopped_at + 5
    assert manifest["training"]["device"] == "cpu"

    # exporting a checkpoint records the device that trained it and the configuration it was trained
    # with, not the exporting process's device (cpu) and run folder
    state = torch.load(checkpoint, weights_only=True)
    state["trained_on"] = ["cuda"]
    state["config"]["device"] = "cuda"
    torch.save(state, checkpoint)
    # (plus the export's own dotted overrides: here how the bundle stores its token table)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "exported"),
                 "--set", "model.embedding_storage=int8"]) == 0
    exported = json.loads((tmp_path / "exported" / "resume" / "manifest.json").read_text())
    assert exported["training"]["device"] == "cuda"
    trained_model = manifest["training"]["config"]["model"]
    assert exported["training"]["config"] == {
        **manifest["training"]["config"], "device": "cuda", "model": {**trained_model, "embedding_storage": "int8"},
    }
    assert exported["training"]["model_config"]["embedding_storage"] == "int8"
    assert exported["training"]["optimizer_steps"] == stopped_at + 5
    # QA: the export recorded itself as the training command; the checkpoint records the fit's (the last one)
    assert exported["training"]["command"] == manifest["training"]["command"]
    assert manifest["training"]["command"].startswith("trm-train fit ")


@pytest.mark.parametrize(("argv", "message"), [
    (["fit", "--config", "{tmp}/bad.yaml"], "--config {tmp}/bad.yaml is not valid YAML"),
    (["fit", "--config", "{tmp}/list.yaml"], "--config {tmp}/list.yaml must hold a mapping of config keys, got list"),
    (["fit", "--config", "{tmp}/empty.yaml"], "the config needs name, task, data"),
    (["fit", "--train", "x.csv", "--set", "lr=[1"], "--set 'lr=[1': the value is not valid YAML"),
    (["fit", "--config", "{tmp}/ok.yaml", "--set", "teacher.bogus=1"], "unknown config keys: teacher.bogus"),
    (["fit", "--config", "{tmp}/ok.yaml", "--device", "tpu"], "device (the flag --device) must be auto, cpu"),
    (["fit", "--config", "{tmp}/ok.yaml", "--set", "batch_size=0"], "batch_size (the flag --batch-size) must be"),
    (["fit", "--config", "{tmp}/ok.yaml", "--set", "version=v/2"], "version 'v/2' must be 1-64 characters of"),
    (["fit", "--config", "{tmp}/ok.yaml", "--set", "description=" + "x" * 10_001],
     "description has 10,001 characters: a bundle's holds at most 10,000 (--set description=...)"),
    (["export", "--checkpoint", "{tmp}/junk.pt"], "--checkpoint {tmp}/junk.pt: not a training checkpoint"),
    (["export", "--checkpoint", "{tmp}/junk.pt", "--ablation", "{tmp}/bad.yaml"],
     "--ablation {tmp}/bad.yaml: neither a bundle folder nor an evaluation.json"),
    # probe: a pipe as --config blocked the fit until killed; a folder was told as a full disk
    (["fit", "--config", "{tmp}/pipe.yaml"], "--config {tmp}/pipe.yaml: not a plain file: give a YAML file"),
    (["fit", "--config", "{tmp}"], "--config {tmp}: not a plain file: give a YAML file"),
    (["fit", "--config", "{tmp}/none.yaml"], "--config {tmp}/none.yaml: no such file: give a YAML file"),
])
def test_bad_settings_and_files_are_told_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- name\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "ok.yaml").write_text("name: x\ntask: text\ndata: x.csv\n")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    os.mkfifo(tmp_path / "pipe.yaml")
    assert main([part.format(tmp=tmp_path) for part in argv]) == 2
    assert f"trm-train: {message.format(tmp=tmp_path)}" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "flag"), [
    (["fit", "--train", "x.csv", "--max-steps", "0"], "--max-steps"),
    (["fit", "--train", "x.csv", "--time-budget", "inf"], "--time-budget"),
    (["fit", "--train", "x.csv", "--lr", "nan"], "--lr"),
    (["fit", "--train", "x.csv", "--threads", "-1"], "--threads"),
    (["fit", "--train", "x.csv", "--seed", "-1"], "--seed"),
    (["fit", "--train", "x.csv", "--text-column", " "], "--text-column"),
    (["fit", "--train", "x.csv", "--bundle-version", "1.0 final"], "--bundle-version"),
    (["fit", "--train", "x.csv", "--bundle-version", ""], "--bundle-version"),
    (["eval", "--bundle", "b", "--data", "d", "--limit", "-1"], "--limit"),
])
def test_numbers_out_of_range_are_usage_errors_naming_the_flag(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--run-dir"])
@pytest.mark.parametrize(("folder", "told"), [("loop/x", "Symlink loop from"), ("a" * 300, "File name too long")])
def test_a_folder_flag_that_cannot_be_a_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch, flag: str, folder: str, told: str) -> None:
    """Probe: a link loop or a name longer than the file system takes ended in a traceback (RuntimeError, OSError)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(tmp_path / "loop")
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--train", "x.csv", flag, folder])
    assert exited.value.code == 2
    assert f"argument {flag}: cannot be a folder here ({told}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--out", "--run-dir"])
def test_a_folder_flag_naming_a_file_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--train", "x.csv", flag, str(tmp_path / "afile" / "inside")])
    told = f"argument {flag}: {tmp_path / 'afile'} is a file, not a folder: name a folder (made if missing)"
    assert exited.value.code == 2 and told in capsys.readouterr().err


@pytest.mark.parametrize("task", ["text", "sequence"])
def test_a_folder_of_anything_but_a_bundle_is_never_replaced_and_refused_before_training(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str
) -> None:
    """The bundle goes to OUT/NAME, replacing an earlier bundle; a user's own folder (or file) there stays."""
    train = tmp_path / "data.csv"
    if task == "text":
        train.write_bytes(keyword_data[0].read_bytes())
    else:
        train.write_text("source,target\nx equals one,x = 1\ny equals two,y = 2\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "important.txt").write_text("irreplaceable")
    started = time.monotonic()
    assert main(["fit", "--train", str(train), "--out", str(tmp_path), "--run-dir", str(tmp_path / "runs")]) == 2
    assert time.monotonic() - started < 30  # refused before any training
    assert (tmp_path / "data" / "important.txt").read_text() == "irreplaceable"
    told = (f"trm-train: {tmp_path / 'data'} exists and is a folder, not a bundle (no manifest.json): a bundle "
            "replaces only an earlier bundle; give another --out or --name")
    assert capsys.readouterr().err.strip() == told


def test_one_column_for_texts_and_labels_is_refused(
    keyword_data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", "--train", str(keyword_data[0]), "--text-column", "Label"]) == 2
    assert capsys.readouterr().err == ("trm-train: --text-column and --label-column name the same column ('Label'): "
                                       "name the column of the texts and the column of the labels\n")


def test_a_cuda_device_this_machine_lacks_is_refused_before_training(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fit", "--train", str(keyword_data[0]), "--out", str(tmp_path), "--device", "cuda:99"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("trm-train: --device cuda:99: this torch ")
    assert not (tmp_path / "train").exists()


RUNS = Path("runs") / "the-run"  # a run folder apart from every bundle folder of these tests


def test_a_bundle_named_as_a_packaged_model_is_noted_before_training(capsys: pytest.CaptureFixture[str],
                                                                     tmp_path: Path) -> None:
    shipped = json.loads((DEFAULT_MODELS_DIR / "sudoku" / "manifest.json").read_text())["version"]
    check_bundle_folder(tmp_path / "sudoku", shipped, "puzzles.csv", RUNS)
    assert f"sudoku: note: version {shipped} of a model of this name ships with the server" in capsys.readouterr().out
    check_bundle_folder(tmp_path / "sudoku", "9.0.0", "puzzles.csv", RUNS)  # served beside the packaged one
    check_bundle_folder(tmp_path / "my-puzzles", shipped, "puzzles.csv", RUNS)
    # `make models` rewriting the packaged bundle, from the data it was fitted on, at the configs' version
    check_bundle_folder(DEFAULT_MODELS_DIR / "sudoku", shipped, "../shared/data/sudoku", RUNS)
    check_bundle_folder(DEFAULT_MODELS_DIR / "sudoku", "1.0.0", "../shared/data/sudoku", RUNS)
    assert capsys.readouterr().out == ""


def test_a_bundle_of_another_file_of_the_same_name_is_never_replaced(tmp_path: Path, monkeypatch) -> None:
    """projA/train.csv and projB/train.csv both give the model name `train`: the second fit replaced the first
    project's bundle (and a server reloading the folder answered with the other model)."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "bundles" / "train"
    earlier.mkdir(parents=True)
    manifest = json.loads((DEFAULT_MODELS_DIR / "intent-clinc150" / "manifest.json").read_text())
    manifest["training"]["config"]["data"] = "projA/train.csv"
    manifest["version"] = "1.0.0"
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    check_bundle_folder(earlier, "1.0.0", "projA/train.csv", RUNS)  # the same file again, edited or not: replaced
    check_bundle_folder(earlier, "1.0.0", str(tmp_path / "projA" / "train.csv"), RUNS)  # however the path is written
    with pytest.raises(ValueError, match=(
            rf"^{re.escape(str(earlier))} holds the model fitted on projA/train.csv, another file than "
            r"projB/train.csv \(two files of one name.*give this fit another --name \(or --out\), or remove ")):
        check_bundle_folder(earlier, "1.0.0", "projB/train.csv", RUNS)


def test_a_bundle_of_another_version_is_never_replaced_and_other_data_under_one_version_is_named(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA: `--bundle-version 1.1.0` into the same --out replaced the 1.0.0 bundle without a word; the same version
    fitted again on an edited file became another model under the version clients pin."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.csv").write_text("text,label\nhi,greet\n")
    earlier = tmp_path / "bundles" / "faq"
    earlier.mkdir(parents=True)
    manifest = json.loads((DEFAULT_MODELS_DIR / "intent-clinc150" / "manifest.json").read_text())
    manifest.update(name="faq", version="1.0.0")
    manifest["training"]["config"]["data"] = "train.csv"
    manifest["training"]["data_sha256"] = {"train.csv": sha256_of(tmp_path / "train.csv")}
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=(
            rf"^{re.escape(str(earlier))} holds faq 1.0.0, which this fit of 1.1.0 would replace .*: to serve both, "
            rf"move it first \(`mv {re.escape(str(earlier))} {re.escape(str(earlier))}-1.0.0`")):
        check_bundle_folder(earlier, "1.1.0", "train.csv", RUNS)
    check_bundle_folder(earlier, "1.0.0", "train.csv", RUNS)  # the same command again: its own bundle, quietly
    assert capsys.readouterr().out == ""
    (tmp_path / "train.csv").write_text("text,label\nhi,greet\nbye,farewell\n")
    check_bundle_folder(earlier, "1.0.0", "train.csv", RUNS)
    assert (f"faq: note: this fit replaces faq 1.0.0 at {earlier}, fitted on other contents of train.csv: a client "
            "that pins version 1.0.0 gets the new model") in capsys.readouterr().out


@pytest.mark.parametrize("task", ["text", "sequence"])
def test_one_folder_for_the_bundle_and_the_run_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], task: str
) -> None:
    """Probe: `--out X --run-dir X` trained its whole budget, then failed: the run folder, made first, was no bundle;
    and a rerun was refused at once with a hint that could not help."""
    train = tmp_path / "data.csv"
    train.write_text("source,target\nx equals one,x = 1\n" if task == "sequence" else
                     "text,label\n" + "".join(f"hello {i},greet\nbye {i},farewell\n" for i in range(10)))
    same = tmp_path / "same"
    assert main(["fit", "--train", str(train), "--out", str(same), "--run-dir", str(same)]) == 2
    assert capsys.readouterr().err == (
        f"trm-train: --out and --run-dir both put data in {same}: the bundle and the run's checkpoint need folders of "
        "their own (a run folder is not a bundle, and the fit would be refused after training): give another --out "
        "or --run-dir\n")
    assert not (same / "data").exists()


def test_a_bundle_folder_that_is_a_link_is_refused_before_training(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Probe: a bundle folder that was a symbolic link (to a shared models folder) trained its budget, then wrote the
    bundle as a folder in the link's place, left the shared folder as it was and a `.old` link behind, and said
    "Cannot call rmtree on a symbolic link: free space on the disks of ..."."""
    train = tmp_path / "data.csv"
    train.write_text("text,label\n" + "".join(f"hello {i},greet\nbye {i},farewell\n" for i in range(10)))
    (tmp_path / "shared").mkdir()
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "data").symlink_to(tmp_path / "shared")
    assert main(["fit", "--train", str(train), "--out", str(tmp_path / "bundles"),
                 "--run-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (
        f"trm-train: {tmp_path}/bundles/data is a symbolic link (to {tmp_path}/shared): a bundle is written as a "
        "folder of its own; write it where the link points, or remove the link; give another --out or --name\n")
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_a_data_error_comes_before_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cases.csv").write_text("text,label\nhello,Greet\nhi there,greet\nbye,bye\nsee you,bye\n")
    assert main(["fit", "--train", str(tmp_path / "cases.csv")]) == 2
    output = capsys.readouterr()
    assert output.out == ""  # no plan for a file that cannot be trained on
    assert "'Greet' and 'greet' differ only in case: write each label one way" in output.err


def test_a_files_name_that_cannot_name_a_model_is_made_into_one(keyword_data: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """The default name comes from the file's name, which may hold spaces and brackets: the fit's config takes a
    name a bundle can carry, before any training."""
    odd = tmp_path / "My Commands (v2).csv"
    odd.write_bytes(keyword_data[0].read_bytes())
    assert _fit_config(build_parser().parse_args(["fit", "--train", str(odd)]))[0].name == "My-Commands-v2"
    assert model_name_from("  (v2) ") == "v2" and model_name_from("???") == "model"
    assert model_name_from("données clients") == "donnees-clients"
    other_scripts = model_name_from("日本語"), model_name_from("中文")
    assert other_scripts[0].startswith("model-") and other_scripts[0] != other_scripts[1]
    assert all(is_model_name(name) for name in other_scripts)
    assert is_model_name(model_name_from("é" + "x" * 300))


def test_a_sequence_fit_names_the_flags_it_does_not_take(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pairs.csv").write_text("source,target\nx equals one,x = 1\n")
    assert main(["fit", "--train", str(tmp_path / "pairs.csv"), "--max-steps", "5", "--oos-label", "x",
                 "--label-column", "y"]) == 2
    told = capsys.readouterr().err
    assert "--max-steps, --oos-label, --label-column do not apply to --task sequence" in told
    # where its columns are named otherwise (a text file's error had pointed there): what to do instead
    assert told.endswith("--start-from): a sequence file's columns are read by their names alone, source and target; "
                         "rename them in the file\n")


def test_training_on_validation_without_a_test_file_still_tests_and_validates_on_rows_it_never_saw(
    keyword_data: tuple[Path, Path],
) -> None:
    config = TrainConfig(name="all", task="text", data=str(keyword_data[0]), train_on_val=True)
    train, val, test = text_splits(config)
    _, whole_val, _ = text_splits(dataclasses.replace(config, train_on_val=False))
    assert set(val.texts) < set(whole_val.texts) and set(whole_val.texts) - set(val.texts) <= set(train.texts)
    assert val.texts and test.texts
    assert not (set(test.texts) | set(val.texts)) & set(train.texts)


@pytest.mark.parametrize(("setting", "message"), [
    ("max_steps=abc", "max_steps must be an int, got 'abc'"),
    ("lr=true", "lr must be a float, got True"),
    ("model.bogus=1", "unknown config keys: model.bogus"),
    ("teacher.temperature=hot", "teacher.temperature must be a float, got 'hot'"),
    ("teacher.max_rows=-1", "teacher.max_rows must be 0 (MiniLM teaches every row) or more, got -1"),
    ("model.hidden_size=abc", "model.hidden_size must be an int, got 'abc'"),
    ("model.hidden_size=0", "model.hidden_size must be at least 1, got 0"),
    ("model.expansion=0", "model.expansion must be above 0, got 0"),
    ("model.hidden_size=130", "model.hidden_size 130 must be a multiple of model.num_heads 4"),
    ("model.hidden_size=100000000", "model.hidden_size must be at most 4096 (a tiny recursive model served on "
                                    "CPUs), got 100000000"),  # probe: a 51 GB allocation's traceback
    ("eval_every=0", "eval_every must be at least 1 (steps), got 0"),  # probe: ZeroDivisionError after training
    ("eval_every=-1", "eval_every must be at least 1 (steps), got -1"),  # probe: evaluated after every step
    ("augment_per_label=-3", "augment_per_label must be 0 or more, got -3"),
    ("seed=-1", "seed (the flag --seed) must be a whole number from 0 to 4294967295, got -1"),
    ("seed=99999999999", "seed (the flag --seed) must be a whole number from 0 to 4294967295, got 99999999999"),
    ("model=3", "model must be a mapping of settings (--set model.hidden_size=128), got 3"),
    ("name=my bundle", "name 'my bundle' must be 1-128 characters of letters, digits, '.', '_' or '-', starting "
                       "with a letter or digit (it names the model and its bundle's folder): give one with --name"),
])
def test_a_setting_of_the_wrong_type_or_name_is_told(capsys: pytest.CaptureFixture[str], setting: str,
                                                      message: str) -> None:
    config = Path(__file__).resolve().parents[1] / "trainer" / "configs" / "intent-clinc150.yaml"
    assert main(["fit", "--config", str(config), "--set", setting]) == 2
    assert f"trm-train: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "model=3"], "trm-train: model must be a mapping of settings (--set model.hidden_size=128), got 3"),
    (["--threads", "100000"], "argument --threads: must be 0 (torch's default) to "),  # probe: a segfault
    (["--seed", "99999999999"], "argument --seed: must be a whole number from 0 to 4294967295, got '99999999999'"),
])
def test_a_preset_fit_tells_a_flag_out_of_its_range_before_training(
    keyword_data: tuple[Path, Path], capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """Probe: `--set model=3` ended in a KeyError traceback where the plan's changes were told; `--seed 99999999999`
    failed after the split with scikit-learn's message, which named no flag."""
    with contextlib.suppress(SystemExit):  # argparse's own refusals exit 2
        assert main(["fit", "--train", str(keyword_data[0]), *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_not_a_bundle_or_not_the_sudoku_data_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA: each read "cannot read manifest.json: No such file or directory", or named a CSV the folder lacked."""
    (tmp_path / "runs").mkdir()
    assert main(["eval", "--bundle", str(tmp_path / "runs"), "--data", str(tmp_path)]) == 2
    assert "runs: not a bundle, it holds no manifest.json" in capsys.readouterr().err
    assert main(["export", "--from-bundle", str(tmp_path / "gone"), "--out", str(tmp_path / "out")]) == 2
    assert "gone: no such folder (a bundle is a folder holding manifest.json)" in capsys.readouterr().err
    sudoku = DEFAULT_MODELS_DIR / "sudoku"
    assert main(["eval", "--bundle", str(sudoku), "--data", str(tmp_path), "--split", "test"]) == 2
    assert "folder is not the shared Sudoku data: missing" in capsys.readouterr().err


def test_a_preset_fit_times_its_loop_to_its_budget_unless_a_flag_fixes_the_minutes(
    keyword_data: tuple[Path, Path]
) -> None:
    train = str(keyword_data[0])

    def ends_after_s(*flags: str) -> float | None:
        return _fit_config(build_parser().parse_args(["fit", "--train", train, *flags]))[1]

    timed = ends_after_s("--time-budget", "4")
    assert timed is not None and 4 * 60 - 30 < timed < 4 * 60  # the budget less the estimate after the loop
    assert ends_after_s("--time-budget", "4", "--max-minutes", "2") is None
    assert ends_after_s("--time-budget", "4", "--set", "max_minutes=2") is None


def test_a_timed_fit_reserves_the_recursion_its_export_runs(
    keyword_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop of a fit timed to its budget ends early for the export's recursion over the held-out rows, counted
    by `export_evaluations` in progress evaluations: that count is what the export runs (the parity check's fp32
    and ONNX passes over the first test rows included)."""
    reserved, ran = {}, []

    def recorded(cfg: TrainConfig, prepared: Prepared) -> float:
        evaluations = export_evaluations(cfg, prepared)
        reserved["rows"] = evaluations * min(cfg.eval_examples, len(prepared.val))
        return evaluations

    monkeypatch.setattr(trainer.fit, "export_evaluations", recorded)
    for module in (trainer.evaluate, trainer.export):  # evaluate_step's, and the export's own
        monkeypatch.setattr(module, "run_recursion", lambda step, tokens, *args, _run=module.run_recursion:
                            ran.append(len(tokens)) or _run(step, tokens, *args))
    train, test = keyword_data
    assert main(["fit", "--train", str(train), "--test", str(test), "--time-budget", "4", "--max-steps", "20",
                 "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--threads", "1"]) == 0
    assert reserved["rows"] > 0 and sum(ran) == pytest.approx(reserved["rows"])


def test_a_refit_with_other_settings_starts_over_and_says_which(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished run resumed under another recursion trained no step and shipped its weights as the new model's."""
    train, _ = keyword_data
    fit = ["fit", "--task", "text", "--data", str(train), "--name", "refit", "--out", str(tmp_path / "bundles"),
           "--run-dir", str(tmp_path / "runs"), "--batch-size", "16", "--threads", "1", "--max-steps", "4", *TINY_MODEL]
    assert main(fit) == 0
    # longer, another version (its bundle in a folder of its own: the 1.0.0 one is not written over): resumed
    assert main([*fit, "--max-steps", "6", "--set", "version=1.1.0", "--out", str(tmp_path / "bundles-1.1.0")]) == 0
    resumed = capsys.readouterr().out
    assert "resumed refit from step 4" in resumed
    assert re.search(r"min in all, \d+\.\d\d of them before this command, ", resumed)  # the minutes' "in all"
    assert main([*fit, "--set", "model.n=3", "--set", "lr=0.005"]) == 0
    checkpoint = tmp_path / "runs" / "refit" / "checkpoint.pt"
    assert f"{checkpoint} holds a run of other settings (lr, model.n); starting over" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "bundles" / "refit" / "manifest.json").read_text())
    assert (manifest["recursion"]["n"], manifest["training"]["optimizer_steps"]) == (3, 4)


def test_a_checkpoint_continues_a_run_of_the_same_files_model_and_recipe() -> None:
    model = torch.nn.Linear(2, 3)
    config = TrainConfig(name="x", task="text", data="x.csv", model={"n": 1, "T": 1}).to_dict()
    state = {"config": config, "model": model.state_dict(), "data_sha256": {"x.csv": "a"}}
    assert run_differences(state, model, {"x.csv": "a"}, config) == []
    longer = {**config, "max_steps": 9000, "max_minutes": 5.0, "warmup_steps": 3, "version": "1.1.0", "eval_every": 9}
    assert run_differences(state, model, {"x.csv": "a"}, longer) == []
    teacher = {**config["teacher"], "temperature": 1}
    other = {**config, "seed": 1, "model": {"n": 1, "hidden_size": 64}, "teacher": teacher}
    assert run_differences(state, torch.nn.Linear(2, 4), {"x.csv": "b"}, other) == [
        "data", "settings (model.T, model.hidden_size, seed, teacher.temperature)", "model sizes"]


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """`trm-train eval ... | head` ended in a BrokenPipeError traceback when head had gone before the last line."""
    process = subprocess.Popen([sys.executable, "-m", "trainer", "presets"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # gone before the command writes (its imports take seconds)
    assert process.wait(timeout=120) == 1
    assert process.stderr.read() == ""


def test_flags_that_change_the_plan_are_named_after_it(tmp_path: Path) -> None:
    """The plan said "training 600 steps" of a fit that `--max-steps 5` ended at 5."""
    data = tmp_path / "notes.csv"
    data.write_text("text,label\n" + "".join(f"note {i} {word},{word}\n" for i in range(40) for word in ("a", "b")))
    args = build_parser().parse_args(["fit", "--train", str(data), "--max-steps", "5", "--set", "lr=0.002"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert _fit_config(args)[0].max_steps == 5
    plan_line, changes = printed.getvalue().splitlines()
    assert plan_line.startswith("Preset short-text") and "training 5" not in plan_line
    assert re.fullmatch(r"The flags change the plan: lr 0\.002 \(planned 0\.001\), max_steps 5 \(planned \d+\)\.",
                        changes)


@pytest.mark.parametrize("flag", ["--out", "--run-dir"])
def test_a_folder_flag_on_a_disk_that_cannot_be_written_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    """QA: `--out` on a read-only disk was found out after the whole training, as a traceback."""
    read_only = tmp_path / "mounted"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--train", "x.csv", flag, str(read_only / "bundles")])
    told = (f"argument {flag}: {read_only} cannot be written (a read-only disk, or a folder of another user): name "
            "a folder you can write")
    assert exited.value.code == 2 and told in capsys.readouterr().err


def test_a_disk_that_fails_while_a_command_writes_is_told_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """QA: a full disk under --out ended the fit in a 20-line traceback."""
    def full_disk(args):
        raise OSError(28, "No space left on device", "bundles/.m.x/model.int8.onnx")

    monkeypatch.setattr(cli, "cmd_presets", full_disk)
    assert main(["presets"]) == 1
    assert capsys.readouterr().err == (
        "trm-train: [Errno 28] No space left on device: 'bundles/.m.x/model.int8.onnx': free space there or write "
        "elsewhere (--out, --run-dir); a fit's last checkpoint is kept, and the same command resumes from it\n")


def test_a_run_folder_too_small_is_told_in_its_own_words(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before training says which folder and flag; the full disk's advice (a checkpoint kept, the same
    command resumes) does not apply to a run that wrote nothing."""
    told = "the run folder runs/m has 1.0 MB free and this run's checkpoint takes at least 4.0 MB: ... --run-dir"

    def too_small(args):
        raise NoRoomForCheckpoint(told)

    monkeypatch.setattr(cli, "cmd_presets", too_small)
    assert main(["presets"]) == 1
    assert capsys.readouterr().err == f"trm-train: {told}\n"


def test_a_full_temporary_folder_is_named_where_the_error_names_no_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """QA: with TMPDIR on a small tmpfs, the export's staging of ONNX files failed "[Errno 28] No space left on device:
    free space there", naming no folder, and pointed at --out and --run-dir, which had room."""
    def full_temporary_folder(args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "cmd_presets", full_temporary_folder)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["presets"]) == 1
    assert capsys.readouterr().err == (
        f"trm-train: [Errno 28] No space left on device: free space on the disks of --out, --run-dir and the temporary "
        f"folder ({tmp_path}, TMPDIR) or write elsewhere (--out, --run-dir); a fit's last checkpoint is kept, and the "
        "same command resumes from it\n")


def test_a_bundle_whose_weights_lie_in_another_file_is_refused_by_the_exporter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe: `export --from-bundle` of a bundle whose graph keeps its weights in another file (ONNX external data,
    which no checksum covers) ended in onnx's ValidationError traceback where that file was a link or an absolute
    path, and read it otherwise; eval and the server refuse it."""
    folder = Path(shutil.copytree(DEFAULT_MODELS_DIR / "intent-clinc150", tmp_path / "intent-clinc150"))
    onnx.save(onnx.load(str(folder / "model.onnx")), str(folder / "model.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=0)  # a file no checksum covers
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = sha256_of(folder / "model.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert main(["export", "--from-bundle", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"trm-train: {folder}/model.onnx: its weights lie in another file (ONNX "
                                       "external data), which a bundle may not hold\n")
