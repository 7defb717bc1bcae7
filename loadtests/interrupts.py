"""Stopping a benchmark or load test by SIGTERM as by Ctrl-C: the servers it started are stopped too.

Without this, SIGTERM (a CI job cancelled, `kill PID`) ended the Python process at once and left its servers
running, and the next benchmark on the machine measured against them.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def run_stoppable(main: Callable[[], int | None], prog: str) -> int:
    """Runs `main` with SIGTERM raising KeyboardInterrupt as Ctrl-C does, so that every context that started a
    server or a temporary folder closes on the way out; an interrupt ends with one line and status 130."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return main() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the servers it started are stopped", file=sys.stderr)
        return 130
