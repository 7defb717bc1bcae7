"""The trm-client command against a real server: --json output parses and agrees with the SDK."""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO
from unittest.mock import ANY

import grpc
import pytest
from sdk_test_support import GRID_MODEL, N_SUP, SUDOKU, TEXT_MODEL, closed_port
from trm.v1 import trm_pb2
from trm_client.client import TRMClient
from trm_client.headline import headline
from trm_client.model_info import ModelInfo

import trm_service
from trainer.testing import DEFAULT_TEXT_LABELS, make_random_bundle
from trm_service.testing import ServerProcess


def trm_client(*args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the command as installed (python -m keeps it independent of PATH); TRM_TARGET when no --target."""
    env = {**os.environ, "TRM_TARGET": target} if target else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "trm_client.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_models_json_lists_the_hosted_models(server):
    done = trm_client("--target", server.target, "models", "--json")
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)
    assert {m["name"] for m in models} == {TEXT_MODEL, GRID_MODEL}
    assert {m["task"] for m in models} == {"text_classification", "grid"}


def test_models_table_names_each_model(server):
    done = trm_client("models", target=server.target)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {TEXT_MODEL, GRID_MODEL}
    assert all(row.endswith(" -") for row in rows.values())  # random bundles carry no metrics


def test_models_with_a_model_describes_it(server, client):
    """The SDK's `model()` had no command: a user rolling out a version could not see its labels and limits."""
    info = client.model(TEXT_MODEL)
    done = trm_client("models", TEXT_MODEL, "--version", info.version, target=server.target)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"model:       {TEXT_MODEL} {info.version} (loaded versions: {', '.join(info.versions)})"
    assert lines[1] == f"task:        {info.task.value}"
    assert any(line.startswith(f"labels:      {len(info.labels)}: {info.labels[0]}, ") for line in lines)
    assert any(line.startswith(f"limits:      reads a text's first {info.limits.max_tokens} tokens (within its first "
                               f"{info.limits.max_text_chars:,} characters)") for line in lines)
    assert json.loads(trm_client("models", TEXT_MODEL, "--json", target=server.target).stdout)["name"] == TEXT_MODEL
    absent = trm_client("models", "nope", target=server.target)
    assert absent.returncode == 1 and "NOT_FOUND: model 'nope' is not hosted here" in absent.stderr
    alone = trm_client("models", "--version", "1.0.0", target=server.target)
    assert alone.returncode == 1 and "give the model too (trm-client models MODEL --version V)" in alone.stderr


def test_models_table_shows_the_metric_each_shipped_model_is_known_by(shipped_server):
    """In-scope accuracy for a model with out-of-scope, accuracy otherwise, per tier for Sudoku, exact match for
    the sequence model; each the served step's: int8 for the text models and Sudoku."""
    done = trm_client("models", target=shipped_server.target)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith("TEST METRIC")
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    shipped = ("intent-clinc150", "routing-20ng", "sudoku", "code-dictation")
    metrics = {name: _manifest_metrics(name) for name in shipped}
    assert set(rows) == set(metrics)
    intent, routing, sudoku = metrics["intent-clinc150"], metrics["routing-20ng"], metrics["sudoku"]
    assert intent["test_in_scope_accuracy"] != intent["test_accuracy"]  # else the test proves nothing
    assert rows["intent-clinc150"].endswith(
        f"  in_scope_accuracy {_percent(intent['int8_test_in_scope_accuracy'])} (int8)")
    assert routing["int8_test_accuracy"] != routing["test_accuracy"]  # else the test proves nothing
    seen = int(routing.get("test_rows_trained_on", 0))  # 20 Newsgroups repeats a few posts in its test split
    caveat = f"; {seen} test rows seen in training" if seen else ""
    assert rows["routing-20ng"].endswith(f"  accuracy {_percent(routing['int8_test_accuracy'])} (int8{caveat})")
    assert sudoku["int8_test_hard_accuracy"] != sudoku["test_hard_accuracy"]
    tiers = " ".join(f"{tier} {_percent(sudoku[f'int8_test_{tier}_accuracy'])}" for tier in ("easy", "medium", "hard"))
    assert rows["sudoku"].endswith(f"  accuracy {tiers} (int8)")
    assert rows["code-dictation"].endswith(f"  exact_match {_percent(metrics['code-dictation']['test_exact_match'])}")


def test_a_server_started_with_fp32_shows_the_fp32_figures():
    routing_bundle = Path(trm_service.__file__).parent / "models" / "routing-20ng"
    with ServerProcess([routing_bundle], extra_args=["--fp32"]) as fp32_server:
        done = trm_client("models", target=fp32_server.target)
    assert done.returncode == 0, done.stderr
    routing = _manifest_metrics("routing-20ng")
    seen = int(routing.get("test_rows_trained_on", 0))
    caveat = f" ({seen} test rows seen in training)" if seen else ""
    assert done.stdout.splitlines()[1].endswith(f"  accuracy {_percent(routing['test_accuracy'])}{caveat}")


def test_an_abstaining_models_accuracy_on_the_inputs_it_answers_is_not_a_test_set():
    """A model that abstains below a confidence (a user's fit with no out-of-scope label) is known by its
    accuracy on the whole test set, not by its accuracy on the inputs it answered (metrics of such a fit)."""
    metrics = {"test_accuracy": 0.94118, "test_halting_accuracy": 0.94118, "test_halting_mean_steps": 1.0,
               "test_ece": 0.20849, "test_answered_fraction": 0.88235, "test_answered_accuracy": 1.0}
    assert headline(metrics).text() == "accuracy 94.12%"


def test_an_int8_step_without_int8_figures_shows_the_fp32_figure_marked_as_such():
    """A bundle whose int8 step came without int8 figures (hand-made, or exported without a test set) must not
    pass its fp32 figure off as the served step's."""
    metrics = {"test_accuracy": 0.8622, "int8_test_hard_accuracy": 0.5}
    assert headline(metrics, served_step="int8").text() == "accuracy 86.22% (fp32; int8 served)"
    assert headline(metrics, served_step="fp32").text() == "accuracy 86.22%"
    # a server before 2026-12-03 does not say, though it ran a bundle's int8 step: "fp32" had been assumed
    untold = "accuracy 86.22% (fp32; the server does not say which step it runs)"
    assert headline(metrics, served_step="").text() == untold
    assert ModelInfo.from_proto(trm_pb2.ModelInfo(name="m")).served_step == ""
    assert headline({**metrics, "int8_test_accuracy": 0.8621}, served_step="int8").text() == "accuracy 86.21% (int8)"


def test_the_headline_says_when_the_test_rows_leave_labels_out_or_were_trained_on():
    """QA: a fit whose test file held rows of 1 of its 6 labels was listed "accuracy 97.67% (int8)" (77.67% on a test
    file of every label); REPORT.md said why, `trm-client models` did not."""
    metrics = {"test_accuracy": 0.9767, "int8_test_accuracy": 0.9767, "test_labels": 1}
    assert headline(metrics, "int8", labels=6).text() == "accuracy 97.67% (int8; test rows of 1 of 6 labels)"
    assert headline({**metrics, "test_labels": 6}, "int8", labels=6).text() == "accuracy 97.67% (int8)"
    seen = {"test_accuracy": 1.0, "test_rows_trained_on": 60}
    assert headline(seen, labels=8).text() == "accuracy 100.00% (60 test rows seen in training)"


def _manifest_metrics(model: str) -> dict[str, float]:
    manifest = Path(trm_service.__file__).parent / "models" / model / "manifest.json"
    return json.loads(manifest.read_text())["metrics"]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def test_reason_json_and_stream_json_agree(server, client):
    unary = trm_client("--target", server.target, "reason", TEXT_MODEL, "wake me up at seven", "--json")
    assert unary.returncode == 0, unary.stderr
    result = json.loads(unary.stdout)
    assert result["prediction"] in DEFAULT_TEXT_LABELS
    assert result["prediction"] == client.reason(TEXT_MODEL, "wake me up at seven").prediction

    stream = trm_client(
        "--target", server.target, "reason", TEXT_MODEL, "wake me up at seven", "--stream", "--json"
    )
    assert stream.returncode == 0, stream.stderr
    steps = [json.loads(line) for line in stream.stdout.splitlines()]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[-1]["final"] is True
    assert steps[-1]["prediction"] == result["prediction"]
    assert steps[-1]["halt_reason"] == result["halt_reason"]


def test_a_grids_json_answer_has_its_confidence_as_every_answer_does(server):
    """QA: a classification's and a written text's `answer` held `confidence`, a grid's did not."""
    for extra in ((), ("--stream",)):
        done = trm_client("--target", server.target, "reason", GRID_MODEL, "--grid", SUDOKU, "--json", *extra)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout.splitlines()[-1])["answer"]
        assert answer["confidence"] == min(answer["cell_confidence"])


def test_reason_batch_answers_every_line_in_order_as_reason_does(server, client, tmp_path):
    texts = ["wake me up at seven", "", "play some jazz", "what is the weather in paris"]
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(texts) + "\n")
    done = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs), "--batch-size", "3",
                      "--json")
    assert done.returncode == 1 and done.stderr == "trm-client: 1 of 4 lines failed\n"  # a script can tell
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["line"] for row in rows] == [1, 2, 3, 4]  # two calls (3 + 1 inputs), in order
    assert rows[1]["error"]["code"] == "INVALID_ARGUMENT"  # the empty line fails alone
    for row, text in zip(rows, texts, strict=True):
        if text:
            assert row["prediction"] == client.reason(TEXT_MODEL, text).prediction
    plain = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs))
    told = "line 2: INVALID_ARGUMENT: text is empty: send the text to classify in this line"
    assert plain.stdout.splitlines()[1] == told
    inputs.write_text("wake me up at seven\n")
    assert trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs)).returncode == 0
    pinned = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs), "--version", "1.0.0",
                        "--json")  # a rollout's old version, scored from the CLI
    assert json.loads(pinned.stdout)["model_version"] == "1.0.0"
    absent = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs), "--version", "9.9.9")
    assert absent.returncode == 1 and f"model '{TEXT_MODEL}' has no version '9.9.9'" in absent.stderr
    assert "; the version is --version (now 9.9.9)" in absent.stderr  # QA: the flag that named it was not told


@pytest.mark.parametrize(
    ("model", "lines", "told"),
    [
        (GRID_MODEL, [SUDOKU[:80]], "this line must have 81 symbols (9x9, row-major), got 80"),
        (GRID_MODEL, ["x" + SUDOKU[1:]], "cell 0 of this line (row 1, column 1) is 'x'"),
        (TEXT_MODEL, ["hi"], f"model '{TEXT_MODEL}' classifies text: set text lines, without --grid"),
    ],
)
def test_reason_batch_tells_a_lines_error_in_its_own_words(server, tmp_path, model, lines, told):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(lines) + "\n")
    done = trm_client("--target", server.target, "reason-batch", model, str(inputs), "--grid")
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith(f"line 1: INVALID_ARGUMENT: {told}")
    assert "argument" not in done.stdout and "grid.cells" not in done.stdout


def test_an_input_argument_that_is_not_utf8_is_named_as_such(server):
    done = trm_client("--target", server.target, "reason", TEXT_MODEL, os.fsdecode(b"ok \xff bad"))
    assert done.returncode == 1
    assert done.stderr == ("trm-client: the input is not UTF-8 text (byte 0xff at character 4): pass it in UTF-8 "
                           "(check the terminal's or locale's encoding)\n")


def test_reason_reads_its_input_from_stdin_for_a_dash(server, client):
    done = subprocess.run([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason", TEXT_MODEL,
                           "-", "--json"], input=b"play some jazz\n", capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"]["label"] == client.reason(TEXT_MODEL, "play some jazz").prediction
    undecodable = subprocess.run([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason",
                                  TEXT_MODEL, "-"], input=b"ok \xff bad", capture_output=True, timeout=120)
    assert undecodable.returncode == 1
    assert b"the input is not UTF-8 text (byte 0xff at character 4)" in undecodable.stderr


def test_an_answer_is_printed_where_the_output_encoding_lacks_the_confidence_bar(server):
    """A cp1252 console (or PYTHONIOENCODING=cp1252): the bar's cells are written "?"; the call had succeeded,
    and the command failed after it as if an option were bad."""
    done = subprocess.run([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason", TEXT_MODEL,
                           "hello"], capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert done.returncode == 0, done.stderr
    assert re.search(r"^confidence: +[0-9.]+ \?{20}$", done.stdout.decode("cp1252"), re.MULTILINE)


def test_an_input_over_grpcs_message_limit_is_told_to_be_shortened(server):
    """gRPC refuses it as RESOURCE_EXHAUSTED, which reads as "retry later"."""
    done = subprocess.run([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason", TEXT_MODEL,
                           "-"], input=b"word " * 300_000, capture_output=True, timeout=120)
    assert done.returncode == 1
    assert (f"; the input is larger than the server takes in one message: shorten it (`trm-client models {TEXT_MODEL}` "
            "says how many characters the model reads)").encode() in done.stderr


def test_an_answer_over_the_servers_message_limit_is_not_told_to_shorten_the_input(tmp_path: Path):
    """QA: a list of models over the server's message limit was told "the input is larger than the server takes in
    one message: shorten it" (the request was empty)."""
    bundle = make_random_bundle(tmp_path, "text", name="described", seed=4)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "description": "words " * 400}))
    with ServerProcess([bundle], extra_args=["--max-message-bytes", "1024"]) as process:
        done = trm_client("--target", process.target, "models")
    assert done.returncode == 1 and "Sent message larger than max" in done.stderr
    assert "; the server's answer is larger than its --max-message-bytes lets it send" in done.stderr
    assert "shorten it" not in done.stderr


def test_an_answer_over_the_clients_own_receive_limit_says_to_ask_for_less(tmp_path: Path):
    """QA: a list of models over gRPC's 4 MiB receive limit in the client (five bundles within the bounds, labels of
    4-byte characters, on a server allowing 16 MiB) was told "the input is larger ...: shorten it"."""
    labels = [f"{i:03d}" + "\U0001f600" * 997 for i in range(262)]  # 1,000 characters, about 4 kB each
    bundles = [make_random_bundle(tmp_path, "text", name=f"wide-{n}", labels=labels, seed=n) for n in range(5)]
    with ServerProcess(bundles, extra_args=["--max-message-bytes", str(16 << 20)]) as process:
        done = trm_client("--target", process.target, "models")
    assert done.returncode == 1 and "CLIENT: Received message larger than max" in done.stderr
    assert ("; the server's answer is larger than this client takes in one message (gRPC's 4 MiB): ask for one model "
            "at a time (`trm-client models MODEL`)") in done.stderr


def test_a_bundles_control_characters_reach_the_terminal_as_escapes(tmp_path: Path):
    """QA: a bundle's description and labels holding ESC sequences cleared the screen, recoloured it and retitled
    the window of whoever ran `trm-client models` or `reason` (JSON output escapes them already)."""
    labels = ["greet", "\x1b[2Jwiped", "\x1b]0;pwned\x07", "oos"]
    bundle = make_random_bundle(tmp_path, "text", name="escapes", labels=labels, seed=5)
    manifest = json.loads((bundle / "manifest.json").read_text())
    description = "Plain \x1b[31mred\x1b[0m\nlabels:      1: fake"  # a line break to fake the CLI's own line
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "description": description}))
    with ServerProcess([bundle]) as process:
        shown = [trm_client("--target", process.target, *command) for command in
                 (["models", "escapes"], ["models"], ["reason", "escapes", "hello", "--top-k", "4"])]
    for done in shown:
        assert done.returncode == 0 and "\x1b" not in done.stdout and "\x07" not in done.stdout, done.stdout
    assert "Plain \\x1b[31mred\\x1b[0m labels:" in shown[0].stdout and "\\x1b[2Jwiped" in shown[0].stdout
    assert "\nlabels:      1: fake" not in shown[0].stdout
    assert "\\x1b]0;pwned\\x07" in shown[2].stdout


def test_an_input_that_starts_with_a_dash_is_told_how_to_pass_it(server, client):
    flag_like = trm_client("--target", server.target, "reason", TEXT_MODEL, "-v")
    assert flag_like.returncode == 2
    assert flag_like.stderr.rstrip().endswith("required: input (a text that starts with '-' goes after '--': "
                                              "trm-client reason MODEL -- '-TEXT')")
    done = trm_client("--target", server.target, "reason", TEXT_MODEL, "--json", "--", "-v")
    assert done.returncode == 0 and json.loads(done.stdout)["answer"]["label"] == client.reason(TEXT_MODEL,
                                                                                                "-v").prediction


def test_reason_batch_tells_a_line_that_is_not_utf8_and_answers_the_others(server, client, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(b"play some jazz\r\n\xff\xfe bad\nwake me up at seven\n")  # Windows line ends too
    done = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs))
    assert done.returncode == 1 and done.stderr == "trm-client: 1 of 3 lines failed\n"
    first, second, third = done.stdout.splitlines()
    assert second == ("line 2: INVALID_ARGUMENT: not UTF-8 text (byte 0xff at byte 1 of the line): save the file "
                      "as UTF-8")
    for line, text in ((first, "play some jazz"), (third, "wake me up at seven")):
        assert line.startswith(f"line {1 if line is first else 3}: {client.reason(TEXT_MODEL, text).prediction}")


def test_reason_batch_reads_a_file_saved_as_utf8_with_a_bom(server, tmp_path):
    """Windows' "UTF-8 with BOM": the first grid is 81 symbols, not U+FEFF and 80 (which the server refused)."""
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(b"\xef\xbb\xbf" + f"{SUDOKU}\n{SUDOKU}\n".encode())
    done = trm_client("--target", server.target, "reason-batch", GRID_MODEL, str(inputs), "--grid")
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = done.stdout.splitlines()
    assert first.removeprefix("line 1") == second.removeprefix("line 2")


def test_grids_show_their_solution_in_reason_batch_and_after_a_stream(server, client, tmp_path):
    solved = client.reason(GRID_MODEL, grid=SUDOKU).answer
    inputs = tmp_path / "grids.txt"
    inputs.write_text(f"{SUDOKU}\n")
    batch = trm_client("--target", server.target, "reason-batch", GRID_MODEL, str(inputs), "--grid")
    assert batch.returncode == 0, batch.stderr
    assert batch.stdout.startswith(f"line 1: {solved.cells}  verified={'yes' if solved.verified else 'no'} (")
    stream = trm_client("--target", server.target, "reason", GRID_MODEL, "--grid", SUDOKU, "--stream")
    assert stream.returncode == 0, stream.stderr
    rows = [" ".join(solved.cells[i : i + 9]) for i in range(0, 81, 9)]
    assert stream.stdout.splitlines()[-9:] == rows


def test_reason_batch_of_an_empty_file_says_it_sent_nothing(server, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("")
    done = trm_client("--target", server.target, "reason-batch", TEXT_MODEL, str(inputs))
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == f"trm-client: {inputs} has no lines: nothing was sent\n"


def test_reason_batch_for_a_model_the_server_does_not_host_says_so_once(server, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("one\ntwo\nthree\n")
    done = trm_client("--target", server.target, "reason-batch", "no-such-model", str(inputs))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("NOT_FOUND") == 1 and "no-such-model" in done.stderr, done.stderr
    inputs.write_bytes(b"\xff bad\ntwo\nthree\n")  # QA: the first call sent came after the first batch of lines
    done = trm_client("--target", server.target, "reason-batch", "no-such-model", str(inputs), "--batch-size", "1")
    assert done.returncode == 1 and done.stdout.startswith("line 1: INVALID_ARGUMENT: not UTF-8 text")
    assert (done.stdout + done.stderr).count("NOT_FOUND") == 1 and "trm-client: NOT_FOUND" in done.stderr


def test_reason_batch_sends_again_alone_the_lines_a_busy_server_did_not_start(bundles, client, tmp_path):
    """QA: with the defaults, 256 hard Sudoku lines in one call with a 10 s deadline: 192 refused for load, 63 cut
    to about one step, none sent again. Here a queue of 4 refuses 20 of a call's 24 lines at once."""
    grids = [SUDOKU[:cell] + "." + SUDOKU[cell + 1:] for cell in range(24)]
    inputs = tmp_path / "grids.txt"
    inputs.write_text("\n".join(grids) + "\n")
    with ServerProcess([bundles["grid"]], extra_args=["--max-queue", "4"]) as busy:
        done = trm_client("--target", busy.target, "reason-batch", GRID_MODEL, str(inputs), "--grid", "--json")
        alone = TRMClient(busy.target).reason(GRID_MODEL, grid=grids[-1])
    assert (done.returncode, done.stderr) == (0, "")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["line"] for row in rows] == list(range(1, 25)) and not any("error" in row for row in rows)
    assert rows[-1]["answer"]["cells"] == alone.answer.cells and rows[-1]["steps"] == alone.steps


def _read_line_within(stream: TextIO, seconds: float) -> str:
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, f"no line within {seconds} s"
    return stream.readline()


def test_reason_batch_answers_a_pipes_lines_as_they_come(server):
    """QA: every line was read before the first was sent, so a pipe's first answer came only at its end."""
    batch = subprocess.Popen([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason-batch",
                              TEXT_MODEL, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    batch.stdin.write("play some jazz\n")
    batch.stdin.flush()
    assert _read_line_within(batch.stdout, 60).startswith("line 1: ")
    out, _ = batch.communicate("wake me up at seven\n", timeout=60)
    assert out.startswith("line 2: ") and batch.returncode == 0


def test_reason_batch_stops_where_the_model_went_away_naming_the_line_to_rerun_from(bundles, tmp_path):
    """QA: a model removed in a 20,000-line run gave 12,832 lines of NOT_FOUND, one each, and no line to resume at."""
    models = tmp_path / "models"
    shutil.copytree(bundles["text"], models / "text")
    shutil.copytree(bundles["grid"], models / "grid")  # a models folder left empty keeps serving what it served
    with ServerProcess([models]) as server:
        batch = subprocess.Popen([sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason-batch",
                                  TEXT_MODEL, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        batch.stdin.write("play some jazz\n")
        batch.stdin.flush()
        assert _read_line_within(batch.stdout, 60).startswith("line 1: ")
        shutil.move(models / "text", tmp_path / "retired")
        server.send_signal(signal.SIGHUP)
        while not any(record.get("event") == "model_retired" for record in server.log_records()):
            time.sleep(0.05)
        out, err = batch.communicate("wake me up\nhello\n", timeout=60)
    assert (batch.returncode, out) == (1, "")
    assert "trm-client: lines 2 on were not answered" in err and err.count("NOT_FOUND") == 1, err


def test_reason_batch_over_the_servers_limit_names_batch_size(bundles, tmp_path):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("play jazz\nwake me up\nhello\n")
    with ServerProcess([bundles["text"]], extra_args=["--max-batch-requests", "2"]) as limited:
        done = trm_client("--target", limited.target, "reason-batch", TEXT_MODEL, str(inputs), "--batch-size", "3",
                          "--json")
    assert done.returncode == 1
    assert "(the server's --max-batch-requests), got 3; set --batch-size to at most 2" in done.stderr
    assert json.loads(done.stdout)["error"]["details"].endswith("split the job into calls of at most 2")


def test_reason_batch_answers_the_lines_beside_one_over_the_servers_message_limit(bundles, tmp_path):
    """The call is split in halves until its lines pass; the line too large alone fails on its own line."""
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("play jazz\nwake me up\n" + "x " * 40_000 + "\nhello\nbook a table\n")
    with ServerProcess([bundles["text"]], extra_args=["--max-message-bytes", "65536"]) as limited:
        done = trm_client("--target", limited.target, "reason-batch", TEXT_MODEL, str(inputs), "--json")
    assert done.returncode == 1 and done.stderr == "trm-client: 1 of 5 lines failed\n"
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [result["line"] for result in results] == [1, 2, 3, 4, 5]
    assert [("error" in result) for result in results] == [False, False, True, False, False]
    assert results[2]["error"]["code"] == "RESOURCE_EXHAUSTED"
    assert results[2]["error"]["details"].endswith("the line alone is over the limit: shorten it")


def test_stream_shows_each_step_with_a_confidence_bar(server):
    done = trm_client(
        "--target",
        server.target,
        "reason",
        TEXT_MODEL,
        "play jazz",
        "--stream",
        "--max-steps",
        "3",
        "--halt-threshold",
        "1.0",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["step", "1"], ["step", "2"], ["step", "3"]]
    assert all("█" in line or "░" in line for line in lines)
    assert lines[-1].endswith("[max_steps]")


def test_reason_on_a_grid(server):
    done = trm_client("--target", server.target, "reason", GRID_MODEL, "--grid", SUDOKU, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["answer"]["cells"]) == 81
    assert isinstance(result["verified"], bool)


def test_tools_prints_openai_tool_definitions(server):
    done = trm_client("--target", server.target, "tools")
    assert done.returncode == 0, done.stderr
    assert {t["function"]["name"] for t in json.loads(done.stdout)} == {"trm_intent_test", "trm_sudoku_test"}


@pytest.mark.parametrize(
    ("command", "compared"),
    [(["models"], lambda told: told),
     (["reason", TEXT_MODEL, "hi"], lambda told: (told["prediction"], told["confidence"])),
     (["reason", "no-such-model", "hi"], lambda told: told["error"]["code"])],
    ids=["models", "reason", "an error"],
)
def test_json_before_the_command_is_taken_as_after_it(server, command, compared):
    """`trm-client --json reason ...` was refused as an unrecognised argument, with no hint where it belongs."""
    before = trm_client("--target", server.target, "--json", *command)
    after = trm_client("--target", server.target, *command, "--json")
    assert before.returncode == after.returncode, before.stderr
    assert compared(json.loads(before.stdout)) == compared(json.loads(after.stdout))


def test_errors_exit_non_zero_with_a_json_error(server):
    done = trm_client("--target", server.target, "reason", "no-such-model", "hello", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["request_id"]
    assert "NOT_FOUND" in done.stderr


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        ([GRID_MODEL, SUDOKU], f"model '{GRID_MODEL}' solves 9x9 grids: set --grid"),
        ([TEXT_MODEL, "hi", "--grid"], "set the text as the input argument, without --grid"),
        ([TEXT_MODEL, "   "], "text is blank (white space only): send the text to classify in the input argument"),
        ([TEXT_MODEL, "x" * 2001], "its first 2000 (limits.max_text_chars in `trm-client models --json`) do not hold "
                                   "the 16 tokens model 'intent-test' reads (limits.max_tokens in `trm-client models "
                                   "--json`): send at most 2000 characters"),
        ([GRID_MODEL, "--grid", SUDOKU[:80]], "the --grid input must have 81 symbols (9x9, row-major), got 80"),
        ([GRID_MODEL, "--grid", "x" + SUDOKU[1:]], "cell 0 of the --grid input (row 1, column 1) is 'x'"),
        ([TEXT_MODEL, "hi", "--max-steps", "99"], f"--max-steps must be 1..{N_SUP}"),
        ([TEXT_MODEL, "hi", "--min-steps", "9"], f"--min-steps (9) must not exceed {N_SUP}, the most steps model"),
        ([TEXT_MODEL, "hi", "--max-steps", "2", "--min-steps", "3"], "--min-steps (3) must not exceed --max-steps (2)"),
        ([TEXT_MODEL, "hi", "--halt-threshold", "2"], "--halt-threshold must be in (0, 1] (got 2)"),
        ([TEXT_MODEL, "hi", "--budget-ms", "99999999"], "--budget-ms must be at most"),
        ([TEXT_MODEL, "hi", "--top-k", "99"], f"--top-k must be at most {len(DEFAULT_TEXT_LABELS)}"),
    ],
)
def test_errors_name_the_flag_to_change_not_the_api_field(server, arguments, told):
    done = trm_client("--target", server.target, "reason", *arguments)
    assert done.returncode == 1
    assert done.stderr.startswith("trm-client: INVALID_ARGUMENT: ")
    assert told in done.stderr
    for api_name in ("ReasonRequest", "budget.", "grid.cells", "top_k", "ModelInfo"):
        assert api_name not in done.stderr


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        (["--retries", "0", "models"], "argument --retries: must be a whole number of at least 1, got '0'"),
        (["models", "--retries", "-1"], "argument --retries: must be a whole number of at least 1, got '-1'"),
        (["reason-batch", TEXT_MODEL, "-", "--batch-size", "0"], "argument --batch-size: must be a whole number of"),
        (["--timeout", "-1", "models"], "argument --timeout: must be a positive number of seconds, got '-1'"),
        (["--timeout", "nan", "models"], "argument --timeout: must be a positive number of seconds, got 'nan'"),
        (["reason", TEXT_MODEL, "hi", "--max-steps", "-1"], "argument --max-steps: must be a whole number of at"),
        (["reason", TEXT_MODEL, "hi", "--budget-ms", "-5"], "argument --budget-ms: must be a whole number of at"),
        (["reason", TEXT_MODEL, "hi", "--top-k", "99999999999"], "argument --top-k: must be at most 4294967295"),
        (["reason-batch", TEXT_MODEL, "-", "--top-k", "-1"], "argument --top-k: must be a whole number of at least 0"),
    ],
)
def test_options_out_of_range_are_usage_errors_naming_the_flag(arguments, told):
    done = trm_client(*arguments)
    assert done.returncode == 2
    assert told in done.stderr
    assert "Traceback" not in done.stderr and "max_attempts" not in done.stderr


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        (["--tls-cert", "client.pem"], "--tls-cert needs --tls-key: mutual TLS takes the client certificate and"),
        (["--tls-key", "client.key"], "--tls-key needs --tls-cert: mutual TLS takes the client certificate and"),
        (["--tls-ca", "/nonexistent.pem"], "--tls-ca: No such file or directory: /nonexistent.pem"),
        (["--target", "10.0.0.5:50051,trm.example:50051"], "--target: several endpoints must all be IPv4"),
        (["--target", "127.0.0.1"], "--target: '127.0.0.1' names no port: write HOST:PORT, e.g. 127.0.0.1:50051"),
        (["--target", "not a target"], "--target: 'not a target' has a space; write HOST:PORT"),
        (["--tls-ca", __file__], f"--tls-ca: {__file__} holds no PEM CERTIFICATE"),
    ],
)
def test_bad_connection_options_are_told_naming_the_flag_and_as_json(arguments, told):
    done = trm_client(*arguments, "models", "--json")
    assert done.returncode == 1
    assert done.stderr.startswith(f"trm-client: {told}")
    assert json.loads(done.stdout) == {"error": {"code": "INVALID_ARGUMENT", "details": ANY, "request_id": None}}
    assert json.loads(done.stdout)["error"]["details"].startswith(told)
    assert "Traceback" not in done.stderr


def test_a_bad_trm_target_names_the_variable():
    done = trm_client("models", target="10.0.0.5:50051,trm.example:50051")
    assert done.returncode == 1
    assert done.stderr.startswith("trm-client: $TRM_TARGET: several endpoints must all be IPv4")


def test_tls_server_name_alone_implies_tls(server):
    """A plaintext server cannot answer a TLS client: without TLS the call would succeed."""
    done = trm_client("--target", server.target, "--retries", "1", "--tls-server-name", "trm.test", "models")
    assert done.returncode == 1
    assert "trm-client: UNAVAILABLE: " in done.stderr  # gRPC logs the failed handshake before it


def test_json_errors_keep_the_servers_own_message(server):
    done = trm_client("--target", server.target, "reason", TEXT_MODEL, "hi", "--max-steps", "99", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["details"].startswith(f"budget.max_steps must be 1..{N_SUP}")
    assert f"--max-steps must be 1..{N_SUP}" in done.stderr


def test_a_deadline_error_names_the_timeout_flag(server):
    done = trm_client("--target", server.target, "--timeout", "0.000001", "reason", TEXT_MODEL, "hi")
    assert done.returncode == 1
    assert done.stderr.startswith("trm-client: DEADLINE_EXCEEDED: ")
    assert "; the deadline is --timeout (now 1e-06 s)" in done.stderr


@pytest.mark.parametrize("given_as", ["--target", "TRM_TARGET"])
def test_no_server_at_the_address_names_the_address_and_the_flag(given_as):
    address = f"127.0.0.1:{closed_port()}"
    args = ("--target", address) if given_as == "--target" else ()
    done = trm_client(*args, "--retries", "1", "models", target=address if given_as == "TRM_TARGET" else None)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    flag = "--target" if given_as == "--target" else "--target (or $TRM_TARGET)"
    assert f"; no server listens at {address}: start one, or name its address with {flag} (request_id=" in done.stderr


def test_a_server_without_the_rpc_is_named_older_than_the_client():
    """QA: against a server that lacked an RPC (an older release) the CLI printed only gRPC's "UNIMPLEMENTED:
    Method not implemented!", naming neither the call nor what to do."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        bare = grpc.server(pool)  # serves no method at all
        port = bare.add_insecure_port("127.0.0.1:0")
        bare.start()
        try:
            done = trm_client("--target", f"127.0.0.1:{port}", "reason", TEXT_MODEL, "hi")
        finally:
            bare.stop(None)
    assert done.returncode == 1 and done.stderr.startswith("trm-client: UNIMPLEMENTED: ")
    assert (f"; the server at 127.0.0.1:{port} does not serve the call `reason` makes: it is older than this client "
            f"(trm-client {importlib.metadata.version('trm-client')}), or not a trm.v1 server") in done.stderr


@pytest.mark.parametrize("timeout", ["inf", "1e9"])
def test_a_timeout_of_inf_or_a_billion_seconds_is_no_deadline(server, timeout):
    done = trm_client("--target", server.target, "--timeout", timeout, "reason", TEXT_MODEL, "hi", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"] >= 1


def test_ctrl_c_ends_the_command_with_status_130_and_no_traceback():
    """Interrupted mid-call: the "server" accepts the connection and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        argv = ["trm-client", "--target", target, "--timeout", "30", "models"]
        # Ctrl-C as a terminal delivers it, also where this test runs in the background (which starts children
        # with SIGINT ignored). Restored in the child's own Python: a preexec_fn can deadlock a fork taken while
        # another of pytest's threads holds a lock (it hung CI once).
        command = [sys.executable, "-c", (
            "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.argv = {argv!r}; runpy.run_module('trm_client.cli', run_name='__main__')"
        )]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            connection = _accept_while_running(silent, process)  # the command is in its call now
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 130
            assert process.stderr.read().decode() == ""
            connection.close()


INTERRUPTED_AT_IMPORT = """
import importlib.abc, importlib.metadata, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
program, loading = sys.argv[1:]

class CtrlCAtImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == loading:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCAtImport())
sys.argv = [program, "--help"]
(entry,) = importlib.metadata.entry_points(group="console_scripts", name=program)
sys.exit(entry.load()())
"""


@pytest.mark.parametrize(("program", "loading"), [("trm-client", "grpc"), ("trm-mcp", "mcp")])
def test_ctrl_c_while_the_program_loads_ends_it_with_status_130_and_no_traceback(program: str, loading: str):
    """The installed entry point, with a Ctrl-C as `loading` (gRPC, the MCP SDK) starts to import."""
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_AT_IMPORT, program, loading], capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr) == (130, "")


def _accept_while_running(listener: socket.socket, process: subprocess.Popen) -> socket.socket:
    """The first connection to `listener`; fails with the process's stderr if it ends before connecting."""
    listener.settimeout(0.5)
    for _ in range(240):
        try:
            return listener.accept()[0]
        except TimeoutError:
            if process.poll() is not None:
                pytest.fail(f"the command ended (status {process.returncode}) before connecting: "
                            f"{process.stderr.read().decode()}")
    pytest.fail("the command did not connect in 120 s")


def test_a_reader_that_stops_early_ends_the_command_quietly(server):
    """`trm-client tools | head`: the closed pipe ends the command with status 1 and no traceback."""
    command = [sys.executable, "-m", "trm_client.cli", "--target", server.target, "tools"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()  # before the command can write: every write it makes meets a closed pipe
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1
    assert stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device every write to fails full)")
def test_an_output_on_a_full_disk_ends_the_command_with_a_line_not_a_traceback(server):
    """`trm-client ... > /dev/full` (or a full disk) ended in a traceback after its call had succeeded."""
    command = [sys.executable, "-m", "trm_client.cli", "--target", server.target, "reason", TEXT_MODEL, "hi"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "cli.py: cannot write the output: No space left on device\n"


def test_stream_on_a_terminal_redraws_one_line_in_place(server):
    """On a TTY each step overwrites the last (carriage return + clear line); one newline at the end."""
    controller, terminal = pty.openpty()
    command = [
        sys.executable,
        "-m",
        "trm_client.cli",
        "--target",
        server.target,
        "reason",
        TEXT_MODEL,
        "play jazz",
    ]
    with subprocess.Popen(
        [*command, "--stream", "--max-steps", "3", "--halt-threshold", "1.0"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "40"},
    ) as process:
        os.close(terminal)
        output = _read_until_closed(controller)
        assert process.wait(timeout=120) == 0, process.stderr.read()
    frames = output.split("\r\x1b[2K")[1:]
    assert [frame.split()[:2] for frame in frames] == [["step", "1"], ["step", "2"], ["step", "3"]]
    assert output.count("\n") == 1 and output.endswith("\n")
    # a step before the last fits one row of the 40-column terminal (a wrapped one left rows behind); the last whole
    assert all(len(frame) <= 39 for frame in frames[:-1]) and len(frames[-1].rstrip("\n")) > 39


def _read_until_closed(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # Linux reports EIO once the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.parametrize("command", ["trm-client", "trm-mcp"])
def test_every_command_tells_its_version(command: str):
    shown = subprocess.run([str(Path(sys.executable).parent / command), "--version"], capture_output=True,
                           text=True, timeout=60)
    assert (shown.returncode, shown.stdout) == (0, f"{command} {importlib.metadata.version('trm-client')}\n")


def test_version_before_a_command_is_a_usage_error_not_the_clients_version():
    """QA: `trm-client --version 1.0.0 reason faq "..."` printed "trm-client 1.0.0" (read as the model's version)
    and sent nothing, status 0."""
    done = trm_client("--version", "1.0.0", "reason", TEXT_MODEL, "hello")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.endswith("error: --version before the command prints trm-client's own version: a model's "
                                "version goes after the command (trm-client reason MODEL INPUT --version V)\n")


DIES_AFTER_ITS_FIRST_STEP = """
import os, sys, time
from concurrent import futures
import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

class DiesAfterItsFirstStep(trm_pb2_grpc.ReasoningServiceServicer):
    def ReasonStream(self, request, context):
        answer = trm_pb2.Answer(classification=trm_pb2.ClassAnswer(label="greeting", confidence=0.5))
        yield trm_pb2.ReasonStep(step=1, answer=answer, request_id="r")
        time.sleep(0.5)
        os._exit(1)

server = grpc.server(futures.ThreadPoolExecutor(2))
trm_pb2_grpc.add_ReasoningServiceServicer_to_server(DiesAfterItsFirstStep(), server)
print(server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
server.wait_for_termination()
"""


def test_a_server_that_goes_away_during_a_stream_is_told_as_such_not_as_a_tls_server():
    """gRPC says "Stream removed (Socket closed)" once the call has begun; no TLS option would change that."""
    dies = [sys.executable, "-c", DIES_AFTER_ITS_FIRST_STEP]
    with subprocess.Popen(dies, stdout=subprocess.PIPE, text=True) as dying:
        port = dying.stdout.readline().strip()
        done = trm_client("--target", f"127.0.0.1:{port}", "reason", TEXT_MODEL, "hi", "--stream")
    assert done.returncode == 1 and done.stdout.startswith("step  1  greeting")
    assert ("Stream removed (Socket closed); the server closed the connection during the call (stopped or "
            "restarted?): run the command again") in done.stderr
    assert "TLS" not in done.stderr
