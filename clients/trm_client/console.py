"""How the command-line programs (``trm-client``, ``trm-mcp``, the examples) meet their console: a character the
output's encoding lacks is written "?", a reader that stops early ends the program quietly with status 1, a full
disk with status 1 and a line, and Ctrl-C with status 130, never with a traceback."""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys
from collections.abc import Callable
from typing import TextIO

EXIT_ERROR = 1
EXIT_USAGE = 2  # as argparse's
EXIT_INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)
# A write to stdout that fails for want of room (`> /dev/full`, a full disk or quota, a file over its size limit)
_OUTPUT_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def tolerate_output_encoding() -> None:
    """stdout and stderr write a character their encoding lacks (a cp1252 console, PYTHONIOENCODING=cp1252) as
    "?": the confidence bar or an answer's emoji failed the command after its call had succeeded."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def run_console_program(body: Callable[[], int], out: TextIO | None = None) -> int:
    """Run a program's `body` (argument parsing included) and return its exit status, or EXIT_ERROR where the
    reader of `out` (stdout) stopped early (`... | head`) or its disk is full (said on stderr), EXIT_INTERRUPTED
    at Ctrl-C; EXIT_USAGE, saying so, where the program was started with its standard output closed (`>&-`)."""
    if _output_closed("the answers"):
        return EXIT_USAGE
    tolerate_output_encoding()
    try:
        status = body()
        (out or sys.stdout).flush()  # a reader that went away shows here, not as a traceback at interpreter exit
    except BrokenPipeError:
        discard_the_rest()
        return EXIT_ERROR
    except OSError as error:
        if error.errno not in _OUTPUT_FULL:
            raise
        print(f"{os.path.basename(sys.argv[0])}: cannot write the output: {error.strerror}", file=sys.stderr)
        discard_the_rest()
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return status


def discard_the_rest() -> None:
    """As Python's docs recommend for SIGPIPE: what is left of stdout goes to devnull, so the flush at exit cannot
    fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _output_closed(what: str) -> bool:
    """Whether the program started with its standard output closed (`>&-`: sys.stdout is None), said on stderr."""
    if sys.stdout is not None:
        return False
    print(f"{os.path.basename(sys.argv[0])}: standard output is closed (>&-), and {what} go there: give it a file "
          "or /dev/null", file=sys.stderr)
    return True


def quiet_grpc_core() -> None:
    """No log lines of gRPC core's own ("Handshake failed ...") before the program's one line of error, unless
    $GRPC_VERBOSITY asks for them. gRPC reads it as it is imported, hence before the command's modules load."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")


def trm_client() -> int:
    """Entry point of ``trm-client``: the command's modules load inside `run_console_program` (gRPC takes a few
    tenths of a second), so a Ctrl-C while they load ends it with 130 too, not a traceback."""
    quiet_grpc_core()
    return run_console_program(lambda: importlib.import_module("trm_client.cli").main())


def trm_mcp() -> int:
    """Entry point of ``trm-mcp``: a Ctrl-C while its modules load (the MCP SDK's: about a second) ends it with 130,
    as one while it serves does (`mcp_server.main`)."""
    if _output_closed("its MCP messages"):
        return EXIT_USAGE
    quiet_grpc_core()
    try:
        serve = importlib.import_module("trm_client.mcp_server").main
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    serve()
    return 0
