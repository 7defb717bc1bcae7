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

from trm_bundle.offline import TELEMETRY_SWITCH

STEP = Path(__file__).resolve().parents[1] / "trm_service" / "models" / "intent-clinc150" / "model.int8.onnx"


# ONNX Runtime sends no telemetry where one of these says it runs in CI (seen: CI=true, GITHUB_ACTIONS, TF_BUILD,
# JENKINS_URL): the processes here run without them, as on a user's machine, so the check means the same in CI.
CI_MARKERS = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
              "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
              "ORT_RUNNING_UNIT_TESTS")


def _files_written_under_home(first_import: str, home: Path) -> list[str]:
    """The files a Python process that imports `first_import`, then runs a session of STEP, leaves under `home`
    (its cache folder there too, whatever XDG_CACHE_HOME the caller has)."""
    unset = {TELEMETRY_SWITCH, "XDG_CACHE_HOME", *CI_MARKERS}
    env = {key: value for key, value in os.environ.items() if key not in unset} | {"HOME": str(home)}
    code = (f"import {first_import}, onnxruntime; "
            f"onnxruntime.InferenceSession({str(STEP)!r}, providers=['CPUExecutionProvider'])")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120, capture_output=True)
    return sorted(str(path.relative_to(home)) for path in home.rglob("*") if path.is_file())


def test_onnx_runtime_alone_writes_its_telemetry_so_the_check_can_fail(tmp_path: Path) -> None:
    assert any(".onnxruntime" in path for path in _files_written_under_home("json", tmp_path))


@pytest.mark.parametrize("package", ["trm_service.runtime.session", "trainer.evaluate", "loadtests.plain_server"])
def test_the_products_processes_run_onnx_runtime_without_telemetry(tmp_path: Path, package: str) -> None:
    assert _files_written_under_home(package, tmp_path) == []
