"""`python -m trainer fit ...` is the same as `trm-train fit ...`: both start here."""

import sys


def main() -> int:
    """Run the command; a Ctrl-C while its libraries import (torch: a few seconds) ends it as one during the
    command does, with a line and status 130 instead of a traceback."""
    try:
        from trainer.cli import main as run_command  # this import is what takes the time
    except KeyboardInterrupt:
        print("trm-train: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return run_command()


if __name__ == "__main__":
    sys.exit(main())
