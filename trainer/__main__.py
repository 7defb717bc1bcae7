"""`python -m trainer fit ...` is the same as `trm-train fit ...`: both start here."""

import resource
import signal
import sys
import time
from types import FrameType

# The least address space (`ulimit -v`) a fit runs in: the voice commands' fit ran at 2 GiB; at 1.5 GB it hung
# (torch's import alone maps about 1 GB)
MIN_ADDRESS_SPACE = 2 * 2**30


def main() -> int:
    """Run the command; a Ctrl-C or SIGTERM while its libraries import (torch: a few seconds) ends it as one during
    the command does, with a line and status 130 instead of a traceback, also where a library's import swallows
    the KeyboardInterrupt (a bare except around an optional import)."""
    started = time.monotonic()  # a fit's time budget counts from here, its imports included
    if sys.stdout is None:  # started with `>&-`
        print("trm-train: standard output is closed (>&-), and the command's report goes there: give it a file "
              "(> fit.log) or /dev/null", file=sys.stderr)
        return 2
    if (refusal := _address_space_refusal()) is not None:
        print(refusal, file=sys.stderr)
        return 2
    interrupted: list[int] = []  # the signals that came; the KeyboardInterrupt itself may be swallowed

    def interrupt(signum: int, frame: FrameType | None) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    try:
        from trainer.cli import main as run_command  # this import is what takes the time
    except KeyboardInterrupt:
        pass  # counted by `interrupt`
    except ModuleNotFoundError as missing:  # `make serve` installs the server without the trainer's libraries
        if (missing.name or "").split(".")[0] in ("trainer", "trm_bundle", "trm_service"):
            raise
        print(f"trm-train: the trainer's libraries are not installed (no module {missing.name!r}): run `make install` "
              "(or pip install -e '.[train]')", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        print(f"trm-train: interrupted ({'Ctrl-C' if interrupted[0] == signal.SIGINT else 'SIGTERM'})", file=sys.stderr)
        return 130
    signal.signal(signal.SIGTERM, _terminated)
    return run_command(started=started)


def _address_space_refusal() -> str | None:
    """What to say where the address-space limit (`ulimit -v`) is below MIN_ADDRESS_SPACE, which torch and its BLAS
    need however small the data: under 1.5 GB a fit hung in OpenBLAS's allocator, deaf to Ctrl-C, and under 1.25 GB
    torch's import ended in a MemoryError traceback."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY or limit >= MIN_ADDRESS_SPACE:
        return None
    return (f"trm-train: the address-space limit (ulimit -v) is {limit / 2**30:.2f} GiB; torch and its BLAS reserve "
            f"more address space than they use and need at least {MIN_ADDRESS_SPACE / 2**30:.0f} GiB: raise it "
            "(ulimit -v unlimited), or limit memory with a container's limit instead, which the fit plans for")


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a `kill`, a container stopping) ends the command as Ctrl-C does: with a line and status 130, a
    bundle half written removed (the training loop takes it itself, to save its checkpoint first)."""
    raise KeyboardInterrupt("interrupted (SIGTERM)")


if __name__ == "__main__":
    sys.exit(main())
