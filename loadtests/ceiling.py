"""How much of the machine the gRPC front end alone takes, against what the plain-server bars ask.

Runs the service, the plain ONNX Runtime server and two servers that do no work (loadtests.
fixed_reply_server: the synchronous front end and grpc.aio) side by side, in alternating slices with the
benchmark's client, and prints for each the req/s and the CPU time per request of the client (this
process) and of the server. Below each table: the CPU a request may cost in all (client and server, every
core busy) if the service is to answer 2x the plain server's req/s at 64 callers, and what is left of it
once the client and the fixed-reply aio server (gRPC alone) have theirs. A measurement, not a test.

    python -m loadtests.ceiling --duration 8      # about 4 minutes
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field

import psutil

from loadtests.bench import PLAIN_BAR_MODELS, PLAIN_BAR_RATIO, SLICE_S, WARMUP_S, request_factory
from loadtests.closed_loop import RequestFactory, closed_loop, percentile_ms
from loadtests.inputs import data_dir, load_inputs
from loadtests.interrupts import run_stoppable
from loadtests.local_server import fixed_reply_server, plain_server, service, text_limits, wait_until_serving
from trm_service.config import DEFAULT_MODELS_DIR

BAR_CONCURRENCY = 64


@dataclass
class Tally:
    """One server at one concurrency, summed over its slices."""

    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    def per_request_us(self, cpu_s: float) -> float:
        """`cpu_s` spread over the completed requests, in microseconds."""
        return cpu_s / len(self.latencies_ms) * 1e6

    @property
    def throughput(self) -> float:
        """Completed requests per second of measured time."""
        return len(self.latencies_ms) / self.elapsed_s


def own_cpu_s() -> float:
    """CPU seconds of this process (the client) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a server process and its children so far."""
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def measure(
    servers: dict[str, tuple[str, int]], make: RequestFactory, concurrency: int, duration_s: float
) -> dict[str, Tally]:
    """Every server at `concurrency` in alternating slices of about SLICE_S, CPU counted per slice."""
    tallies = {name: Tally() for name in servers}
    names = list(servers)
    slices = max(1, round(duration_s / SLICE_S))
    for index in range(slices):
        for name in names if index % 2 == 0 else names[::-1]:
            target, pid = servers[name]
            client, server = own_cpu_s(), tree_cpu_s(pid)
            result = closed_loop(target, make, concurrency, duration_s / slices)
            tally = tallies[name]
            tally.client_cpu_s += own_cpu_s() - client
            tally.server_cpu_s += tree_cpu_s(pid) - server
            tally.latencies_ms += result.latencies_ms
            tally.elapsed_s += result.elapsed_s
    return tallies


def report(model: str, by_concurrency: dict[int, dict[str, Tally]]) -> list[str]:
    """The markdown table of one model, and the CPU budget of the c=64 bar."""
    lines = [f"#### {model}", "", "| concurrency | server | req/s | p50 / p99 ms | client µs / request | "
             "server µs / request | / plain |", "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for concurrency, tallies in by_concurrency.items():
        plain = tallies["plain"].throughput
        for name, tally in tallies.items():
            lines.append(
                f"| {concurrency} | {name} | {tally.throughput:.1f} | {percentile_ms(tally.latencies_ms, 50):.1f} / "
                f"{percentile_ms(tally.latencies_ms, 99):.1f} | {tally.per_request_us(tally.client_cpu_s):.0f} | "
                f"{tally.per_request_us(tally.server_cpu_s):.0f} | {tally.throughput / plain:.2f}x |"
            )
    if BAR_CONCURRENCY in by_concurrency:
        tallies = by_concurrency[BAR_CONCURRENCY]
        wanted = PLAIN_BAR_RATIO[BAR_CONCURRENCY] * tallies["plain"].throughput
        budget = (os.cpu_count() or 1) / wanted * 1e6
        grpc_alone = tallies["fixed aio"]
        taken = grpc_alone.per_request_us(grpc_alone.client_cpu_s) + grpc_alone.per_request_us(grpc_alone.server_cpu_s)
        lines += ["", f"{PLAIN_BAR_RATIO[BAR_CONCURRENCY]:.1f}x the plain server at c={BAR_CONCURRENCY} is "
                  f"{wanted:.0f} req/s: at most {budget:.0f} µs of CPU per request on {os.cpu_count()} cores with "
                  f"every core busy; the client and gRPC alone (fixed aio) take {taken:.0f}, leaving "
                  f"{budget - taken:.0f} µs for tokenising, scheduling, the step, the answer, metrics and the log "
                  "line."]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", choices=list(PLAIN_BAR_MODELS), default=list(PLAIN_BAR_MODELS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=sorted(PLAIN_BAR_RATIO))
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per server and concurrency")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $TRM_DATA_DIR or ../shared/data)")
    args = parser.parse_args(argv)
    inputs = load_inputs(data_dir(args.data_dir), args.model)
    with ExitStack() as stack:
        ours = stack.enter_context(service(DEFAULT_MODELS_DIR))
        wait_until_serving(ours.target)
        limits = text_limits(ours.target)
        servers = {"service": (ours.target, ours.pid), "plain": stack.enter_context(plain_server(DEFAULT_MODELS_DIR))}
        for front_end in ("sync", "aio"):
            servers[f"fixed {front_end}"] = stack.enter_context(fixed_reply_server(DEFAULT_MODELS_DIR, front_end))
        for model in args.model:
            make = request_factory(inputs[model], limits[model], seed=1)
            for target, _ in servers.values():
                closed_loop(target, make, 1, WARMUP_S)
            results = {c: measure(servers, make, c, args.duration) for c in args.concurrency}
            print("\n".join(["", *report(model, results)]), flush=True)


if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.ceiling"))
