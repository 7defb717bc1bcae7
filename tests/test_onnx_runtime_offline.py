"""The product's processes keep ONNX Runtime offline: its telemetry (DNS lookups of Microsoft's collector, an
upload, a device id and an event cache under ~/.cache) is off wherever the server, the trainer or the benchmark's
plain server loads a step. What telemetry leaves on disk is the sign checked here (a run under strace showed the
lookups with it and none without)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

STEP = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "intent-clinc150" / "model.int8.onnx"


# ONNX Runtime sends no telemetry where the environment says it runs in CI (seen: CI, GITHUB_ACTIONS, TF_BUILD,
# JENKINS_URL, Azure Pipelines' SYSTEM_TEAMFOUNDATIONCOLLECTIONURI): the processes here get only these variables, as
# on a user's machine, so the check means the same in any CI (and the cache folder is HOME's, whatever
# XDG_CACHE_HOME the caller has).
KEPT_VARIABLES = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TMPDIR")


def _files_written_under_home(first_import: str, home: Path) -> list[str]:
    """The files a Python process that imports `first_import`, then runs a session of STEP, leaves under `home`."""
    env = {key: os.environ[key] for key in KEPT_VARIABLES if key in os.environ} | {"HOME": str(home)}
    code = (f"import {first_import}, onnxruntime; "
            f"onnxruntime.InferenceSession({str(STEP)!r}, providers=['CPUExecutionProvider'])")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)
    return sorted(str(path.relative_to(home)) for path in home.rglob("*") if path.is_file())


def test_onnx_runtime_alone_writes_its_telemetry_so_the_check_can_fail(tmp_path: Path) -> None:
    assert any(".onnxruntime" in path for path in _files_written_under_home("json", tmp_path))


@pytest.mark.parametrize("package", ["trm_service.runtime.session", "trainer.evaluate", "loadtests.plain_server"])
def test_the_products_processes_run_onnx_runtime_without_telemetry(tmp_path: Path, package: str) -> None:
    assert _files_written_under_home(package, tmp_path) == []
