"""``trm-client reason-batch``: a file's lines (or stdin's, as they come) sent in ReasonBatch calls, each line's
outcome printed in the file's order.

The algorithm, stated once: lines are read as they are needed, at most ``--batch-size`` at a time (a pipe's lines
are sent once it pauses, not when it ends). They go out in calls of at most the current call size, which starts at
``--batch-size``. A line the server did not finish within its call's deadline (refused for load before its first
step, or answered with its refinement cut short by the deadline) is sent again, first, in a call of half as many
lines; its outcome stands once it was sent alone. A call that finishes every line doubles the call size again, up
to ``--batch-size``. So a batch too large for ``--timeout`` costs time, not answers: each line ends as it would
sent alone.
"""

from __future__ import annotations

import argparse
import json
import queue
import shlex
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO, TextIO

import grpc

from trm_client.client import TRMClient
from trm_client.console import EXIT_ERROR
from trm_client.errors import TRMError
from trm_client.field_names import BATCH_LINES, rename_fields
from trm_client.render import batch_line_answer, printable
from trm_client.results import HaltReason, ReasonResult, WrittenText
from trm_client.serialize import error_dict, result_dict
from trm_client.tool_result import text_defer_reason

PIPE_PAUSE_S = 0.05  # a pipe that writes no line for this long has its lines read so far sent
_UNFINISHED_CODES = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)
_UTF8_BOM = b"\xef\xbb\xbf"

Outcome = ReasonResult | TRMError | str  # str: why the line was not sent


class _Stopped(Exception):
    """A call failed as a whole, or every line of it got NOT_FOUND (the model, or the version, is not hosted):
    nothing later is sent."""

    def __init__(self, error: TRMError, first_unsent: int) -> None:
        super().__init__(error.details)
        self.error = error
        self.first_unsent = first_unsent


def run_reason_batch(client: TRMClient, args: argparse.Namespace, out: TextIO) -> int:
    """``trm-client reason-batch``: one output line per input line, in order; a failed input (one the server
    refused, or a line that is not UTF-8, which is not sent) prints its error, and the status is an error when
    any line failed. A call that failed as a whole, or a model the server does not host (every line of a call got
    NOT_FOUND), ends the command as a failed call, after the lines answered before it, naming the line to rerun
    from."""
    failed = read = 0
    call_size = args.batch_size
    for lines in _line_batches(args.file, args.batch_size):
        read += len(lines)
        outcomes: dict[int, Outcome] = {}
        texts: dict[int, str] = {}
        for number, raw in lines:
            try:
                texts[number] = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                outcomes[number] = (f"not UTF-8 text (byte 0x{raw[error.start]:02x} at byte {error.start + 1} of "
                                    "the line): save the file as UTF-8")
        try:
            call_size = _answer(client, args, texts, call_size, outcomes)
        except _Stopped as stopped:
            failed += _print_outcomes({n: o for n, o in outcomes.items() if n < stopped.first_unsent}, args, out)
            if stopped.first_unsent > 1:
                rest = _rest_of(args.file, stopped.first_unsent, args.model)
                print(f"trm-client: lines {stopped.first_unsent} on were not answered: once the cause below is "
                      f"mended, send them again with the same options ({rest})", file=sys.stderr)
            raise stopped.error from None
        failed += _print_outcomes(outcomes, args, out)
    if not read:
        print(f"trm-client: {args.file.name} has no lines: nothing was sent", file=sys.stderr)
    if failed:
        print(f"trm-client: {failed} of {read} lines failed", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _rest_of(file: BinaryIO, first: int, model: str) -> str:
    """How to send a file's lines from line `first` on to `model`, as a shell command's input."""
    if file is sys.stdin.buffer:
        return f"the input from its line {first} on, to `trm-client reason-batch {shlex.quote(model)} -`"
    return f"`tail -n +{first} {shlex.quote(file.name)} | trm-client reason-batch {shlex.quote(model)} -`"


def _line_batches(file: BinaryIO, size: int) -> Iterator[list[tuple[int, bytes]]]:
    """The file's lines, numbered from 1 and without their line ends (a UTF-8 byte-order mark taken off the first),
    at most `size` at a time: as many as are read before a pause of PIPE_PAUSE_S. A reader thread reads at most two
    batches ahead, so memory does not grow with the file."""
    lines: queue.Queue[bytes | None] = queue.Queue(maxsize=2 * size)

    def read_all() -> None:
        try:
            for raw in file:
                lines.put(raw)
        finally:  # the end of the file, or a read that failed: the lines read so far are answered
            lines.put(None)

    threading.Thread(target=read_all, name="reason-batch-reader", daemon=True).start()
    number, batch = 0, []
    while True:
        try:
            raw = lines.get() if not batch else lines.get(timeout=PIPE_PAUSE_S)
        except queue.Empty:
            yield batch
            batch = []
            continue
        if raw is None:
            break
        number += 1
        line = raw.rstrip(b"\n").removesuffix(b"\r")
        batch.append((number, line.removeprefix(_UTF8_BOM) if number == 1 else line))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _answer(client: TRMClient, args: argparse.Namespace, texts: dict[int, str], call_size: int,
            outcomes: dict[int, Outcome]) -> int:
    """Puts every line's outcome into `outcomes`, in calls sized as the module's algorithm says; returns the call
    size for the next lines."""
    pending = list(texts)
    while pending:
        call = pending[:call_size]
        try:
            results = _batch_results(client, args, {number: texts[number] for number in call})
        except TRMError as error:
            raise _Stopped(error, min(pending)) from None
        if all(isinstance(r, TRMError) and r.code is grpc.StatusCode.NOT_FOUND for r in results.values()):
            raise _Stopped(results[call[0]], min(pending))
        outcomes.update(results)
        unfinished = [number for number in call if _unfinished(results[number])] if len(call) > 1 else []
        pending = unfinished + pending[len(call):]
        call_size = max(1, len(call) // 2) if unfinished else min(args.batch_size, 2 * call_size)
    return call_size


def _unfinished(outcome: ReasonResult | TRMError) -> bool:
    """The server refused the line for load before its first step, or cut its refinement at the call's deadline."""
    if isinstance(outcome, TRMError):
        return outcome.code in _UNFINISHED_CODES and not outcome.over_message_limit
    return outcome.halt_reason is HaltReason.DEADLINE


def _batch_results(
    client: TRMClient, args: argparse.Namespace, texts: dict[int, str]
) -> dict[int, ReasonResult | TRMError]:
    """The result of each line (by number) in one ReasonBatch call; a call over a gRPC message size limit is split
    in halves, down to a line that alone is over it, which fails on its own (the lines beside it are answered). A
    call of several lines that ended at its deadline, or that the server refused for load, is each of its lines'
    outcome (a line sent alone that gets no answer at all raises: the server may be stuck)."""
    inputs = {"grids": list(texts.values())} if args.grid else {"texts": list(texts.values())}
    try:
        results = client.reason_batch(args.model, version=args.version, top_k=args.top_k, **inputs)
        return dict(zip(texts, results, strict=True))
    except TRMError as error:
        if _unfinished(error) and len(texts) > 1:
            return dict.fromkeys(texts, error)
        if not error.over_message_limit:
            raise
        if len(texts) == 1:
            return dict.fromkeys(texts, error)
    numbers = list(texts)
    halves = numbers[: len(numbers) // 2], numbers[len(numbers) // 2 :]
    return {line: result for half in halves for line, result in _batch_results(
        client, args, {number: texts[number] for number in half}).items()}


def _print_outcomes(outcomes: dict[int, Outcome], args: argparse.Namespace, out: TextIO) -> int:
    """Prints each line's outcome in order; returns how many failed."""
    failed = 0
    for number, outcome in sorted(outcomes.items()):
        if isinstance(outcome, ReasonResult):
            summary = printable(f"line {number}: {batch_line_answer(outcome.answer)} ({_how_it_ended(outcome, args)})")
            print(json.dumps({"line": number, **result_dict(outcome)}) if args.json else summary, file=out)
            continue
        failed += 1
        code, details, request_id = (("INVALID_ARGUMENT", outcome, None) if isinstance(outcome, str)
                                     else (outcome.code.name, outcome.details, outcome.request_id))
        if isinstance(outcome, TRMError):
            details = rename_fields(details, BATCH_LINES) + _line_hint(outcome, args)
        text = printable(f"line {number}: {code}: {details}")
        print(json.dumps({"line": number, "error": error_dict(code, details, request_id)}) if args.json else text,
              file=out)
    return failed


def _how_it_ended(result: ReasonResult, args: argparse.Namespace) -> str:
    """The steps an answer took, and what cut it short or made the model defer, if anything did."""
    told = f"{result.steps} step{'' if result.steps == 1 else 's'}"
    if result.halt_reason is HaltReason.DEADLINE:
        told += f", cut short by the deadline even sent alone: allow more time with --timeout (now {args.timeout:g} s)"
    elif result.halt_reason is HaltReason.LOAD:
        told += ", cut short: the server was busy"
    if isinstance(result.answer, WrittenText) and (reason := text_defer_reason(result)):
        told += f", defer: {reason}"
    return told


def _line_hint(error: TRMError, args: argparse.Namespace) -> str:
    """The flag that changes a line's failure, where one does."""
    if error.over_message_limit:  # a line sent alone (_batch_results)
        return "; the line alone is over the limit: shorten it"
    if _unfinished(error):
        return f"; even sent alone: allow more time with --timeout (now {args.timeout:g} s), or run it later"
    return ""
