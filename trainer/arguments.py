"""argparse types shared by the trainer's commands and the benchmarks (light: no torch)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from trm_bundle.manifest import VERSION_RULE, is_bundle_version


def whole_number(text: str) -> int:
    """A whole number, 0 or more (a seed, a count of threads or examples)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return int(text)


SEED_LIMIT = 2**32 - 1  # scikit-learn's random_state takes no larger seed
THREADS_PER_CPU = 4  # more torch threads than this per CPU only slow a fit down (100,000 crashed it)


def seed_number(text: str) -> int:
    """A seed: a whole number from 0 to SEED_LIMIT."""
    value = whole_number(text)
    if value > SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {SEED_LIMIT}, got {text!r}")
    return value


def thread_count(text: str) -> int:
    """A count of torch threads: 0 (torch's default) up to THREADS_PER_CPU per CPU of this machine."""
    value, most = whole_number(text), THREADS_PER_CPU * (os.cpu_count() or 1)
    if value > most:
        raise argparse.ArgumentTypeError(f"must be 0 (torch's default) to {most} ({THREADS_PER_CPU} per CPU of this "
                                         f"machine), got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def bundle_version(text: str) -> str:
    """A bundle's version: VERSION_RULE."""
    if not is_bundle_version(text):
        raise argparse.ArgumentTypeError(f"must be {VERSION_RULE}, got {text!r}")
    return text


def writable_folder(text: str) -> str:
    """A folder to write to (made if missing): not a file, nor inside one, nor on a read-only disk or in a folder
    this user cannot write, so that no command ends in a traceback after its work."""
    folder = Path(text)
    try:
        folder.resolve()  # a link loop: RuntimeError (a traceback before)
        existing = next(path for path in (folder, *folder.parents) if path.exists())  # a name too long: OSError
    except (OSError, RuntimeError) as error:
        raise argparse.ArgumentTypeError(f"cannot be a folder here ({getattr(error, 'strerror', None) or error}): "
                                         "name another") from None
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, not a folder: name a folder (made if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{existing} cannot be written (a read-only disk, or a folder of another "
                                         "user): name a folder you can write")
    return text
