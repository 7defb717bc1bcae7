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
    """Hold `run_dir`'s lock while the block runs; ValueError at once where another fit holds it, or where the lock
    is not a plain file of this user's (a link another user planted there made the fit write its pid over the link's
    target). The operating system releases it when the process ends, however it ends."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:  # ELOOP: a symbolic link; EACCES: another user's; EISDIR: a folder
        raise ValueError(f"cannot open the run folder's lock {path} ({error.strerror}): it must be a plain file "
                         "this user can write; remove it, or give the fit another --run-dir") from None
    with os.fdopen(descriptor, "r+") as lock:
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
