"""Each command started with its standard output closed (`cmd >&-`, sys.stdout None) says so and ends with status 2:
trm-client and trm-train had ended in an AttributeError traceback, and trm-service in one before serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(("command", "goes_there"), [
    ("trm-client --target 127.0.0.1:1 models", "the answers go there"),
    ("trm-mcp --target 127.0.0.1:1", "its MCP messages go there"),
    ("trm-train presets", "the command's report goes there"),
    ("trm-service serve --port 0 --metrics-port 0 --no-default-models", "the server's log lines go there"),
])
def test_a_command_with_its_output_closed_says_so(command: str, goes_there: str) -> None:
    done = subprocess.run(["bash", "-c", f"{BIN}/{command} >&-"], capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)
    said = f"{command.split()[0]}: standard output is closed (>&-), and {goes_there}: give it a file"
    assert done.returncode == 2 and done.stderr.startswith(said), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
