r"""The ``trm-client`` command: list models, reason (optionally streaming, or a file of inputs in batches),
print LLM tool definitions.

Examples::

    trm-client --target 127.0.0.1:50051 models
    trm-client reason intent-clinc150 "wake me up at seven"
    trm-client reason intent-clinc150 "wake me up at seven" --stream
    trm-client reason sudoku --grid \
        "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
    trm-client reason-batch routing-20ng posts.txt --json    # one input per line ('-': stdin)
    trm-client tools --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any, NoReturn, TextIO

import grpc

from trm_client.batch_command import run_reason_batch
from trm_client.channel import resolve_target
from trm_client.client import TRMClient
from trm_client.connection_args import (
    add_connection_arguments,
    client_settings,
    connection_hint_for,
    positive_int,
    whole_number,
)
from trm_client.console import EXIT_ERROR, run_console_program
from trm_client.errors import TRMError
from trm_client.field_names import CLI_FLAGS, rename_fields
from trm_client.model_info import Budget
from trm_client.render import (
    grid_block,
    live_line,
    model_text,
    models_table,
    printable,
    result_text,
    step_line,
)
from trm_client.results import GridSolution
from trm_client.serialize import error_dict, model_dict, result_dict, step_dict
from trm_client.tools import ToolAdapter

_ZERO_UP = whole_number(0)  # 0 asks for the model's default


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trm-client``."""
    parser = argparse.ArgumentParser(
        prog="trm-client",
        description="Client for the TRM reasoning co-processor.",
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('trm-client')}")
    add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (also taken after the command)")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the hosted models, or describe one")
    add_connection_arguments(models, with_defaults=False)
    models.add_argument("model", nargs="?", help="describe this model: its labels, limits and test figure")
    models.add_argument("--version", default="", help="with a model: that exact version (default: newest)")
    _add_json_flag(models, "print JSON")

    reason = commands.add_parser("reason", help="run a model on a text or a grid")
    add_connection_arguments(reason, with_defaults=False)
    reason.add_argument("model", help="model name, e.g. intent-clinc150")
    reason.add_argument(
        "input", help="the text ('-' reads it from stdin; one that starts with '-' goes after '--'); with --grid, "
        "the grid's cells row-major ('0' or '.' = blank)"
    )
    reason.error = _with_dash_hint(reason.error)  # type: ignore[assignment]
    reason.add_argument("--grid", action="store_true", help="treat the input as a grid")
    reason.add_argument("--version", default="", help="exact model version (default: newest)")
    reason.add_argument("--top-k", type=_ZERO_UP, default=0, help="labels to return (default 3)")
    reason.add_argument("--max-steps", type=_ZERO_UP, default=0, help="most supervision steps")
    reason.add_argument("--min-steps", type=_ZERO_UP, default=0, help="fewest steps before halting")
    reason.add_argument("--halt-threshold", type=float, default=0.0, help="halting confidence to stop at")
    reason.add_argument("--budget-ms", type=_ZERO_UP, default=0, help="time budget in milliseconds")
    reason.add_argument("--stream", action="store_true", help="show each refinement step as it arrives")
    _add_json_flag(reason, "print JSON (one object per line with --stream)")

    batch = commands.add_parser("reason-batch", help="run a model on every line of a file, in ReasonBatch calls")
    add_connection_arguments(batch, with_defaults=False)
    batch.add_argument("model", help="model name, e.g. routing-20ng")
    batch.add_argument("file", type=argparse.FileType("rb"),
                       help="one text (or with --grid, one grid) per line, UTF-8; '-' reads stdin")
    batch.add_argument("--grid", action="store_true", help="the lines are grids")
    batch.add_argument("--version", default="", help="exact model version (default: newest)")
    batch.add_argument("--batch-size", type=positive_int, default=256,
                       help="inputs per call, at most the server's --max-batch-requests (default 256)")
    batch.add_argument("--top-k", type=_ZERO_UP, default=0, help="labels to return (default 3)")
    _add_json_flag(batch, "print one JSON object per input line")

    tools = commands.add_parser("tools", help="print the OpenAI function-calling tool definitions")
    add_connection_arguments(tools, with_defaults=False)
    _add_json_flag(tools, "print JSON (the default for this command)")
    return parser


def _add_json_flag(command: argparse.ArgumentParser, help_text: str) -> None:
    """A command's --json, which sets nothing unless given: `trm-client --json reason ...` (the flag before the
    command, which the main parser takes) stays JSON."""
    command.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=help_text)


def _with_dash_hint(error: Callable[[str], NoReturn]) -> Callable[[str], NoReturn]:
    """`reason`'s usage error, which for a missing input says how to pass one that starts with '-' (argparse
    reads it as a flag, and then finds no input)."""

    def told(message: str) -> NoReturn:
        if message.endswith("required: input"):
            message += " (a text that starts with '-' goes after '--': trm-client reason MODEL -- '-TEXT')"
        error(message)

    return told


def run_models(client: TRMClient, args: argparse.Namespace, out: TextIO) -> int:
    """``trm-client models``: every hosted model, or one described (``trm-client models MODEL``)."""
    if args.model:
        info = client.model(args.model, version=args.version)
        print(json.dumps(model_dict(info)) if args.json else printable(model_text(info)), file=out)
        return 0
    if args.version:
        raise ValueError("--version names a version of a model: give the model too (trm-client models MODEL "
                         "--version V)")
    infos = client.models()
    print(json.dumps([model_dict(i) for i in infos]) if args.json else printable(models_table(infos)), file=out)
    return 0


def run_reason(client: TRMClient, args: argparse.Namespace, out: TextIO) -> int:
    """``trm-client reason``: one final answer, or the live refinement with --stream."""
    given = args.input
    if given == "-":  # stdin's text, less one line end (as `echo` adds), read as an argument is
        given = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").removesuffix("\n").removesuffix("\r")
    undecoded = next((i for i, char in enumerate(given) if "\udc80" <= char <= "\udcff"), None)
    if undecoded is not None:  # Python keeps an argument's bytes that are not UTF-8 as U+DC80..U+DCFF
        raise ValueError(f"the input is not UTF-8 text (byte 0x{ord(given[undecoded]) - 0xDC00:02x} at "
                         f"character {undecoded + 1}): pass it in UTF-8 (check the terminal's or locale's encoding)")
    inputs: dict[str, Any] = {"grid": given} if args.grid else {"text": given}
    budget = Budget(args.max_steps, args.min_steps, args.halt_threshold, args.budget_ms)
    common = {"version": args.version, "budget": budget, "top_k": args.top_k, **inputs}
    if not args.stream:
        result = client.reason(args.model, **common)
        print(json.dumps(result_dict(result)) if args.json else printable(result_text(result)), file=out)
        return 0
    live = out.isatty() and not args.json
    columns = shutil.get_terminal_size().columns
    for step in client.reason_stream(args.model, **common):
        if args.json:
            print(json.dumps(step_dict(step)), file=out, flush=True)
        elif live:
            print("\r\x1b[2K" + printable(live_line(step, columns)), end="\n" if step.final else "", file=out,
                  flush=True)
        else:
            print(printable(step_line(step)), file=out, flush=True)
        if step.final and isinstance(step.answer, GridSolution) and not args.json:
            print(grid_block(step.answer), file=out)
    return 0


def run_tools(client: TRMClient, args: argparse.Namespace, out: TextIO) -> int:
    """``trm-client tools``: the tool definitions an orchestrator offers its LLM."""
    print(json.dumps(ToolAdapter(client).tools(), indent=2), file=out)
    return 0


COMMANDS = {"models": run_models, "reason": run_reason, "reason-batch": run_reason_batch, "tools": run_tools}


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """The ``trm-client`` program (`console.trm_client` runs it); returns the exit status."""
    return run_console_program(lambda: run(_parsed(build_parser(), argv), out), out)


def _parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments; `--version` before a command, where a model's version was meant (it printed the
    client's version and sent nothing, status 0), a usage error."""
    given = list(sys.argv[1:] if argv is None else argv)
    if "--version" in given and any(arg in COMMANDS for arg in given[given.index("--version") + 1:]):
        parser.error("--version before the command prints trm-client's own version: a model's version goes after "
                     "the command (trm-client reason MODEL INPUT --version V)")
    return parser.parse_args(given)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Runs the parsed command; a failed call or a bad option is told on stderr in flags (and as JSON with
    --json)."""
    settings: dict[str, Any] = {}
    try:
        settings = client_settings(args)
        with TRMClient(**settings) as client:
            return COMMANDS[args.command](client, args, out)
    except TRMError as error:
        if args.json:
            print(json.dumps({"error": error_dict(error.code.name, error.details, error.request_id)}), file=out)
        message = rename_fields(error.details, CLI_FLAGS) + _flag_hint(error, args, settings)
        print(f"trm-client: {error.code.name}: {message} (request_id={error.request_id})", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:  # an option refused before any call (a malformed --target, a missing TLS file)
        if args.json:
            print(json.dumps({"error": error_dict("INVALID_ARGUMENT", str(error), None)}), file=out)
        print(f"trm-client: {error}", file=sys.stderr)
        return EXIT_ERROR


def _flag_hint(error: TRMError, args: argparse.Namespace, settings: dict[str, Any]) -> str:
    """The flag that changes the outcome of a call that failed on the client's own limits, on its address, or on
    its TLS options (`connection_hint`); or what to do where the server went away during the call."""
    if error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"; the deadline is --timeout (now {args.timeout:g} s)"
    if error.code is grpc.StatusCode.NOT_FOUND and getattr(args, "version", ""):
        return f"; the version is --version (now {args.version})"
    if error.over_message_limit and "Sent message" in error.details:  # the server's answer, not the request
        return ("; the server's answer is larger than its --max-message-bytes lets it send: its operator can raise "
                "that limit")
    if error.over_message_limit and "CLIENT: Received message" in error.details:  # gRPC's 4 MiB receive limit
        return ("; the server's answer is larger than this client takes in one message (gRPC's 4 MiB): ask for one "
                "model at a time (`trm-client models MODEL`)")
    if error.over_message_limit:  # RESOURCE_EXHAUSTED, which reads as "retry later"
        model = getattr(args, "model", None) or "MODEL"
        return (f"; the input is larger than the server takes in one message: shorten it (`trm-client models {model}` "
                "says how many characters the model reads)")
    if error.code is grpc.StatusCode.UNAVAILABLE and "Stream removed" in error.details:  # after the call began
        return "; the server closed the connection during the call (stopped or restarted?): run the command again"
    if error.code is grpc.StatusCode.UNIMPLEMENTED:  # gRPC's "Method not implemented!" names no method
        return (f"; the server at {resolve_target(args.target)} does not serve the call `{args.command}` makes: it is "
                f"older than this client (trm-client {version('trm-client')}), or not a trm.v1 server")
    return connection_hint_for(args, settings)(error)


if __name__ == "__main__":
    sys.exit(main())
