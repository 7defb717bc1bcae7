"""Benchmark of a sequence model (code-dictation): serving latency and throughput, and what the KV cache saves.

- Serving: Reason on the service for dictated test lines whose answer is exactly --tokens tokens (the end
  mark included): p50/p99 latency at concurrency 1 and throughput at concurrency 32 (closed loop).
- The cache: the same answers decoded in PyTorch eager, one request at a time, with the prefix cache
  (each refinement step reads the earlier tokens' entries) and by recomputing the prefix (every token
  re-runs the refinement of all earlier tokens, `teacher_forced` over the answer so far: what the cache
  holds, rebuilt), interleaved request by request; the two give the same text (checked).

    python -m loadtests.sequence_bench                        # the shipped bundle, 10 s per concurrency
    python -m loadtests.sequence_bench --duration 3 --cache-requests 10

Prints a Markdown table (for docs/PERFORMANCE.md) and returns the figures; ``loadtests.bench`` runs it
after the classification models.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from trm.v1 import trm_pb2

from loadtests.closed_loop import closed_loop
from loadtests.local_server import DEFAULT_MODELS_DIR, service, wait_until_serving
from trainer.dictation.corpus import build_corpus
from trainer.dictation.verbalize import Verbalizer
from trainer.sequence.batches import to_batch
from trainer.sequence.bundle import bundle_halting, sequence_model_from_bundle
from trainer.sequence.decode import Halting, run
from trainer.sequence.model import SequenceTRM
from trainer.sequence.teacher_forcing import teacher_forced
from trainer.sequence.vocab import EOS_ID, decode

MODEL = "code-dictation"
TOKENS = 20


def spoken_inputs(tokens: int, count: int, seed: int = 0) -> list[str]:
    """Spoken forms of test lines (the test files alone are read) whose written answer is `tokens` tokens
    long (end mark included)."""
    corpus = build_corpus(seed, splits=("test",))
    verbalizer = Verbalizer(seed)
    lines = [line for line in corpus.texts("test") if len(line) == tokens - 1]
    random.Random(seed).shuffle(lines)
    return [verbalizer.speak(line) for line in lines[:count]]


@torch.no_grad()
def decode_recomputing(model: SequenceTRM, source: torch.Tensor, max_len: int, halting: Halting) -> list[int]:
    """Greedy decoding without a prefix cache: each token re-runs every earlier token's refinement."""
    emitted: list[int] = []
    for position in range(max_len):
        targets = torch.tensor([[*emitted, EOS_ID]])
        token = int(teacher_forced(model, source, targets, halting).answers[0, position])
        emitted.append(token)
        if token == EOS_ID:
            break
    return emitted


def cache_comparison(model: SequenceTRM, inputs: list[str], halting: Halting) -> dict[str, float]:
    """Median ms per answer with the cache and by recomputation, interleaved, both halting as `halting`; both
    texts must agree."""
    torch.set_num_threads(1)
    cached_ms, recomputed_ms = [], []
    for text in inputs:
        source = to_batch([(text, "")]).source
        started = time.perf_counter()
        with torch.no_grad():
            fast = decode(run(model, source, halting, max_len=model.cfg.max_target_len).tokens[0].tolist())
        cached_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        slow = decode(decode_recomputing(model, source, model.cfg.max_target_len, halting))
        recomputed_ms.append((time.perf_counter() - started) * 1000)
        if fast != slow:
            raise AssertionError(f"the cache changed the answer to {text!r}: {fast!r} vs {slow!r}")
    cached, recomputed = statistics.median(cached_ms), statistics.median(recomputed_ms)
    return {"cached_ms": cached, "recomputed_ms": recomputed, "speedup": recomputed / cached}


def serving(target: str, inputs: list[str], duration_s: float) -> dict[str, Any]:
    """Reason at concurrency 1 and 32 on the running service."""
    cycle = itertools.cycle(inputs)

    def make_request() -> trm_pb2.ReasonRequest:
        return trm_pb2.ReasonRequest(model=MODEL, text=next(cycle))

    closed_loop(target, make_request, 4, 1.0)  # warm-up
    one = closed_loop(target, make_request, 1, duration_s)
    many = closed_loop(target, make_request, 32, duration_s)
    return {"c1_p50_ms": one.p50_ms, "c1_p99_ms": one.p99_ms, "c1_rps": one.throughput,
            "c32_rps": many.throughput, "c32_p50_ms": many.p50_ms, "c32_p99_ms": many.p99_ms,
            "failures": dict(one.failures + many.failures)}


def markdown(figures: dict[str, Any], tokens: int) -> str:
    serve, cache = figures["serving"], figures["cache"]
    return "\n".join([
        f"| {MODEL}, answers of {tokens} tokens | p50 / p99 ms at c=1 | req/s at c=1 | req/s at c=32 | "
        "p50 / p99 ms at c=32 |",
        "|---|---:|---:|---:|---:|",
        f"| service (Reason) | {serve['c1_p50_ms']:.1f} / {serve['c1_p99_ms']:.1f} | {serve['c1_rps']:.1f} | "
        f"{serve['c32_rps']:.1f} | {serve['c32_p50_ms']:.1f} / {serve['c32_p99_ms']:.1f} |",
        "",
        f"Prefix cache (PyTorch eager, one request, median of {figures['cache_requests']} answers): "
        f"{cache['cached_ms']:.1f} ms with the cache, {cache['recomputed_ms']:.1f} ms recomputing the prefix "
        f"({cache['speedup']:.1f}x).",
    ])


def bench(models: Path, *, tokens: int = TOKENS, duration_s: float = 10.0, cache_requests: int = 20) -> dict[str, Any]:
    """Both measurements on the bundle `models / MODEL`; the service hosts every bundle of `models`."""
    inputs = spoken_inputs(tokens, 200)
    with service(models) as server:
        wait_until_serving(server.target)
        figures: dict[str, Any] = {"serving": serving(server.target, inputs, duration_s)}
    model = sequence_model_from_bundle(models / MODEL)
    figures |= {"cache": cache_comparison(model, inputs[:cache_requests], bundle_halting(models / MODEL)),
                "cache_requests": cache_requests}
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--tokens", type=int, default=TOKENS)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--cache-requests", type=int, default=20)
    args = parser.parse_args(argv)
    figures = bench(args.models, tokens=args.tokens, duration_s=args.duration, cache_requests=args.cache_requests)
    print(markdown(figures, args.tokens))


if __name__ == "__main__":
    main()
