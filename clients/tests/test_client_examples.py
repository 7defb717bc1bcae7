"""The examples run against a real server, and the voice-command CSV is well formed."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sdk_test_support import BAD_CONNECTION_OPTIONS, GRID_MODEL, TEXT_MODEL, closed_port

from trainer.testing import DEFAULT_TEXT_LABELS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VOICE = EXAMPLES / "voice_pipeline"


def run_example(script: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def test_agent_loop_offers_the_tools_and_runs_the_calls(server):
    done = run_example(
        EXAMPLES / "agent_loop.py", "--target", server.target, "--tool", "trm_intent_test", "play jazz"
    )
    assert done.returncode == 0, done.stderr
    assert "trm_intent_test:" in done.stdout and "trm_sudoku_test:" in done.stdout
    assert 'assistant -> trm_intent_test({"text": "play jazz"' in done.stdout
    tool_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("tool:"))
    reply = json.loads(tool_line.split("tool:", 1)[1])
    assert reply["answer"] in DEFAULT_TEXT_LABELS
    assert "[scripted stand-in]" in done.stdout


def test_voice_pipeline_classifies_every_utterance(server):
    utterances = (VOICE / "utterances.txt").read_text().splitlines()
    done = run_example(
        VOICE / "pipeline.py",
        "--target",
        server.target,
        "--model",
        TEXT_MODEL,
        "--json",
        str(VOICE / "utterances.txt"),
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["utterance"] for r in records] == utterances
    assert all(r["intent"] in DEFAULT_TEXT_LABELS for r in records)
    assert all(r["fallback"] in (None, "out_of_scope", "low_confidence") for r in records)
    assert done.stderr.count("fallback") == sum(r["fallback"] is not None for r in records)


@pytest.mark.parametrize("from_stdin", [False, True])
def test_voice_pipeline_reads_on_past_a_line_that_is_not_utf8(server, tmp_path, from_stdin):
    """A line with a byte that is not UTF-8 (a Latin-1 file, say) is read with U+FFFD there: the run goes on."""
    data = b"open main dot py\ncaf\xe9 order\ngo to line ten\n"
    path = tmp_path / "utterances.txt"
    path.write_bytes(data)
    command = [sys.executable, str(VOICE / "pipeline.py"), "--target", server.target, "--model", TEXT_MODEL, "--json"]
    done = subprocess.run([*command, *([] if from_stdin else [str(path)])], input=data if from_stdin else None,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["utterance"] for r in records] == ["open main dot py", "caf\ufffd order", "go to line ten"]


def test_voice_pipeline_routes_unsure_utterances_from_stdin_to_the_fallback(server):
    lines = "open main dot py\n\ngo to line ten\n"
    done = run_example(
        VOICE / "pipeline.py",
        "--target",
        server.target,
        "--model",
        TEXT_MODEL,
        "--min-confidence",
        "1",
        stdin=lines,
    )
    assert done.returncode == 0, done.stderr
    fallbacks = re.findall(r"-> fallback \((\w+)\): '([^']*)'", done.stdout)
    # Every utterance is below a bar of 1; an out-of-scope one is reported as such first.
    assert [utterance for _, utterance in fallbacks] == ["open main dot py", "go to line ten"]
    assert {why for why, _ in fallbacks} <= {"low_confidence", "out_of_scope"}


def test_voice_pipeline_writes_a_record_for_a_failed_call_and_refuses_a_model_of_another_kind(server):
    too_long = "a" * 3000  # over the model's max_chars, a word that does not end within them
    done = run_example(VOICE / "pipeline.py", "--target", server.target, "--model", TEXT_MODEL, "--json",
                       stdin=f"open main dot py\n{too_long}\ngo to line ten\n")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["utterance"] for r in records] == ["open main dot py", too_long.strip(), "go to line ten"]
    assert records[1]["intent"] is None and records[1]["fallback"].startswith("error INVALID_ARGUMENT: text has")
    grid = run_example(VOICE / "pipeline.py", "--target", server.target, "--model", GRID_MODEL, stdin="hi\n")
    assert grid.returncode == 2
    assert f"--model {GRID_MODEL} is a grid model: give a text_classification or sequence model" in grid.stderr
    chained = run_example(VOICE / "pipeline.py", "--target", server.target, "--model", TEXT_MODEL,
                          "--dictation-model", TEXT_MODEL, stdin="hi\n")
    assert chained.returncode == 2
    assert f"--dictation-model {TEXT_MODEL} is a text_classification model: give a sequence model" in chained.stderr


@pytest.mark.parametrize(
    ("script", "arguments", "told"),
    [
        *((EXAMPLES / "agent_loop.py", arguments, told) for arguments, told in BAD_CONNECTION_OPTIONS),
        *((VOICE / "pipeline.py", arguments, told) for arguments, told in BAD_CONNECTION_OPTIONS),
        (VOICE / "pipeline.py", ["/nonexistent.txt"], "argument input: can't open '/nonexistent.txt'"),
        (VOICE / "pipeline.py", ["--min-confidence", "nan"], "argument --min-confidence: must be a number from 0 to 1"),
        (VOICE / "pipeline.py", ["--min-confidence", "2"], "argument --min-confidence: must be a number from 0 to 1"),
    ],
)
def test_examples_refuse_bad_options_naming_them(script, arguments, told):
    done = run_example(script, *arguments, stdin="")
    assert done.returncode == 2
    assert f"{script.name}: error: {told}" in done.stderr
    assert "Traceback" not in done.stderr


def test_agent_loop_without_a_server_says_so(bundles):
    from trm_service.testing import ServerProcess

    with ServerProcess([bundles["text"]]) as process:
        target = process.target  # nobody listens there once the server has stopped
    done = run_example(EXAMPLES / "agent_loop.py", "--target", target, "--retries", "1")
    assert done.returncode == 1
    assert "agent_loop: " in done.stderr and "UNAVAILABLE" in done.stderr
    assert "Traceback" not in done.stderr


def test_voice_command_csv_is_a_trainable_text_label_file():
    with (VOICE / "commands.csv").open(newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["text", "label"]
        rows = list(reader)
    assert len(rows) >= 200
    assert all(len(row) == 2 and row[0].strip() and row[1].strip() for row in rows)
    counts = Counter(label for _, label in rows)
    assert {"open_file", "go_to_line", "rename_symbol", "run_tests", "commit", "undo", "oos"} <= set(counts)
    assert min(counts.values()) >= 10
    assert len({text for text, _ in rows}) == len(rows)


def test_agent_loop_names_the_tools_when_told_one_that_is_not_offered(server):
    done = run_example(EXAMPLES / "agent_loop.py", "--target", server.target, "--tool", "trm_nope", "play jazz")
    assert done.returncode == 1
    assert done.stderr == ("agent_loop: --tool 'trm_nope' is not offered here; choose one of trm_intent_test, "
                           "trm_sudoku_test\n")


def test_agent_loop_ends_quietly_when_its_reader_stops_early(server):
    """QA: `agent_loop.py | head -1` ended with a BrokenPipeError traceback."""
    command = [sys.executable, str(EXAMPLES / "agent_loop.py"), "--target", server.target, "--tool",
               "trm_intent_test", "play jazz"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1
    assert stderr == ""


def test_agent_loop_stops_on_ctrl_c_with_status_130_and_no_traceback():
    """QA: Ctrl-C while the client waited to retry an unreachable service ended with a KeyboardInterrupt
    traceback."""
    argv = ["agent_loop.py", "--target", f"127.0.0.1:{closed_port()}", "--retries", "30"]
    command = [sys.executable, "-c", (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = {argv!r}; runpy.run_path({str(EXAMPLES / 'agent_loop.py')!r}, run_name='__main__')"
    )]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=3)  # retrying
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert process.stderr.read() == ""


def test_agent_loop_goes_on_where_the_output_encoding_lacks_a_character(server):
    """QA: PYTHONIOENCODING=ascii and a request "café" ended with a UnicodeEncodeError traceback."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "agent_loop.py"), "--target", server.target, "--tool",
                           "trm_intent_test", "café au lait"], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "     user: caf? au lait" in done.stdout.decode("ascii").splitlines()


def test_voice_pipeline_ends_quietly_when_its_reader_stops_early(server):
    command = [sys.executable, str(VOICE / "pipeline.py"), "--target", server.target, "--model", TEXT_MODEL,
               str(VOICE / "utterances.txt")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        process.stdout.close()  # `| head -0`: every write meets a closed pipe
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 1
    assert stderr == ""


def test_voice_pipeline_stops_on_ctrl_c_with_status_130_and_no_traceback(server):
    """Interrupted while it waits for the next utterance on stdin, as at the end of a live session."""
    argv = ["pipeline.py", "--target", server.target, "--model", TEXT_MODEL, "--json"]
    command = [sys.executable, "-c", (  # Ctrl-C as a terminal delivers it, also where pytest runs in the background
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = {argv!r}; runpy.run_path({str(VOICE / 'pipeline.py')!r}, run_name='__main__')"
    )]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        process.stdin.write("play some jazz\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline())["utterance"] == "play some jazz"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert "Traceback" not in process.stderr.read()  # (the fallback's line goes to stderr with --json)


def test_voice_pipeline_goes_on_where_the_output_encoding_lacks_a_character(server):
    """A cp1252 console (or PYTHONIOENCODING): an utterance's emoji is written "?", and the next line still runs."""
    done = subprocess.run([sys.executable, str(VOICE / "pipeline.py"), "--target", server.target, "--model",
                           TEXT_MODEL], input="hello 🎉\nplay jazz\n".encode(), capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "cp1252"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode("cp1252").splitlines()
    assert [line.split("  ")[-1].strip() for line in lines] == ["hello ?", "play jazz"]
