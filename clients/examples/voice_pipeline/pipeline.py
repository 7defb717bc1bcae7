"""Voice-coding pipeline: classify each utterance an ASR emits, route unsure ones to a fallback.

Reads one utterance per line from a file or stdin (as a speech recogniser would emit them), asks the
intent model for each, prints intent, confidence and latency, and hands low-confidence or
out-of-scope utterances to a fallback hook (in a real editor: the LLM, or "please repeat").

    python clients/examples/voice_pipeline/pipeline.py clients/examples/voice_pipeline/utterances.txt
    some-asr --stream | python clients/examples/voice_pipeline/pipeline.py --model voice-commands
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from trm_client import ModelInfo, ReasonResult, TRMClient, TRMError
from trm_client.connection_args import add_connection_arguments, client_settings
from trm_client.tool_result import defer_reason

FallbackHook = Callable[[str, str, ReasonResult | None], None]
"""Called with (utterance, why it fell back, the result when there is one)."""


def utterances(stream: TextIO) -> Iterator[str]:
    """Non-empty, stripped lines, read as they arrive."""
    for line in stream:
        text = line.strip()
        if text:
            yield text


def fallback_reason(info: ModelInfo, result: ReasonResult, min_confidence: float | None) -> str | None:
    """Why an utterance should not be acted on, or None: out of scope, or below the confidence bar.

    The bar is ``min_confidence`` when given, else the model's own calibrated thresholds.
    """
    if min_confidence is None:
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
) -> None:
    """Classifies every utterance and routes the unsure ones to ``on_fallback``."""
    info = client.model(model)
    for utterance in lines:
        try:
            result = client.reason(model, utterance)
        except TRMError as error:
            on_fallback(utterance, f"error {error.code.name}", None)
            continue
        why = fallback_reason(info, result, min_confidence)
        if as_json:
            record = {
                "utterance": utterance,
                "intent": result.prediction,
                "confidence": round(result.confidence, 4),
                "latency_ms": round(result.round_trip_ms, 2),
                "fallback": why,
            }
            print(json.dumps(record), file=out, flush=True)
        else:
            latency = f"{result.round_trip_ms:7.1f} ms"
            print(
                f"{result.prediction:<24} {result.confidence:5.2f} {latency}  {utterance}",
                file=out,
                flush=True,
            )
        if why is not None:
            on_fallback(utterance, why, result)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("input", nargs="?", default="-", help="utterances file, one per line ('-' = stdin)")
    parser.add_argument("--model", default="intent-clinc150", help="intent model to ask")
    parser.add_argument(
        "--min-confidence",
        type=float,
        help="fall back below this confidence (default: the model's calibrated thresholds)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per utterance")
    args = parser.parse_args(argv)
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    try:
        with TRMClient(**client_settings(args)) as client:
            hook = print_fallback(sys.stderr if args.json else sys.stdout)
            run(
                client,
                args.model,
                utterances(stream),
                hook,
                sys.stdout,
                min_confidence=args.min_confidence,
                as_json=args.json,
            )
    except TRMError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 1
    finally:
        if stream is not sys.stdin:
            stream.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
