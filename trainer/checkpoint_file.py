"""A run's checkpoint file, for both trainers: written atomically and durably, read with a clear error if damaged."""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

RESTART = "--restart trains anew (the file is replaced), or remove it"  # a fit's way past a checkpoint it cannot read


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically (to `path`.tmp, flushed to the disk, then renamed over it): a killed run
    or a lost power never leaves half a checkpoint. A disk that cannot take it (torch tells a full one as
    "unexpected pos ...") leaves the last checkpoint, no partial file, and an OSError saying the space left. The
    temporary file is made anew, never followed: a link planted at its name made the fit write over its target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.unlink(missing_ok=True)  # a leftover of a killed run, or a link: removed itself, its target untouched
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(path)
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        raise OSError(f"cannot write the checkpoint {tmp} ({error}; {free / 2**20:.0f} MB free there)") from error


class NoRoomForCheckpoint(OSError):
    """A run folder with less room than the run's checkpoint, found before the run trains."""


def check_room(path: Path, model: torch.nn.Module) -> None:
    """Raise NoRoomForCheckpoint where the folder of the checkpoint `path` has less room than a checkpoint of `model`
    takes at least (its weights, their average and the optimizer's two moments): a run folder too small failed only
    at its first save, after the data's preparation and the steps before it."""
    needed = 4 * sum(p.numel() * p.element_size() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise NoRoomForCheckpoint(f"the run folder {path.parent} has {free / 2**20:.1f} MB free and this run's "
                                  f"checkpoint takes at least {needed / 2**20:.1f} MB: free space there, or give "
                                  "the run another folder with --run-dir")


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that is not a whole one, or that holds more than tensors and numbers; `reason` says which."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the checkpoint {path} {reason}: {RESTART}")
        self.reason = reason


def read_checkpoint(path: Path, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """The state saved in `path`, read as tensors, numbers, strings and their containers only (torch's
    `weights_only`): a checkpoint that someone else put in a run folder cannot run code as the user who resumes or
    exports it. UnreadableCheckpoint, naming `--restart`, for a file that is not a whole checkpoint (cut short by a
    copy or a full disk outside this code, emptied, or another file) or that holds other objects; OSError where the
    file cannot be read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as error:  # what torch's unpickler raises on a damaged file varies: struct.error, EOFError, ...
        if unsafe := re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) (\S+)", str(error)):
            raise UnreadableCheckpoint(path, f"holds Python objects besides tensors and numbers ({unsafe.group(1)}), "
                                       "which reading could run as code: it was written by trm-train before "
                                       "2026-12-07, or by another program") from error
        told = re.search(r"WeightsUnpickler error:\s*(.+)", str(error))  # after torch's advice to load unsafely
        raise UnreadableCheckpoint(path, f"is damaged ({told.group(1) if told else error!r})") from error


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM are recorded in the list it yields instead of raised wherever the run
    is: the training loop ends after its step, saves its checkpoint and says `stopped` (a Ctrl-C raised inside a
    checkpoint's write cut it short, and the fit said the disk was full). The handlers before are put back after."""
    requested: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: requested.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stopped(step: int, path: Path) -> str:
    """What a run stopped by Ctrl-C or SIGTERM says, its checkpoint saved."""
    return f"stopped at step {step}; checkpoint saved to {path}: the same command resumes from it"
