"""Profile: where a request's time goes inside the service, thread by thread, at several concurrencies.

Starts the service on the default bundles, drives one model with the benchmark's closed-loop client at
each concurrency, and prints, for every server thread (the event loop, the model's step thread, gRPC's
poller...), its CPU time per request (from /proc, Linux) and, sampled by py-spy (the dev extra), the
functions it spends its samples in (inclusive share, and the top "self" lines). Samples in
`Runner.run (asyncio/runners.py)` itself are the event loop's compiled code: uvloop and gRPC's Cython
server (reading, writing and dispatching calls). A profile, not a test: figures depend on the machine.

    python -m loadtests.profile_server --model intent-clinc150 --concurrency 1 8 64 --duration 8
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.bench import request_factory
from loadtests.closed_loop import closed_loop
from loadtests.inputs import DEFAULT_MODELS, data_dir, load_inputs
from loadtests.interrupts import run_stoppable
from loadtests.local_server import models_dir, service, text_limits, wait_until_serving

SAMPLE_RATE_HZ = 200
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LINE = re.compile(r":\d+\)$")


def thread_cpu_ticks(pid: int) -> dict[int, int]:
    """User + system CPU ticks of every thread of `pid`, by thread id."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


def find_py_spy() -> str | None:
    """The py-spy executable: on PATH, else beside this interpreter (a virtual environment used without
    activating it, as `make` does)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=sysconfig.get_path("scripts"))


def thread_names(py_spy: str, pid: int) -> dict[int, str]:
    """Python thread names by thread id, from `py-spy dump` (the main thread's id is the process id)."""
    dump = subprocess.run([py_spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True)
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]+)"', dump.stdout)}


@dataclass
class ThreadSamples:
    """py-spy samples of one thread: in total, per function (inclusive) and per innermost line (self)."""

    total: int = 0
    inclusive: collections.Counter[str] = field(default_factory=collections.Counter)
    innermost: collections.Counter[str] = field(default_factory=collections.Counter)


def read_raw_samples(path: Path) -> dict[str, ThreadSamples]:
    """Parse py-spy's raw (collapsed stack) output recorded with --threads, by thread name."""
    threads: dict[str, ThreadSamples] = collections.defaultdict(ThreadSamples)
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        head, *frames = stack.split(";")
        samples = threads[re.sub(r"^thread \(\w+\): ", "", head)]
        samples.total += int(count)
        for function in {_LINE.sub(")", frame) for frame in frames}:
            samples.inclusive[function] += int(count)
        if frames:
            samples.innermost[frames[-1]] += int(count)
    return threads


def profile_level(
    py_spy: str, target: str, pid: int, make, concurrency: int, duration_s: float, scratch: Path
) -> str:
    """Drive one concurrency level while sampling; return its Markdown section."""
    names = thread_names(py_spy, pid)
    raw = scratch / f"c{concurrency}.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ), "--duration", str(int(duration_s)),
         "--format", "raw", "--threads", "--nonblocking", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # py-spy attaches
    before = thread_cpu_ticks(pid)
    result = closed_loop(target, make, concurrency, duration_s - 1.0)
    after = thread_cpu_ticks(pid)
    spy.wait()
    calls = max(1, len(result.latencies_ms))
    lines = [
        f"### concurrency {concurrency}: {result.throughput:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms",
        "",
        "| thread | CPU µs per request |",
        "|---|---:|",
    ]
    per_request = {tid: (ticks - before.get(tid, 0)) * 1e6 / _CLOCK_TICKS / calls for tid, ticks in after.items()}
    for tid, micros in sorted(per_request.items(), key=lambda item: -item[1]):
        if micros > 0:
            lines.append(f"| {names.get(tid, f'thread {tid} (native: gRPC, ONNX Runtime)')} | {micros:.0f} |")
    lines.append(f"| **all** | **{sum(per_request.values()):.0f}** |")
    for name, samples in sorted(read_raw_samples(raw).items(), key=lambda item: -item[1].total):
        if samples.total < 0.05 * SAMPLE_RATE_HZ * duration_s:
            continue
        lines += ["", f"{name}: {samples.total} samples while on CPU", "", "| inclusive | function |", "|---:|---|"]
        shown = [(f, n) for f, n in samples.inclusive.most_common() if n < samples.total][:18]
        lines += [f"| {100 * n / samples.total:.1f} % | {f} |" for f, n in shown]
        lines += ["", "| self | line |", "|---:|---|"]
        lines += [f"| {100 * n / samples.total:.1f} % | {f} |" for f, n in samples.innermost.most_common(6)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(DEFAULT_MODELS), default="intent-clinc150")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per concurrency (at least 3)")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $TRM_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    py_spy = find_py_spy()
    if py_spy is None:
        parser.error("py-spy is not installed: pip install py-spy (it is in the dev extra)")
    if args.duration < 3:
        parser.error("--duration must be at least 3 seconds")
    data = data_dir(args.data_dir)
    inputs = load_inputs(data, [args.model])[args.model]
    print(f"Command: `python -m loadtests.profile_server {' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    with tempfile.TemporaryDirectory(prefix="trm-profile-") as scratch, service(
        models_dir("default", Path(scratch), data)
    ) as server:
        wait_until_serving(server.target)
        make = request_factory(inputs, text_limits(server.target)[args.model], seed=1)
        closed_loop(server.target, make, 1, 1.0)  # warm-up
        for concurrency in args.concurrency:
            section = profile_level(py_spy, server.target, server.pid, make, concurrency, args.duration,
                                    Path(scratch))
            print(section + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.profile_server"))
