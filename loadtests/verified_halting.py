"""Benchmark: what verified halting saves on the shipped Sudoku model (HALT_REASON_VERIFIED).

Each test tier's puzzles (the 300 per tier that the bundle's REPORT.md scores, `trm-train eval --limit
300`) go through a real server twice, through the SDK with a fixed number of concurrent callers: once
with the default budget (a verified answer stops at once) and once with `continue_when_verified`, the
halting head alone. Prints, per tier and source file, the mean steps, the exact-solution accuracy, and
the throughput of each run and their ratio; a benchmark, not a test.

    python -m loadtests.verified_halting --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from trm_client import Budget, ReasonResult, TRMClient
from trm_client.results import HaltReason

from loadtests.inputs import data_dir
from trainer.prepare import eval_sets
from trm_bundle.manifest import load_bundle
from trm_service.testing import ServerProcess

SUDOKU_BUNDLE = Path(__file__).resolve().parent.parent / "trm_service" / "models" / "sudoku"
MODEL = "sudoku"
PUZZLES_PER_TIER = 300  # as the bundle's REPORT.md (eval_limit)


@dataclass(frozen=True)
class Run:
    """One pass over a tier's puzzles."""

    steps: np.ndarray
    solved: np.ndarray
    verified_stops: int
    wall_s: float


def run_tier(client: TRMClient, grids: list[str], solutions: list[str], budget: Budget, concurrency: int) -> Run:
    """Every grid through `client` with `concurrency` callers at a time."""
    def call(grid: str) -> ReasonResult:
        return client.reason(MODEL, grid=grid, budget=budget, timeout_s=120)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(call, grids))
    wall_s = time.perf_counter() - started
    return Run(
        steps=np.array([r.steps for r in results]),
        solved=np.array([r.answer.cells == s for r, s in zip(results, solutions, strict=True)]),
        verified_stops=sum(r.halt_reason is HaltReason.VERIFIED for r in results),
        wall_s=wall_s,
    )


def summary(run: Run, rows: np.ndarray) -> dict[str, float]:
    return {"mean_steps": round(float(run.steps[rows].mean()), 3),
            "solved": round(float(run.solved[rows].mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="the shared data folder (default ../shared/data)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tiers", nargs="+", default=["medium", "hard"])
    args = parser.parse_args()
    manifest = load_bundle(SUDOKU_BUNDLE).manifest
    sets = eval_sets(manifest, SUDOKU_BUNDLE, data_dir(args.data_dir) / "sudoku", "test")
    with ServerProcess([SUDOKU_BUNDLE]) as server, TRMClient(server.target) as client:
        for tier in args.tiers:
            data = sets[tier].sample(PUZZLES_PER_TIER, seed=0)
            grids = ["".join(map(str, row)) for row in data.tokens]
            solutions = ["".join(map(str, row)) for row in data.targets]
            runs = {
                "verified halting": run_tier(client, grids, solutions, Budget(), args.concurrency),
                "halting head only": run_tier(client, grids, solutions, Budget(continue_when_verified=True),
                                              args.concurrency),
            }
            sources = {"all": np.arange(len(grids))}
            sources.update({str(s): np.flatnonzero(data.sources == s) for s in dict.fromkeys(data.sources.tolist())})
            report = {
                "tier": tier, "puzzles": len(grids), "concurrency": args.concurrency,
                "runs": {name: {"puzzles_per_s": round(len(grids) / run.wall_s, 2),
                                "verified_stops": run.verified_stops,
                                **{source: summary(run, rows) for source, rows in sources.items()}}
                         for name, run in runs.items()},
                "throughput_ratio": round(runs["halting head only"].wall_s / runs["verified halting"].wall_s, 3),
            }
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
