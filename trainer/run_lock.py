"""One fit at a time per run folder: two fits of one --name and --run-dir each trained at half speed on one
checkpoint, and both reported a bundle undertrained by half, unsaid."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".fit.lock"


@contextmanager
def only_fit_of(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s lock while the block runs; ValueError at once where another fit holds it. The operating
    system releases it when the process ends, however it ends."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ValueError(f"another fit is running in {run_dir} (pid {holder}): wait for it to end, or give this "
                             "one another --name or --run-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
