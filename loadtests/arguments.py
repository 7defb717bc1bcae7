"""argparse types of the benchmark and load-test commands: values refused before any server starts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text!r}")
    return value


def report_folder(text: str) -> Path:
    """A folder for the reports (made if missing): not a file, nor inside one, so that a run's figures are never
    lost to a folder that cannot be made after it."""
    folder = Path(text)
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise argparse.ArgumentTypeError(f"{path} is a file, not a folder: name a folder (made if missing)")
            break
    return folder
