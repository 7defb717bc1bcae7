"""A run's checkpoint file, for both trainers: written atomically and durably, read with a clear error if damaged."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch


def write_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically (to `path`.tmp, flushed to the disk, then renamed over it): a killed run
    or a lost power never leaves half a checkpoint. A disk that cannot take it (torch tells a full one as
    "unexpected pos ...") leaves the last checkpoint, no partial file, and an OSError saying the space left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as file:
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


def read_checkpoint(path: Path, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """The state saved in `path`; a ValueError naming `--restart` for a file that is not a whole checkpoint (cut
    short by a copy or a full disk outside this code, emptied, or another file)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        raise ValueError(f"the checkpoint {path} is damaged ({error}): --restart trains anew (the file is "
                         "replaced), or remove it") from error


def stopped(step: int, path: Path) -> str:
    """What a run stopped by Ctrl-C or SIGTERM says, its checkpoint saved."""
    return f"stopped at step {step}; checkpoint saved to {path}: the same command resumes from it"
