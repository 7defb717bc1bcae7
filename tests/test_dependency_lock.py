"""The environment the tests run in is the one constraints.txt records, which `make install` installs within."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"
PIN = re.compile(r'([A-Za-z0-9_.-]+)==([^+\s;]+)(\+\S+)?\s*(?:;\s*python_version\s*==\s*"([0-9.]+)")?')


def pins(lines: list[str]) -> dict[str, tuple[str, str | None]]:
    """{distribution: (version, the Python version of its marker or None)} of `name==version` lines, the version
    without a local label (torch's +cpu)."""
    found = (PIN.fullmatch(line.strip()) for line in lines)
    return {match[1].lower(): (match[2], match[4]) for match in found if match}


def test_every_installed_distribution_has_the_version_constraints_txt_pins():
    locked = pins(CONSTRAINTS.read_text().splitlines())
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if any(marker not in (None, python) for _, marker in locked.values()):
        pytest.skip(f"constraints.txt pins the versions of another Python than this {python}; pip chose these")
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    installed = {name: version for name, (version, _) in pins(frozen).items()}
    wanted = {name: version for name, (version, _) in locked.items()}
    differ = sorted(f"{name} {installed.get(name, 'not installed')} (constraints.txt: {wanted.get(name, 'none')})"
                    for name in installed.keys() | wanted.keys() if installed.get(name) != wanted.get(name))
    assert not differ, ("the environment differs from constraints.txt: " + "; ".join(differ) + ". `make install` "
                        "installs its versions; after changing a dependency, `make lock` writes them")
