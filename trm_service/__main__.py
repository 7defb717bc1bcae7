"""`python -m trm_service serve ...` is the same as `trm-service serve ...`: both start here."""

import contextlib
import os
import signal
import sys


def main() -> int:
    """Run the command, with SIGHUP ignored until the server takes it: a reload asked for while the libraries
    import (about 0.7 s) would otherwise end the process, and the load that follows reads the folders as they
    are then. SIGTERM until then ends the process (status 0): as PID 1 (a container without an init) it would
    otherwise be ignored, and the server would start, serve and wait for SIGKILL."""
    if sys.stdout is None:  # started with `>&-`: the log lines have nowhere to go
        print("trm-service: standard output is closed (>&-), and the server's log lines go there: give it a file "
              "(> server.log) or /dev/null", file=sys.stderr)
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_before_serving)
    from trm_service.cli import main as run_command  # after the signals: this import is what takes the time

    return run_command()


def _exit_before_serving(_signum: int, _frame: object) -> None:
    """Exit at once, status 0. Not by raising SystemExit: raised inside an extension module's import (ONNX Runtime,
    gRPC), it turned into that import's ImportError or crashed the interpreter's exit (SIGSEGV), about 1 in 75
    times; nothing has started yet that needs more than the output flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(RuntimeError, ValueError, OSError):  # a write the signal came in, a closed pipe
            stream.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
