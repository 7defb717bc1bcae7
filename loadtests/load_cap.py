"""Benchmark: load-adaptive compute on a shipped model at about twice its capacity.

The server's capacity is measured first: `--callers` closed-loop callers for `--seconds`, nothing queued
(every answer runs the steps it wants). Then requests arrive open-loop at `--overload` times that rate for
`--seconds`, once with the step cap under load on (`--load-wait-ms`, the server's default) and once off.
Every request is a real test input whose answer is known (Sudoku: the hard tier as the bundle's REPORT.md
scores it; intent: CLINC150's in-scope test queries; routing: 20 Newsgroups' test posts), so each run
reports the requests answered and refused, the accuracy of the answers against the unloaded run's, their
mean steps, how many ended with HALT_REASON_LOAD, and p50/p99 latency of the accepted requests. Prints one
JSON line per run; a benchmark, not a test.

    python -m loadtests.load_cap --seconds 20 --overload 2                           # Sudoku
    python -m loadtests.load_cap --model intent-clinc150 --callers 64 --seconds 20 --overload 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from trm_client import AsyncTRMClient, Budget, ResourceExhausted, TRMError
from trm_client.results import HaltReason

from loadtests.inputs import data_dir
from loadtests.interrupts import run_stoppable
from trainer.data.text import load_clinc150, load_newsgroups
from trainer.prepare import eval_sets
from trm_bundle.manifest import load_bundle
from trm_service.testing import ServerProcess

MODELS_DIR = Path(__file__).resolve().parent.parent / "trm_service" / "models"
PUZZLES = 300  # the hard tier as the Sudoku bundle's REPORT.md scores it (eval_limit)
TEXTS = 2000  # a seeded sample of a text model's test split
Case = tuple[dict[str, str], str]
"""The request's input (grid= or text=) and its known answer (the label, or the solved grid)."""


def test_cases(model: str, data: Path) -> list[Case]:
    """Real test inputs of `model` with their answers."""
    if model == "sudoku":
        manifest = load_bundle(MODELS_DIR / model).manifest
        hard = eval_sets(manifest, MODELS_DIR / model, data / "sudoku", "test")["hard"].sample(PUZZLES, 0)
        return [({"grid": "".join(map(str, q))}, "".join(map(str, a)))
                for q, a in zip(hard.tokens, hard.targets, strict=True)]
    split = load_clinc150(data / "clinc150", "test") if model == "intent-clinc150" else load_newsgroups(
        data / "newsgroups20", "test")
    cases = [({"text": text}, label) for text, label in zip(split.texts, split.labels, strict=True) if label != "oos"]
    return [cases[i] for i in np.random.default_rng(0).permutation(len(cases))[:TEXTS]]


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


async def one_call(client: AsyncTRMClient, model: str, case: Case, tally: Tally) -> None:
    started = time.perf_counter()
    request, answer = case
    try:
        result = await client.reason(model, **request, budget=Budget(), timeout_s=30)
    except ResourceExhausted:
        tally.refused += 1
        return
    except TRMError:
        tally.failed += 1
        return
    tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    tally.steps.append(result.steps)
    tally.solved.append(result.prediction == answer)
    tally.load_halts += result.halt_reason is HaltReason.LOAD


async def closed_loop(target: str, model: str, cases: list[Case], callers: int, seconds: float) -> tuple[Tally, float]:
    """`callers` callers, each sending its next input as soon as the last is answered."""
    tally, stop_at, started = Tally([], [], []), time.perf_counter() + seconds, time.perf_counter()
    async with AsyncTRMClient(target) as client:
        async def caller(offset: int) -> None:
            index = offset
            while time.perf_counter() < stop_at:
                await one_call(client, model, cases[index % len(cases)], tally)
                index += callers

        await asyncio.gather(*(caller(i) for i in range(callers)))
    return tally, time.perf_counter() - started


async def open_loop(target: str, model: str, cases: list[Case], rate: float, seconds: float) -> tuple[Tally, float]:
    """Requests arriving every 1/rate seconds for `seconds`, whatever the answers take."""
    tally, started = Tally([], [], []), time.perf_counter()
    async with AsyncTRMClient(target) as client:
        calls = []
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            calls.append(asyncio.create_task(one_call(client, model, cases[index % len(cases)], tally)))
        await asyncio.gather(*calls)
    return tally, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sudoku", choices=("sudoku", "intent-clinc150", "routing-20ng"))
    parser.add_argument("--data-dir", help="the shared data folder (default ../shared/data)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--callers", type=int, default=32, help="closed-loop callers of the capacity run")
    parser.add_argument("--overload", type=float, default=2.0, help="arrival rate as a multiple of capacity")
    parser.add_argument("--load-wait-ms", type=int, default=200)
    args = parser.parse_args()
    cases = test_cases(args.model, data_dir(args.data_dir))
    capacity = None
    for name, wait_ms in (("cap on", args.load_wait_ms), ("cap off", 0)):
        with ServerProcess([MODELS_DIR / args.model], extra_args=["--load-wait-ms", str(wait_ms)]) as server:
            if capacity is None:
                tally, wall_s = asyncio.run(closed_loop(server.target, args.model, cases, args.callers, args.seconds))
                capacity = len(tally.steps) / wall_s
                print(json.dumps(tally.report("capacity (closed loop, unloaded)", wall_s)), flush=True)
            rate = args.overload * capacity
            tally, wall_s = asyncio.run(open_loop(server.target, args.model, cases, rate, args.seconds))
            print(json.dumps({**tally.report(f"{name}, {rate:.1f} req/s offered", wall_s),
                              "load_wait_ms": wait_ms}), flush=True)


if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.load_cap"))
