"""A closed-loop gRPC load generator for the benchmark: N concurrent callers, each sending its next
request as soon as the previous one returns, for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from trm.v1 import trm_pb2, trm_pb2_grpc

CALL_TIMEOUT_S = 120.0
RequestFactory = Callable[[], trm_pb2.ReasonRequest]


def percentile_ms(latencies_ms: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `latencies_ms`; NaN for an empty list."""
    return float(np.percentile(latencies_ms, q)) if latencies_ms else float("nan")


@dataclass(frozen=True)
class LoadResult:
    """Completed calls of one run: their latencies, failures by status name, and the busy time."""

    concurrency: int
    latencies_ms: list[float]
    elapsed_s: float
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        """Successful calls per second, from the first send to the last completion."""
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile_ms(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile_ms(self.latencies_ms, 99)


async def _caller(
    stub: trm_pb2_grpc.ReasoningServiceStub,
    make_request: RequestFactory,
    until: float,
    latencies: list[float],
    failures: Counter[str],
) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            await stub.Reason(make_request(), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            failures[err.code().name] += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000.0)


async def _closed_loop(target: str, make_request: RequestFactory, concurrency: int, duration_s: float) -> LoadResult:
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        started = time.perf_counter()
        until = started + duration_s
        await asyncio.gather(*(_caller(stub, make_request, until, latencies, failures) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(concurrency, latencies, elapsed, failures)


def closed_loop(target: str, make_request: RequestFactory, concurrency: int, duration_s: float) -> LoadResult:
    """Unary Reason calls from `concurrency` callers for `duration_s`; calls in flight at the end complete."""
    return asyncio.run(_closed_loop(target, make_request, concurrency, duration_s))


async def _stream_timings(target: str, make_request: RequestFactory, count: int) -> tuple[list[float], list[float]]:
    first: list[float] = []
    complete: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        for _ in range(count):
            started = time.perf_counter()
            async for _step in stub.ReasonStream(make_request(), timeout=CALL_TIMEOUT_S):
                if len(first) == len(complete):
                    first.append((time.perf_counter() - started) * 1000.0)
            complete.append((time.perf_counter() - started) * 1000.0)
    return first, complete


def stream_timings(target: str, make_request: RequestFactory, count: int) -> tuple[list[float], list[float]]:
    """`count` ReasonStream calls one after another: (ms to the first step, ms to the final step) of each."""
    return asyncio.run(_stream_timings(target, make_request, count))
