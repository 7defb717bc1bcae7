"""The client docs name what exists: the example commands' files, the shipped model's labels, every defer reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from trm_client.tool_result import DEFER_REASONS

REPO = Path(__file__).resolve().parents[2]
CLIENTS_README = REPO / "clients" / "README.md"
VOICE_README = REPO / "clients" / "examples" / "voice_pipeline" / "README.md"


def json_examples(readme: Path) -> list[dict]:
    """The JSON code blocks of a README, parsed."""
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme.read_text(), flags=re.DOTALL)]


def test_voice_pipeline_commands_name_files_that_exist_from_the_repository_root():
    commands = [line[2:].split(" #")[0] for line in VOICE_README.read_text().splitlines() if line.startswith("$ ")]
    files = {word for command in commands for word in command.split() if re.search(r"\.(py|txt|csv)$", word)}
    assert "clients/examples/voice_pipeline/pipeline.py" in files
    assert sorted(name for name in files if not (REPO / name).is_file()) == []


def test_the_intent_example_names_labels_of_intent_clinc150():
    manifest = REPO / "trm_service" / "models" / "intent-clinc150" / "manifest.json"
    labels = set(json.loads(manifest.read_text())["labels"])
    (example,) = [e for e in json_examples(CLIENTS_README) if e.get("model") == "intent-clinc150"]
    assert {example["answer"], *(label for label, _ in example["alternatives"])} <= labels


def test_every_defer_reason_is_documented():
    text = CLIENTS_README.read_text()
    for reason in DEFER_REASONS:
        assert f"`{reason}`" in text[text.index("`defer_to_llm` is true") :], reason


def test_the_sdk_example_runs_as_written_against_the_shipped_models(shipped_server):
    (example, *_) = re.findall(r"```python\n(.*?)```", CLIENTS_README.read_text(), flags=re.DOTALL)
    code = example.replace("127.0.0.1:50051", shipped_server.target)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()[:4]]
    assert sorted(listed) == ["code-dictation", "intent-clinc150", "routing-20ng", "sudoku"]
