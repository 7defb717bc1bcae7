"""Benchmark: the service against two baselines serving the same bundles: the naive PyTorch baseline
(PyTorch eager, one request at a time) and the plain ONNX Runtime server (loadtests.plain_server: 4 gRPC
threads, the int8 step per request at its own length, no batching; text and grid models).

For each default model: throughput and p50/p99 latency of unary Reason at concurrency 1, 8 and 64,
and the time to the first streamed step; for each server: RSS and the time from start to SERVING.
The plain server runs beside the service and the two are measured in alternating slices of about 2 s
at each concurrency, so that both meet the same load from the machine's other jobs. Then a batch job per
text model (loadtests.batch_job): the same inputs through ReasonBatch calls of 64 on the service and
through 64 unary calls in flight on the plain server, in alternating rounds.
Then the sequence model, when its bundle is there (loadtests.sequence_bench: latency of 20-token answers
at concurrency 1, throughput at 32, and decoding with the prefix cache against recomputing it).
Its Machine line names the CPU and times the intent model's served step before any server starts
(loadtests.step_cost), so that runs on different machines can be told apart.
Prints the figures as Markdown (for docs/PERFORMANCE.md), writes them as JSON, and checks the bars
for the intent model and the service/plain bars for the text models. A benchmark, not a test:
figures depend on the machine and what else runs. With the defaults (10 s per model and
concurrency) a run takes about 9 minutes on 2 cores; `--duration 1 --streams 3` about 1.5.

    python -m loadtests.bench                      # the trained default bundles
    python -m loadtests.bench --bundles untrained  # their architecture with random weights
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from trm.v1 import trm_pb2

from loadtests import sequence_bench
from loadtests.batch_job import Ways, batched, timed_rounds, unary
from loadtests.closed_loop import LoadResult, RequestFactory, closed_loop, percentile_ms, stream_timings
from loadtests.inputs import DEFAULT_MODELS, ModelInputs, data_dir, load_inputs
from loadtests.interrupts import run_stoppable
from loadtests.local_server import (
    BUNDLE_KINDS,
    models_dir,
    naive_server,
    plain_server,
    service,
    text_limits,
    tree_rss_bytes,
    wait_until_serving,
)
from loadtests.step_cost import served_model, step_seconds
from trainer.arguments import positive_int, positive_number, writable_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
BAR_MODEL = "intent-clinc150"
BAR_SPEEDUP = 10.0
BAR_RSS_MB = 300.0
BAR_SERVING_S = 3.0
WARMUP_S = 1.0
SLICE_S = 2.0  # servers measured side by side alternate in slices of about this long
PLAIN_BAR_MODELS = ("intent-clinc150", "routing-20ng")
PLAIN_BAR_RATIO = {1: 1.0, 8: 1.0, 64: 2.0}  # service / plain throughput, by concurrency
PLAIN_BAR_P99_MS = 50.0  # the service's p99 at the highest of these concurrencies
BATCH_JOB_BATCH, BATCH_JOB_CALLERS, BATCH_JOB_CONCURRENCY, BATCH_JOB_ROUNDS = 64, 2, 64, 2


@dataclass
class ServerFigures:
    """One server's figures: load results per model and concurrency, first-step times, RSS, start time."""

    name: str
    start_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    load: dict[str, dict[int, LoadResult]] = field(default_factory=dict)
    first_step_ms: dict[str, list[float]] = field(default_factory=dict)
    batch_job_rate: dict[str, float] = field(default_factory=dict)
    """Inputs per second of the batch job, by model (the service: ReasonBatch; the plain server: unary)."""

    def to_json(self) -> dict:
        """Plain figures (no raw latencies) for the JSON report."""
        return {
            "start_s": round(self.start_s, 3),
            "rss_idle_mb": round(self.rss_idle_mb, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "reason": {
                model: {
                    str(c): {
                        "throughput_rps": round(r.throughput, 1),
                        "p50_ms": round(r.p50_ms, 2),
                        "p99_ms": round(r.p99_ms, 2),
                        "calls": len(r.latencies_ms),
                        "failures": dict(r.failures),
                    }
                    for c, r in levels.items()
                }
                for model, levels in self.load.items()
            },
            "first_step_ms": {
                model: {"p50": round(percentile_ms(t, 50), 2), "p99": round(percentile_ms(t, 99), 2)}
                for model, t in self.first_step_ms.items()
            },
            "batch_job_inputs_per_s": {model: round(rate, 1) for model, rate in self.batch_job_rate.items()},
        }


@dataclass(frozen=True)
class BenchSettings:
    """How long and how hard to drive each server."""

    concurrencies: tuple[int, ...]
    duration_s: float
    streams: int


def request_factory(inputs: ModelInputs, max_chars: int, seed: int) -> RequestFactory:
    """Random real test inputs for one model, texts cut to the model's limit as a client would."""
    rng = random.Random(seed)

    def make() -> trm_pb2.ReasonRequest:
        sample = inputs.pick(rng)
        if inputs.kind == "grid":
            return trm_pb2.ReasonRequest(model=inputs.model, grid=trm_pb2.Grid(cells=sample))
        return trm_pb2.ReasonRequest(model=inputs.model, text=sample[:max_chars])

    return make


@dataclass
class RunningServer:
    """A started server under measurement: its figures, address and process id."""

    figures: ServerFigures
    target: str
    pid: int

    def note_rss(self) -> None:
        self.figures.rss_peak_mb = max(self.figures.rss_peak_mb, tree_rss_bytes(self.pid) / 2**20)


def merged(results: list[LoadResult]) -> LoadResult:
    """One result from consecutive runs at the same concurrency: all calls over the summed busy time."""
    return LoadResult(
        results[0].concurrency,
        [latency for result in results for latency in result.latencies_ms],
        sum(result.elapsed_s for result in results),
        sum((result.failures for result in results), Counter()),
    )


def measure(
    servers: list[RunningServer], factories: dict[str, RequestFactory], settings: BenchSettings, streams: bool
) -> None:
    """Warm up each model, run it at every concurrency, then probe the streams (first server only, if
    `streams`); track the RSS peaks. Several servers are measured side by side: each concurrency runs in
    slices of about 2 s that alternate between them, so that the load of the machine's other jobs, which
    drifts over minutes, weighs on all of them alike."""
    for server in servers:
        server.figures.rss_idle_mb = server.figures.rss_peak_mb = tree_rss_bytes(server.pid) / 2**20
    slices = max(1, round(settings.duration_s / SLICE_S))
    for model, make in factories.items():
        for server in servers:
            closed_loop(server.target, make, 1, WARMUP_S)
        for concurrency in settings.concurrencies:
            results: dict[str, list[LoadResult]] = {server.figures.name: [] for server in servers}
            for index in range(slices):
                for server in servers if index % 2 == 0 else servers[::-1]:
                    results[server.figures.name].append(
                        closed_loop(server.target, make, concurrency, settings.duration_s / slices)
                    )
                    server.note_rss()
            for server in servers:
                result = server.figures.load.setdefault(model, {})[concurrency] = merged(results[server.figures.name])
                print(
                    f"  {server.figures.name:7} {model:16} c={concurrency:<3} {result.throughput:8.1f} req/s  "
                    f"p50 {result.p50_ms:8.1f} ms  p99 {result.p99_ms:8.1f} ms  failures {dict(result.failures)}",
                    flush=True,
                )
        if streams:
            servers[0].figures.first_step_ms[model], _ = stream_timings(servers[0].target, make, settings.streams)


def bench_service_and_plain(
    models: Path, inputs: dict[str, ModelInputs], settings: BenchSettings, server_args: Sequence[str] = ()
) -> tuple[ServerFigures, ServerFigures, dict[str, int]]:
    """Start the service (timed to SERVING) and the plain ONNX Runtime server (timed to listening), measure
    every model on both side by side, then the text models' batch job; also return the service's text
    limits."""
    ours, plain = ServerFigures("service"), ServerFigures("plain")
    started = time.perf_counter()
    with service(models, server_args) as server:
        wait_until_serving(server.target)
        ours.start_s = time.perf_counter() - started
        limits = text_limits(server.target)
        factories = {m: request_factory(i, limits[m], seed=1) for m, i in inputs.items()}
        running = RunningServer(ours, server.target, server.pid)
        started = time.perf_counter()
        with plain_server(models) as (plain_target, plain_pid):
            plain.start_s = time.perf_counter() - started
            measure([running, RunningServer(plain, plain_target, plain_pid)], factories, settings, streams=True)
            for model, make in factories.items():
                if inputs[model].kind != "text":
                    continue
                ways: Ways = {"service": (server.target, batched(BATCH_JOB_BATCH, BATCH_JOB_CALLERS)),
                              "plain": (plain_target, unary(BATCH_JOB_CONCURRENCY))}
                requests = [make() for _ in range(BATCH_JOB_BATCH * max(2, round(settings.duration_s)))]
                rates = timed_rounds(ways, requests, BATCH_JOB_ROUNDS)
                ours.batch_job_rate[model], plain.batch_job_rate[model] = rates["service"], rates["plain"]
                print(f"  batch job {model:16} ReasonBatch {rates['service']:8.1f} inputs/s  "
                      f"plain {rates['plain']:8.1f} inputs/s", flush=True)
    return ours, plain, limits


def bench_naive(
    models: Path, inputs: dict[str, ModelInputs], limits: dict[str, int], settings: BenchSettings
) -> ServerFigures:
    """Start the naive baseline, time it to listening, measure it with the same inputs."""
    figures = ServerFigures("naive")
    started = time.perf_counter()
    with naive_server(models) as (target, pid):
        figures.start_s = time.perf_counter() - started
        factories = {m: request_factory(i, limits[m], seed=1) for m, i in inputs.items()}
        measure([RunningServer(figures, target, pid)], factories, settings, streams=True)
    return figures


def bars(ours_all: ServerFigures, naive: ServerFigures) -> list[tuple[str, bool]]:
    """The intent model's bars: (description with the measured value, met?)."""
    top = max(ours_all.load[BAR_MODEL])
    ours, theirs = ours_all.load[BAR_MODEL][top], naive.load[BAR_MODEL][top]
    speedup = ours.throughput / theirs.throughput if theirs.throughput else float("inf")
    return [
        (f"throughput at concurrency {top}: {speedup:.1f}x the naive baseline (bar >= {BAR_SPEEDUP:.0f}x)",
         speedup >= BAR_SPEEDUP),
        (f"p99 at concurrency {top}: {ours.p99_ms:.1f} ms vs naive {theirs.p99_ms:.1f} ms (bar: lower)",
         ours.p99_ms < theirs.p99_ms),
        (f"service RSS with all models: peak {ours_all.rss_peak_mb:.0f} MB (bar <= {BAR_RSS_MB:.0f} MB)",
         ours_all.rss_peak_mb <= BAR_RSS_MB),
        (f"start to SERVING: {ours_all.start_s:.2f} s (bar <= {BAR_SERVING_S:.0f} s)",
         ours_all.start_s <= BAR_SERVING_S),
    ]  # fmt: skip


def plain_bars(ours: ServerFigures, plain: ServerFigures) -> list[tuple[str, bool]]:
    """The service/plain throughput bars of the text models at the concurrencies that have one, and the
    service's p99 at the highest of them."""
    found = []
    for model in PLAIN_BAR_MODELS:
        for concurrency, bar in PLAIN_BAR_RATIO.items():
            if concurrency not in ours.load.get(model, {}):
                continue
            ratio = ours.load[model][concurrency].throughput / plain.load[model][concurrency].throughput
            found.append((f"{model} c={concurrency}: service {ratio:.3f}x the plain server (bar >= {bar:.1f}x)",
                          ratio >= bar))  # fmt: skip
        top = max(PLAIN_BAR_RATIO)
        if top in ours.load.get(model, {}):
            p99 = ours.load[model][top].p99_ms
            found.append((f"{model} c={top}: service p99 {p99:.1f} ms (bar <= {PLAIN_BAR_P99_MS:.0f} ms)",
                          p99 <= PLAIN_BAR_P99_MS))  # fmt: skip
    return found


def plain_table(ours: ServerFigures, plain: ServerFigures) -> list[str]:
    """Markdown rows: the service against the plain ONNX Runtime server, per model and concurrency."""
    lines = [
        "| model | concurrency | service req/s | service p50 / p99 ms | plain req/s | plain p50 / p99 ms "
        "| service / plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, levels in plain.load.items():
        for concurrency, theirs in levels.items():
            mine = ours.load[model][concurrency]
            lines.append(
                f"| {model} | {concurrency} | {mine.throughput:.1f} | {mine.p50_ms:.1f} / {mine.p99_ms:.1f} "
                f"| {theirs.throughput:.1f} | {theirs.p50_ms:.1f} / {theirs.p99_ms:.1f} "
                f"| {mine.throughput / theirs.throughput:.2f}x |"
            )
    return lines


def markdown(ours: ServerFigures, naive: ServerFigures, plain: ServerFigures, command: str, machine: str) -> str:
    """The figures as the Markdown that docs/PERFORMANCE.md quotes."""
    lines = [f"Command: `{command}`  ", f"Machine: {machine}", ""]
    lines += [
        "| model | concurrency | service req/s | service p50 / p99 ms | naive req/s | naive p50 / p99 ms | speedup |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, levels in ours.load.items():
        for concurrency, mine in levels.items():
            theirs = naive.load[model][concurrency]
            lines.append(
                f"| {model} | {concurrency} | {mine.throughput:.1f} | {mine.p50_ms:.1f} / {mine.p99_ms:.1f} "
                f"| {theirs.throughput:.1f} | {theirs.p50_ms:.1f} / {theirs.p99_ms:.1f} "
                f"| {mine.throughput / theirs.throughput:.1f}x |"
            )
    lines += ["", *plain_table(ours, plain)]
    lines += ["", f"Batch job: ReasonBatch calls of {BATCH_JOB_BATCH} ({BATCH_JOB_CALLERS} in flight) on the service, "
              f"{BATCH_JOB_CONCURRENCY} unary calls in flight on the plain server:", "",
              "| model | service inputs/s | plain inputs/s | service / plain |", "|---|---:|---:|---:|"]
    for model, rate in ours.batch_job_rate.items():
        theirs = plain.batch_job_rate[model]
        lines.append(f"| {model} | {rate:.1f} | {theirs:.1f} | {rate / theirs:.2f}x |")
    lines += ["", "| model | first streamed step p50 / p99 ms (service) | (naive) |", "|---|---:|---:|"]
    for model, times in ours.first_step_ms.items():
        naive_times = naive.first_step_ms[model]
        lines.append(
            f"| {model} | {percentile_ms(times, 50):.1f} / {percentile_ms(times, 99):.1f} | "
            f"{percentile_ms(naive_times, 50):.1f} / {percentile_ms(naive_times, 99):.1f} |"
        )
    lines += [
        "",
        f"Service: start to SERVING {ours.start_s:.2f} s; RSS {ours.rss_idle_mb:.0f} MB idle, "
        f"{ours.rss_peak_mb:.0f} MB peak. Naive baseline: start to listening {naive.start_s:.2f} s; "
        f"RSS {naive.rss_idle_mb:.0f} MB idle, {naive.rss_peak_mb:.0f} MB peak. Plain server: start to listening "
        f"{plain.start_s:.2f} s; RSS {plain.rss_idle_mb:.0f} MB idle, {plain.rss_peak_mb:.0f} MB peak.",
        "",
        f"Bars ({BAR_MODEL}):",
    ]
    lines += [f"- {'PASS' if met else 'FAIL'}: {text}" for text, met in bars(ours, naive)]
    lines += ["", "Bars against the plain server:"]
    lines += [f"- {'PASS' if met else 'FAIL'}: {text}" for text, met in plain_bars(ours, plain)]
    return "\n".join(lines) + "\n"


def describe_machine(models: Path, inputs: ModelInputs) -> str:
    """The machine in one line, with what its CPU makes of the bar model's served step (loadtests.step_cost)
    before any server starts: figures from different machines compare through it."""
    memory_gib = psutil.virtual_memory().total / 2**30
    (session, codec), rng = served_model(models / inputs.model), np.random.default_rng(0)
    single, batched = (step_seconds(session, codec, inputs.samples, batch, 1.0, rng) for batch in (1, 8))
    return (f"{platform.machine()}, {cpu_name()}, {psutil.cpu_count()} CPUs, {memory_gib:.0f} GiB memory; "
            f"{inputs.model}'s served step {single * 1e6:.0f} µs for one request, {batched / 8 * 1e6:.0f} µs per "
            "request in a batch of 8")


def cpu_name() -> str:
    """The CPU's model name as the kernel reports it (Linux), else what the platform module knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 0 whatever the figures (it is a benchmark)."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", choices=BUNDLE_KINDS, default="default", help="see loadtests.local_server")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $TRM_DATA_DIR or ../shared/data)")
    parser.add_argument("--duration", type=positive_number, default=10.0,
                        help="seconds per model and concurrency, also the batch job's and the sequence model's "
                             "(default 10)")
    parser.add_argument("--concurrency", type=positive_int, nargs="+", default=[1, 8, 64],
                        help="callers in flight, each measured (default 1 8 64)")
    parser.add_argument("--streams", type=positive_int, default=30,
                        help="sequential ReasonStream calls per model (default 30)")
    parser.add_argument("--out", type=writable_folder, default=str(REPO_ROOT / "reports" / "bench"),
                        help="folder for bench.md and bench.json, made if missing (default reports/bench)")
    parser.add_argument(
        "--server-args", default="",
        help="extra `trm-service serve` flags, e.g. --server-args=--fp32 (the = form: the value starts with --)",
    )
    args = parser.parse_args(argv)
    settings = BenchSettings(tuple(args.concurrency), args.duration, args.streams)
    command = "python -m loadtests.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    data = data_dir(args.data_dir)
    inputs = load_inputs(data, list(DEFAULT_MODELS))
    with tempfile.TemporaryDirectory(prefix="trm-bench-") as scratch:
        models = models_dir(args.bundles, Path(scratch), data)
        machine = describe_machine(models, inputs[BAR_MODEL])
        server_args = shlex.split(args.server_args)
        service_figures, plain, limits = bench_service_and_plain(models, inputs, settings, server_args)
        naive = bench_naive(models, inputs, limits, settings)
        sequence = None
        if (models / sequence_bench.MODEL / "manifest.json").exists():
            sequence = sequence_bench.bench(models, duration_s=settings.duration_s)
    report = markdown(service_figures, naive, plain, command.strip(), machine)
    if sequence is not None:
        report += "\n" + sequence_bench.markdown(sequence, sequence_bench.TOKENS) + "\n"
    print("\n" + report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(report)
    (out / "bench.json").write_text(
        json.dumps({"command": command.strip(), "machine": machine, "service": service_figures.to_json(),
                    "naive": naive.to_json(), "plain": plain.to_json(), "sequence": sequence}, indent=1) + "\n"
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.bench"))
