"""Benchmark: load-adaptive compute on the shipped Sudoku model at about twice its capacity.

The server's capacity is measured first: `--callers` closed-loop callers for `--seconds`, nothing queued
(every answer runs the steps it wants). Then requests arrive open-loop at `--overload` times that rate for
`--seconds`, once with the step cap under load on (`--load-wait-ms`, the server's default) and once off.
Every request is a hard-tier test puzzle (the bundle's REPORT.md set) whose solution is known, so each
run reports the requests answered and refused, the exact-solution accuracy of the answers against the
unloaded run's, their mean steps, how many ended with HALT_REASON_LOAD, and p50/p99 latency of the
accepted requests. Prints one JSON line per run; a benchmark, not a test.

    python -m loadtests.load_cap --seconds 20 --overload 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from trm_client import AsyncTRMClient, Budget, ResourceExhausted, TRMError
from trm_client.results import HaltReason

from loadtests.inputs import data_dir
from trainer.prepare import eval_sets
from trm_bundle.manifest import load_bundle
from trm_service.testing import ServerProcess

SUDOKU_BUNDLE = Path(__file__).resolve().parent.parent / "trm_service" / "models" / "sudoku"
MODEL = "sudoku"
PUZZLES = 300  # the hard tier as the bundle's REPORT.md scores it (eval_limit)


@dataclass
class Tally:
    """What the requests of one run got."""

    latencies_ms: list[float]
    steps: list[int]
    solved: list[bool]
    load_halts: int = 0
    refused: int = 0
    failed: int = 0

    def report(self, name: str, wall_s: float) -> dict[str, object]:
        latencies = np.array(self.latencies_ms or [0.0])
        return {
            "run": name, "answered": len(self.steps), "refused": self.refused, "failed": self.failed,
            "answered_per_s": round(len(self.steps) / wall_s, 2),
            "solved": round(float(np.mean(self.solved)), 4) if self.solved else None,
            "mean_steps": round(float(np.mean(self.steps)), 3) if self.steps else None,
            "load_halts": self.load_halts,
            "p50_ms": round(float(np.percentile(latencies, 50)), 1),
            "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        }


async def one_call(client: AsyncTRMClient, grid: str, solution: str, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        result = await client.reason(MODEL, grid=grid, budget=Budget(), timeout_s=30)
    except ResourceExhausted:
        tally.refused += 1
        return
    except TRMError:
        tally.failed += 1
        return
    tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    tally.steps.append(result.steps)
    tally.solved.append(result.answer.cells == solution)
    tally.load_halts += result.halt_reason is HaltReason.LOAD


async def closed_loop(target: str, puzzles: list[tuple[str, str]], callers: int, seconds: float) -> tuple[Tally, float]:
    """`callers` callers, each sending its next puzzle as soon as the last is answered."""
    tally, stop_at, started = Tally([], [], []), time.perf_counter() + seconds, time.perf_counter()
    async with AsyncTRMClient(target) as client:
        async def caller(offset: int) -> None:
            index = offset
            while time.perf_counter() < stop_at:
                await one_call(client, *puzzles[index % len(puzzles)], tally)
                index += callers

        await asyncio.gather(*(caller(i) for i in range(callers)))
    return tally, time.perf_counter() - started


async def open_loop(target: str, puzzles: list[tuple[str, str]], rate: float, seconds: float) -> tuple[Tally, float]:
    """Requests arriving every 1/rate seconds for `seconds`, whatever the answers take."""
    tally, started = Tally([], [], []), time.perf_counter()
    async with AsyncTRMClient(target) as client:
        calls = []
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            calls.append(asyncio.create_task(one_call(client, *puzzles[index % len(puzzles)], tally)))
        await asyncio.gather(*calls)
    return tally, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="the shared data folder (default ../shared/data)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--callers", type=int, default=32, help="closed-loop callers of the capacity run")
    parser.add_argument("--overload", type=float, default=2.0, help="arrival rate as a multiple of capacity")
    parser.add_argument("--load-wait-ms", type=int, default=200)
    args = parser.parse_args()
    manifest = load_bundle(SUDOKU_BUNDLE).manifest
    hard = eval_sets(manifest, SUDOKU_BUNDLE, data_dir(args.data_dir) / "sudoku", "test")["hard"].sample(PUZZLES, 0)
    puzzles = [("".join(map(str, q)), "".join(map(str, a))) for q, a in zip(hard.tokens, hard.targets, strict=True)]
    capacity = None
    for name, wait_ms in (("cap on", args.load_wait_ms), ("cap off", 0)):
        with ServerProcess([SUDOKU_BUNDLE], extra_args=["--load-wait-ms", str(wait_ms)]) as server:
            if capacity is None:
                tally, wall_s = asyncio.run(closed_loop(server.target, puzzles, args.callers, args.seconds))
                capacity = len(tally.steps) / wall_s
                print(json.dumps(tally.report("capacity (closed loop, unloaded)", wall_s)), flush=True)
            rate = args.overload * capacity
            tally, wall_s = asyncio.run(open_loop(server.target, puzzles, rate, args.seconds))
            print(json.dumps({**tally.report(f"{name}, {rate:.1f} req/s offered", wall_s),
                              "load_wait_ms": wait_ms}), flush=True)


if __name__ == "__main__":
    main()
