"""`python -m trm_service serve ...` is the same as `trm-service serve ...`: both start here."""

import signal
import sys


def main() -> int:
    """Run the command, with SIGHUP ignored until the server takes it: a reload asked for while the libraries
    import (about 0.7 s) would otherwise end the process, and the load that follows reads the folders as they
    are then."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from trm_service.cli import main as run_command  # after the signal: this import is what takes the time

    return run_command()


if __name__ == "__main__":
    sys.exit(main())
