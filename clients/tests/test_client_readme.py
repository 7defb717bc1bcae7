"""README.md's "Try it" commands, run as written against a real server hosting the packaged models."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
README_TARGET, README_METRICS = "127.0.0.1:50051", "127.0.0.1:9090"


def try_it_blocks() -> list[tuple[str, str]]:
    """(language, code) of each code block of the "Try it" part, in order."""
    text = README.read_text()
    part = text[text.index("Try it from a second shell") : text.index("Every flag has a `TRM_*`")]
    return re.findall(r"```(\w+)\n(.*?)```", part, flags=re.DOTALL)


def run_block(language: str, code: str, server) -> subprocess.CompletedProcess[str]:
    """Runs one block with the README's addresses pointed at the test server."""
    code = code.replace(README_TARGET, server.target).replace(README_METRICS, f"127.0.0.1:{server.metrics_port}")
    env = {
        **os.environ,
        "TRM_TARGET": server.target,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_try_it_gives_trm_client_and_python_before_grpcurl():
    blocks = try_it_blocks()
    assert [language for language, _ in blocks] == ["bash", "python", "bash"]
    assert "trm-client" in blocks[0][1] and "grpcurl" not in blocks[0][1]
    assert "grpcurl" in blocks[2][1]


def test_try_it_trm_client_commands_work(shipped_server):
    language, code = try_it_blocks()[0]
    done = run_block(language, code, shipped_server)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("intent-clinc150") and "in_scope_accuracy" in line for line in lines)
    assert any(line.startswith("answer:") for line in lines)
    reason_json = json.loads(next(line for line in lines if line.startswith("{")))
    assert reason_json["model"] == "intent-clinc150" and reason_json["prediction"]
    assert any(line.startswith("trm_requests_total{") for line in lines)


def test_try_it_python_health_check_and_reflection_work(shipped_server):
    language, code = try_it_blocks()[1]
    done = run_block(language, code, shipped_server)
    assert done.returncode == 0, done.stderr
    status, services = done.stdout.splitlines()
    assert status == "SERVING"
    assert "trm.v1.ReasoningService" in services and "grpc.health.v1.Health" in services


@pytest.mark.skipif(shutil.which("grpcurl") is None, reason="grpcurl is not installed (Debian does not package it)")
def test_try_it_grpcurl_commands_work(shipped_server):
    language, code = try_it_blocks()[2]
    done = run_block(language, code, shipped_server)
    assert done.returncode == 0, done.stderr
    assert "trm.v1.ReasoningService" in done.stdout and '"SERVING"' in done.stdout
