"""`make install` and `make install-runtime` (run by `make test` and `make serve`) run pip only when a file that says
what to install changed since pip last succeeded: read with `make -n` (nothing run) against a venv folder of the
test's own."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FULL = "pip install -q -c constraints.txt -e protos -e '.[train,dev]' -e 'clients[mcp]'"
RUNTIME = "pip install -q -c constraints.txt -e protos -e . -e clients"
INPUTS = ("pyproject.toml", "clients/pyproject.toml", "protos/pyproject.toml", "constraints.txt")


def _would_run(venv: Path, target: str, *changed: str) -> str:
    """What `make TARGET` would run with `venv` as its venv, `changed` files taken as just edited."""
    flags = [f"-W{path}" for path in changed]
    done = subprocess.run(["make", "-n", f"VENV={venv}", *flags, target], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("target", "command"), [("install", FULL), ("install-runtime", RUNTIME)])
def test_pip_runs_again_only_when_what_it_installs_changed(tmp_path: Path, target: str, command: str) -> None:
    """Probe: `make test` ran pip every time, which needs the package index (offline, an installed checkout failed at
    setuptools) and took 20-60 s."""
    venv = tmp_path / "venv"
    assert command in _would_run(venv, target)  # a fresh machine: installs
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    (venv / ".installed").touch()  # as a full install leaves it: both stamps
    (venv / ".runtime-installed").touch()
    assert "pip install" not in _would_run(venv, target)
    for changed in INPUTS:
        assert command in _would_run(venv, target, changed), changed
