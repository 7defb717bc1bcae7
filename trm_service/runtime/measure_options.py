"""Measure ONNX Runtime session options on real bundles: median step time per batch size.

    python -m trm_service.runtime.measure_options BUNDLE_DIR [BUNDLE_DIR ...] [--batch-sizes 1,8,64]

Prints a Markdown table (one row per option set and batch size). The variants are measured in
interleaved rounds and each cell keeps its best round, so a noisy neighbour hurts all alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from trm_bundle.manifest import load_bundle
from trm_service.runtime.session import SessionSettings, StepSession

CHOSEN = SessionSettings()
VARIANTS: dict[str, SessionSettings] = {
    "chosen: 1 thread, sequential, all optimisations, no spinning": CHOSEN,
    "2 intra-op threads": replace(CHOSEN, intra_op_threads=2),
    "2 intra-op threads, spinning": replace(CHOSEN, intra_op_threads=2, allow_spinning=True),
    "parallel execution, 2 inter-op threads": replace(CHOSEN, parallel_execution=True, inter_op_threads=2),
    "basic graph optimisations": replace(CHOSEN, graph_optimization="basic"),
    "no graph optimisations": replace(CHOSEN, graph_optimization="disable"),
}


def median_step_ms(session: StepSession, batch: int, repeats: int) -> float:
    """Median wall time of one supervision step for `batch` rows, in milliseconds."""
    tokens = np.ones((batch, session.sequence_length), dtype=np.int64)
    state = session.initial_state(batch)
    for _ in range(5):
        session.run(tokens, state, state)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(tokens, state, state)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def measure(bundle_dir: Path, batch_sizes: Sequence[int], repeats: int, rounds: int) -> dict[tuple[str, int], float]:
    """Best-of-`rounds` median step time for every (variant, batch size)."""
    bundle = load_bundle(bundle_dir)
    sessions = {
        name: StepSession(bundle.file(bundle.manifest.onnx_fp32), bundle.manifest, settings)
        for name, settings in VARIANTS.items()
    }
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for batch in batch_sizes:
            for name, session in sessions.items():
                value = median_step_ms(session, batch, repeats)
                best[name, batch] = min(best.get((name, batch), float("inf")), value)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    """Print the comparison table for each bundle given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    for bundle_dir in args.bundles:
        results = measure(bundle_dir, batch_sizes, args.repeats, args.rounds)
        manifest = load_bundle(bundle_dir).manifest
        print(f"\n{manifest.name} (state {manifest.recursion.state_shape}, n={manifest.recursion.n}, "
              f"T={manifest.recursion.T}): median ms per step\n")
        print("| options | " + " | ".join(f"batch {b}" for b in batch_sizes) + " |")
        print("|---|" + "---:|" * len(batch_sizes))
        for name in VARIANTS:
            cells = " | ".join(f"{results[name, b]:.3f}" for b in batch_sizes)
            print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
