"""Voice-coding pipeline: classify each utterance an ASR emits, write out dictated code, route unsure ones
to a fallback.

Reads one utterance per line from a file or stdin (as a speech recogniser would emit them), asks the
intent model for each, prints intent, confidence and latency, and hands low-confidence or
out-of-scope utterances to a fallback hook (in a real editor: the LLM, or "please repeat"). With
--dictation-model, an utterance the intent model labels --dictate-label ("type def main open paren
close paren colon") is chained to that sequence model, which writes the line of code.

    python clients/examples/voice_pipeline/pipeline.py clients/examples/voice_pipeline/utterances.txt
    some-asr --stream | python clients/examples/voice_pipeline/pipeline.py --model voice-commands \
        --dictation-model code-dictation
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from trm_client import Classification, ModelInfo, ReasonResult, TaskType, TRMClient, TRMError
from trm_client.connection_args import add_connection_arguments, checked_client_settings, connection_hint_for
from trm_client.console import run_console_program
from trm_client.tool_result import defer_reason

FallbackHook = Callable[[str, str, ReasonResult | None], None]
"""Called with (utterance, why it fell back, the result when there is one)."""
TRIGGER_WORDS = ("type", "write", "insert", "dictate")  # said before the code, not part of it
FILLERS = ("uh", "um")
ASR_PUNCTUATION = ".,!?;:"  # written by a recogniser around spoken words; code symbols are spoken as words


def dictated_words(utterance: str) -> str:
    """The words to write out, as the dictation model was trained on them: lowercase, without the punctuation
    and capitals a speech recogniser adds ("Def main, open paren." -> "def main open paren"), without leading
    fillers and the trigger word, and without U+FFFD (a byte of the input that was not UTF-8)."""
    words = [word.strip(ASR_PUNCTUATION).lower() for word in utterance.replace("\ufffd", "").split()]
    words = [word for word in words if word]
    while words and words[0] in FILLERS:
        words.pop(0)
    if words and words[0] in TRIGGER_WORDS:
        words.pop(0)
    return " ".join(words)


def utterances(stream: TextIO) -> Iterator[str]:
    """Non-empty, stripped lines, read as they arrive."""
    for line in stream:
        text = line.strip()
        if text:
            yield text


def fallback_reason(info: ModelInfo, result: ReasonResult, min_confidence: float | None) -> str | None:
    """Why an utterance should not be acted on, or None: out of scope, or below the confidence bar.

    The bar is ``min_confidence`` when given, else the model's own calibrated thresholds. A sequence model's
    written text falls back when it is incomplete, empty, writes a number its words do not say, or the server marks
    it unsure (its own calibrated threshold).
    """
    if min_confidence is None or not isinstance(result.answer, Classification):
        return defer_reason(info, result)
    if result.answer.out_of_scope:
        return "out_of_scope"
    return "low_confidence" if result.confidence < min_confidence else None


def print_fallback(out: TextIO) -> FallbackHook:
    """The default hook: reports the utterance; replace it with a call to your LLM or a re-prompt."""

    def hook(utterance: str, why: str, result: ReasonResult | None) -> None:
        print(f"  -> fallback ({why}): {utterance!r}", file=out, flush=True)

    return hook


def run(
    client: TRMClient,
    model: str,
    lines: Iterable[str],
    on_fallback: FallbackHook,
    out: TextIO,
    *,
    min_confidence: float | None = None,
    as_json: bool = False,
    dictation_model: str | None = None,
    dictate_label: str = "dictate",
) -> None:
    """Classifies every utterance, writes out the dictated ones with ``dictation_model`` (when given), and
    routes the unsure ones to ``on_fallback``."""
    info = _of_task(client.model(model), (TaskType.TEXT_CLASSIFICATION, TaskType.SEQUENCE), "--model",
                    "intent-clinc150")
    dictation_info = (_of_task(client.model(dictation_model), (TaskType.SEQUENCE,), "--dictation-model",
                               "code-dictation") if dictation_model else None)
    for utterance in lines:
        try:  # a sequence model as --model writes out every utterance, its words as dictated_words reads them
            result = client.reason(model, dictated_words(utterance) if info.task is TaskType.SEQUENCE else utterance)
        except TRMError as error:
            why = f"error {error.code.name}: {error.details}"
            if as_json:
                print(json.dumps({"utterance": utterance, "intent": None, "fallback": why}), file=out, flush=True)
            on_fallback(utterance, why, None)
            continue
        why = fallback_reason(info, result, min_confidence)
        written, written_why = None, None
        if dictation_model and dictation_info and why is None and result.prediction == dictate_label:
            try:
                written = client.reason(dictation_model, dictated_words(utterance))
                written_why = defer_reason(dictation_info, written)  # cut short, empty or unsure
            except TRMError as error:
                written_why = f"error {error.code.name}: {error.details}"
            if written_why is not None:
                why = f"dictation {written_why}"
        if as_json:
            record = {
                "utterance": utterance,
                "intent": result.prediction,
                "confidence": round(result.confidence, 4),
                "latency_ms": round(result.round_trip_ms, 2),
                "fallback": why,
            }
            if written is not None:
                record |= {"written": written.prediction, "written_latency_ms": round(written.round_trip_ms, 2)}
            print(json.dumps(record), file=out, flush=True)
        else:
            latency = f"{result.round_trip_ms:7.1f} ms"
            print(
                f"{result.prediction:<24} {result.confidence:5.2f} {latency}  {utterance}",
                file=out,
                flush=True,
            )
            if written is not None:
                print(f"  -> {written.prediction}  ({written.round_trip_ms:.1f} ms)", file=out, flush=True)
        if why is not None:
            on_fallback(utterance, why, written if written_why is not None else result)


def _of_task(info: ModelInfo, tasks: tuple[TaskType, ...], flag: str, example: str) -> ModelInfo:
    """`info` if its model does one of `tasks`; else a ValueError naming the flag to change."""
    if info.task not in tasks:
        kinds = " or ".join(task.value for task in tasks)
        raise ValueError(f"{flag} {info.name} is a {info.task.value} model: give a {kinds} model, e.g. {example}")
    return info


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("input", nargs="?", default="-",
                        type=argparse.FileType("r", encoding="utf-8", errors="replace"),
                        help="utterances file, one per line ('-' = stdin), UTF-8 (a byte that is not is read as "
                        "U+FFFD, which an intent model's tokenizer drops and the pipeline drops before a sequence "
                        "model)")
    parser.add_argument("--model", default="intent-clinc150", help="intent model to ask")
    parser.add_argument(
        "--min-confidence",
        type=_probability,
        help="fall back below this confidence, for an intent model (default: the model's calibrated thresholds)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per utterance")
    parser.add_argument("--dictation-model", help="sequence model that writes out dictated code, e.g. code-dictation")
    parser.add_argument("--dictate-label", default="dictate",
                        help="the intent whose utterances go to --dictation-model (default: dictate)")
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # '-': argparse hands over stdin as it is
    return run_console_program(lambda: _run(parser, parser.parse_args(argv)))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The pipeline with the parsed arguments; its exit status (an error is told on stderr)."""
    settings = checked_client_settings(parser, args)
    try:
        with TRMClient(**settings) as client:
            hook = print_fallback(sys.stderr if args.json else sys.stdout)
            run(
                client,
                args.model,
                utterances(args.input),
                hook,
                sys.stdout,
                min_confidence=args.min_confidence,
                as_json=args.json,
                dictation_model=args.dictation_model,
                dictate_label=args.dictate_label,
            )
    except TRMError as error:
        print(f"pipeline: {error}{connection_hint_for(args, settings)(error)}", file=sys.stderr)
        return 1
    except ValueError as error:  # a model of the wrong kind
        print(f"pipeline: {error}", file=sys.stderr)
        return 2
    return 0


def _probability(value: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {value!r}")
    return number


if __name__ == "__main__":
    sys.exit(main())
