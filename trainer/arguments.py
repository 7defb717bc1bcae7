"""argparse types shared by the trainer's commands (light: no torch)."""

from __future__ import annotations

import argparse


def whole_number(text: str) -> int:
    """A whole number, 0 or more (a seed, a count of threads or examples)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, got {text!r}")
    return int(text)
