"""The committed Python stubs are exactly what protos/generate.sh produces from trm.proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROTOS = Path(__file__).resolve().parents[1] / "protos"
STUBS = ("trm_pb2.py", "trm_pb2.pyi", "trm_pb2_grpc.py")


def test_regenerated_stubs_match_the_committed_ones(tmp_path: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(PROTOS / "generate.sh"), str(tmp_path)], check=True, env=env, capture_output=True)
    for name in STUBS:
        regenerated = (tmp_path / "trm" / "v1" / name).read_text()
        committed = (PROTOS / "trm" / "v1" / name).read_text()
        if regenerated != committed:
            pytest.fail(f"protos/trm/v1/{name} is stale: run `make proto` and commit the result")
