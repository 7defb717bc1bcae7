"""The trm-client command against a real server: --json output parses and agrees with the SDK."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from sdk_test_support import GRID_MODEL, SUDOKU, TEXT_MODEL

from trainer.testing import DEFAULT_TEXT_LABELS


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
    assert TEXT_MODEL in done.stdout and GRID_MODEL in done.stdout


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


def test_errors_exit_non_zero_with_a_json_error(server):
    done = trm_client("--target", server.target, "reason", "no-such-model", "hello", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "NOT_FOUND"
    assert error["request_id"]
    assert "NOT_FOUND" in done.stderr


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
    ) as process:
        os.close(terminal)
        output = _read_until_closed(controller)
        assert process.wait(timeout=120) == 0, process.stderr.read()
    frames = output.split("\r\x1b[2K")[1:]
    assert [frame.split()[:2] for frame in frames] == [["step", "1"], ["step", "2"], ["step", "3"]]
    assert output.count("\n") == 1 and output.endswith("\n")


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
