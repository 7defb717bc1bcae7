"""Benchmark: how long the next call waits after many streaming requests were cancelled mid-step.

A cancelled request leaves its model's batch at once, but the supervision step already running for
the batch holds the model's thread until it ends. This starts N Sudoku streams that never halt on
confidence, cancels them all while a step runs, and times a one-step Reason call sent right after;
it also times the same call on the idle server. Prints the figures; a benchmark, not a test.

    python -m loadtests.cancel_wait --streams 200 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.inputs import data_dir, sudoku_grids
from trm_service.testing import ServerProcess

SUDOKU_BUNDLE = Path(__file__).resolve().parent.parent / "trm_service" / "models" / "sudoku"
MODEL = "sudoku"
STREAMS_PER_CHANNEL = 50  # below gRPC's default of 100 concurrent streams per connection


def _one_step(grid: str) -> trm_pb2.ReasonRequest:
    return trm_pb2.ReasonRequest(model=MODEL, grid=trm_pb2.Grid(cells=grid), budget=trm_pb2.Budget(max_steps=1))


def _timed_call(stub: trm_pb2_grpc.ReasoningServiceStub, grid: str) -> float:
    started = time.perf_counter()
    stub.Reason(_one_step(grid), timeout=60)
    return time.perf_counter() - started


def _wait_after_cancelling(
    stubs: list[trm_pb2_grpc.ReasoningServiceStub], grids: list[str], streams: int, into_step_s: float
) -> float:
    """Start `streams` never-halting streams, wait until a step has run for every request in the batch,
    let the next step run for `into_step_s`, cancel every stream, and time the next one-step call."""
    budget = trm_pb2.Budget(halt_threshold=1.0)
    calls = [
        stubs[i % len(stubs)].ReasonStream(
            trm_pb2.ReasonRequest(model=MODEL, grid=trm_pb2.Grid(cells=grids[i]), budget=budget), timeout=300
        )
        for i in range(streams)
    ]
    next(calls[min(streams, 64) - 1])  # a step has run for every request of the batch (default size 64)
    time.sleep(into_step_s)  # into the next step, which runs all of them
    for call in calls:
        call.cancel()
    return _timed_call(stubs[0], grids[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200, help="streams cancelled at once (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements (default 5)")
    parser.add_argument("--into-step-ms", type=float, default=100.0,
                        help="how long the step runs before the streams are cancelled (default 100)")
    parser.add_argument("--data-dir", default=None, help="the shared data folder (default: $TRM_DATA_DIR or "
                                                         "../shared/data)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `trm-service serve` argument")
    args = parser.parse_args()
    grids = sudoku_grids(data_dir(args.data_dir))[: args.streams + 1]
    with ServerProcess([SUDOKU_BUNDLE], extra_args=args.serve_arg) as server, contextlib.ExitStack() as stack:
        channels = [stack.enter_context(grpc.insecure_channel(server.target))
                    for _ in range(-(-args.streams // STREAMS_PER_CHANNEL))]
        stubs = [trm_pb2_grpc.ReasoningServiceStub(channel) for channel in channels]
        idle = [_timed_call(stubs[0], grids[-1]) for _ in range(args.repeats + 1)][1:]
        after = []
        for _ in range(args.repeats):
            after.append(_wait_after_cancelling(stubs, grids, args.streams, args.into_step_ms / 1000.0))
            time.sleep(1.0)  # let the server settle between measurements
        step_s = server.sample_value("trm_step_seconds_sum", model=MODEL) / max(
            1.0, server.sample_value("trm_step_seconds_count", model=MODEL))
    print(f"sudoku, {args.streams} streams cancelled {args.into_step_ms:.0f} ms into a step, "
          f"{args.repeats} repeats; serve args: {' '.join(args.serve_arg) or 'defaults'}")
    print(f"  one-step call on the idle server:   median {statistics.median(idle) * 1000:7.1f} ms")
    print(f"  the same call right after cancelling: median {statistics.median(after) * 1000:7.1f} ms, "
          f"max {max(after) * 1000:7.1f} ms  ({', '.join(f'{a * 1000:.0f}' for a in after)})")
    print(f"  mean batched step (all steps of the run): {step_s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
