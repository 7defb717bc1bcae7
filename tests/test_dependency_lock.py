"""The environment the tests run in is the one constraints.txt records, which `make install` installs within."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def pins(lines: list[str]) -> dict[str, str]:
    """{distribution: version} of `name==version` lines, the version without a local label (torch's +cpu)."""
    found = (re.fullmatch(r"([A-Za-z0-9_.-]+)==([^+\s]+)(\+\S+)?", line.strip()) for line in lines)
    return {match[1].lower(): match[2] for match in found if match}


def test_every_installed_distribution_has_the_version_constraints_txt_pins():
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    installed, locked = pins(frozen), pins(CONSTRAINTS.read_text().splitlines())
    differ = sorted(f"{name} {installed.get(name, 'not installed')} (constraints.txt: {locked.get(name, 'none')})"
                    for name in installed.keys() | locked.keys() if installed.get(name) != locked.get(name))
    assert not differ, ("the environment differs from constraints.txt: " + "; ".join(differ) + ". `make install` "
                        "installs its versions; after changing a dependency, `make lock` writes them")
