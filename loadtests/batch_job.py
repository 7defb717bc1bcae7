"""Benchmark: a batch job (e.g. routing a pile of documents) sent three ways.

The same real test inputs of one text model, `--inputs` of them, are answered:
- by the service through ReasonBatch, in calls of `--batch` inputs, `--callers` calls in flight;
- by the service through unary Reason, `--concurrency` calls in flight (the benchmark's closed loop);
- by the plain ONNX Runtime server (loadtests.plain_server) the same unary way.
The three run in alternating rounds (so the machine's other load weighs on all alike); the figures are
inputs answered per second over all rounds and the ratios to the plain server. A benchmark, not a test.

    python -m loadtests.batch_job --model routing-20ng
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.inputs import DEFAULT_MODELS, data_dir, load_inputs
from loadtests.interrupts import run_stoppable
from loadtests.local_server import plain_server, service, text_limits, wait_until_serving
from trm_service.config import DEFAULT_MODELS_DIR

Job = Callable[[str, list[trm_pb2.ReasonRequest]], Awaitable[None]]
CALL_TIMEOUT_S = 120.0


def batched(batch: int, callers: int) -> Job:
    """ReasonBatch calls of `batch` inputs, `callers` in flight."""

    async def run(target: str, requests: list[trm_pb2.ReasonRequest]) -> None:
        chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]
        async with grpc.aio.insecure_channel(target) as channel:
            stub = trm_pb2_grpc.ReasoningServiceStub(channel)

            async def caller(first: int) -> None:
                for chunk in chunks[first::callers]:
                    reply = await stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=chunk), timeout=CALL_TIMEOUT_S)
                    failed = [r.failure.message for r in reply.results if r.HasField("failure")]
                    if failed:
                        raise RuntimeError(f"{len(failed)} inputs failed, e.g. {failed[0]}")

            await asyncio.gather(*(caller(i) for i in range(callers)))

    return run


def unary(concurrency: int) -> Job:
    """Unary Reason calls, `concurrency` in flight."""

    async def run(target: str, requests: list[trm_pb2.ReasonRequest]) -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = trm_pb2_grpc.ReasoningServiceStub(channel)

            async def caller(first: int) -> None:
                for request in requests[first::concurrency]:
                    await stub.Reason(request, timeout=CALL_TIMEOUT_S)

            await asyncio.gather(*(caller(i) for i in range(concurrency)))

    return run


Ways = dict[str, tuple[str, Job]]
"""Ways to run a job, by name: (target, job)."""


def timed_rounds(ways: Ways, requests: list[trm_pb2.ReasonRequest], rounds: int) -> dict[str, float]:
    """Inputs answered per second by each way, run in alternating rounds after a warm-up."""
    for target, job in ways.values():
        asyncio.run(job(target, requests[:64]))
    seconds = dict.fromkeys(ways, 0.0)
    for round_index in range(rounds):
        for name in list(ways)[:: 1 if round_index % 2 == 0 else -1]:
            target, job = ways[name]
            started = time.perf_counter()
            asyncio.run(job(target, requests))
            seconds[name] += time.perf_counter() - started
    return {name: len(requests) * rounds / busy for name, busy in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=[m for m, (kind, _) in DEFAULT_MODELS.items() if kind == "text"],
                        default="routing-20ng")
    parser.add_argument("--inputs", type=int, default=1024, help="inputs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="inputs per ReasonBatch call")
    parser.add_argument("--callers", type=int, default=2, help="ReasonBatch calls in flight")
    parser.add_argument("--concurrency", type=int, default=64, help="unary calls in flight")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    texts = load_inputs(data_dir(args.data_dir), [args.model])[args.model].samples
    with service(DEFAULT_MODELS_DIR) as server, plain_server(DEFAULT_MODELS_DIR) as (plain_target, _pid):
        wait_until_serving(server.target)
        limit = text_limits(server.target)[args.model]
        requests = [trm_pb2.ReasonRequest(model=args.model, text=texts[i % len(texts)][:limit])
                    for i in range(args.inputs)]
        ways = {
            f"service, ReasonBatch of {args.batch} x {args.callers}": (
                server.target, batched(args.batch, args.callers)
            ),
            f"service, Reason x {args.concurrency}": (server.target, unary(args.concurrency)),
            f"plain server, Reason x {args.concurrency}": (plain_target, unary(args.concurrency)),
        }
        rates = timed_rounds(ways, requests, args.rounds)
    plain = rates[list(ways)[-1]]
    print(f"{args.model}: {args.inputs} inputs x {args.rounds} rounds")
    for name, rate in rates.items():
        print(f"  {name:40} {rate:8.1f} inputs/s  {rate / plain:5.2f}x the plain server")

if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.batch_job"))
