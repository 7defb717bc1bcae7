"""Start a local server, run one Locust scenario headless against it on 127.0.0.1, write the CSV and
HTML reports, and print a summary line (requests/s, p50, p99, failures).

    python -m loadtests.run --scenario steady            # smoke | steady | overload | soak
    python -m loadtests.run --scenario smoke --bundles random --out /tmp/lt

Exit status 0 when the scenario's expectations hold: no failed call (overload: only
RESOURCE_EXHAUSTED, and some of it) and a server that is still SERVING at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import psutil

from loadtests.inputs import data_dir
from loadtests.interrupts import run_stoppable
from loadtests.local_server import BUNDLE_KINDS, models_dir, service, tree_rss_bytes, wait_until_serving
from loadtests.locust_report import LocustResult, read_result, summary_line
from loadtests.scenarios import CAPACITY_PROBE, SCENARIOS, Scenario
from trainer.arguments import positive_int, writable_folder
from trm_service.testing import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
SHED = "RESOURCE_EXHAUSTED"
RSS_SAMPLE_S = 30.0
STOP_TIMEOUT_S = 30


@dataclass(frozen=True)
class RunOutcome:
    """One Locust run: its parsed reports and the server's RSS (MB) sampled during it."""

    result: LocustResult
    rss_mb: list[float]

    @property
    def peak_rss_mb(self) -> float:
        """The largest RSS sample (NaN samples, taken after an exit, ignored)."""
        return max((v for v in self.rss_mb if not math.isnan(v)), default=math.nan)


def rss_mb(pid: int) -> float:
    """The server's resident memory in MB, NaN once it has exited (a crash is reported, not raised)."""
    try:
        return round(tree_rss_bytes(pid) / 2**20, 1)
    except psutil.NoSuchProcess:
        return float("nan")


def locust_command(target: str, scenario: Scenario, prefix: Path, data: Path) -> list[str]:
    """The headless Locust command line of `scenario`, writing <prefix>.html (Locust's own report) and
    <prefix>.calls.json (every call, written as Locust quits: the figures reported)."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", target,
        "--users", str(scenario.users), "--spawn-rate", str(max(1, scenario.users // 4)),
        "--run-time", f"{scenario.duration_s}s", "--stop-timeout", str(STOP_TIMEOUT_S),
        "--html", f"{prefix}.html", "--only-summary", "--exit-code-on-error", "0",
        "--loglevel", "WARNING", "--data-dir", str(data), "--user-rate", str(scenario.user_rate),
        "--calls-json", f"{prefix}.calls.json",
    ]  # fmt: skip


def run_locust(target: str, server_pid: int, scenario: Scenario, out_dir: Path, data: Path) -> RunOutcome:
    """Run `scenario` to its end, sampling the server's RSS; Locust's own output goes to <name>.log."""
    prefix = out_dir / scenario.name
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    rss = [rss_mb(server_pid)]
    with open(f"{prefix}.log", "wb") as log:
        process = subprocess.Popen(locust_command(target, scenario, prefix, data), stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + scenario.duration_s + 2 * STOP_TIMEOUT_S + RSS_SAMPLE_S
        try:
            while True:
                try:
                    process.wait(timeout=RSS_SAMPLE_S)
                    break
                except subprocess.TimeoutExpired:
                    rss.append(rss_mb(server_pid))
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"locust ran past its run time and was stopped; see {prefix}.log") from None
        finally:  # past its run time, or this run interrupted (Ctrl-C, SIGTERM): Locust stops with it
            if process.poll() is None:
                process.kill()
                process.wait()
    rss.append(rss_mb(server_pid))
    if process.returncode != 0:
        raise RuntimeError(f"locust exited with {process.returncode}; see {prefix}.log")
    return RunOutcome(read_result(prefix), rss)


def problems(scenario: Scenario, result: LocustResult, alive: bool) -> list[str]:
    """Why the run does not meet the scenario's expectations (empty when it does)."""
    found = [] if alive else ["the server is no longer SERVING"]
    if result.calls["requests"] == 0:
        found.append("no call completed")
    unexpected = {k: v for k, v in result.failures_by_error.items() if not (scenario.shed_expected and k == SHED)}
    if unexpected:
        found.append(f"failed calls: {unexpected}")
    if scenario.shed_expected and not result.failures_by_error.get(SHED):
        found.append("overload, but nothing was shed with RESOURCE_EXHAUSTED")
    return found


def server_alive(server: ServerProcess) -> bool:
    """True when the server process still runs and its health service answers SERVING."""
    try:
        wait_until_serving(server.target, timeout_s=5.0)
    except TimeoutError:
        return False
    return server.returncode is None


def calls_cut_off(server: ServerProcess) -> int:
    """Calls the server saw their client end unfinished: cancelled, or gone before its request arrived. Locust,
    stopping, abandons the calls in flight and counts none of them."""
    return round(server.sample_value("trm_requests_total", code="CANCELLED")
                 + server.sample_value("trm_grpc_refused_total", reason="request_not_received"))


def run_scenario(scenario: Scenario, models: Path, data: Path, out_dir: Path) -> dict:
    """Start the server, run the scenario (overload: after a capacity probe), print and return the summary."""
    summary: dict = {"scenario": scenario.name, "description": scenario.description}
    with service(models, scenario.server_args) as server:
        wait_until_serving(server.target)
        if scenario.shed_expected:
            probe = run_locust(server.target, server.pid, CAPACITY_PROBE, out_dir, data).result
            print(summary_line("capacity probe", probe))
            summary |= {"capacity_rps": probe.calls["rps"]}
        cut_off_before = calls_cut_off(server)
        outcome = run_locust(server.target, server.pid, scenario, out_dir, data)
        alive = server_alive(server)
        cut_off = calls_cut_off(server) - cut_off_before
    result = outcome.result
    print(summary_line(scenario.name, result))
    accepted = result.accepted_of("Reason")
    shed = result.failures_by_error.get(SHED, 0)
    print(
        f"{scenario.name}: accepted Reason p50 {accepted['p50_ms']} ms, p99 {accepted['p99_ms']} ms; "
        f"shed {shed}; server RSS {outcome.rss_mb[0]} MB at start, {outcome.rss_mb[-1]} MB at end "
        f"(max {outcome.peak_rss_mb} MB); server {'still SERVING' if alive else 'DOWN'}; "
        f"{cut_off} calls cut off as Locust stopped (the server's count; in no figure above)"
    )
    found = problems(scenario, result, alive)
    summary |= {
        "users": scenario.users, "user_rate": scenario.user_rate, "duration_s": scenario.duration_s,
        "calls": result.calls, "entries": [asdict(e) for e in result.entries],
        "failures": dict(result.failures_by_error), "accepted": result.accepted, "rss_mb": outcome.rss_mb,
        "cut_off_at_stop": cut_off, "server_alive": alive, "problems": found,
    }  # fmt: skip
    (out_dir / f"{scenario.name}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for problem in found:
        print(f"{scenario.name}: FAILED: {problem}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="steady")
    parser.add_argument("--bundles", choices=BUNDLE_KINDS, default="default", help="see loadtests.local_server")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default $TRM_DATA_DIR or ../shared/data)")
    parser.add_argument("--out", type=writable_folder, default=str(REPO_ROOT / "reports" / "loadtest"),
                        help="report folder")
    parser.add_argument("--duration", type=positive_int, default=None,
                        help="override the scenario's run time, seconds (overload's capacity probe, "
                        f"{CAPACITY_PROBE.duration_s} s, runs before it)")
    parser.add_argument("--users", type=positive_int, default=None, help="override the scenario's number of users")
    parser.add_argument("--user-rate", type=float, default=None, help="override calls/s per user (0: back to back)")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    overrides = {"duration_s": args.duration, "users": args.users, "user_rate": args.user_rate}
    scenario = replace(scenario, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        data = data_dir(args.data_dir)
    except FileNotFoundError as error:
        parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="trm-loadtest-") as scratch:
        models = models_dir(args.bundles, Path(scratch), data)
        summary = run_scenario(scenario, models, data, out)
    print(f"reports in {out} ({time.monotonic() - started:.0f} s)")
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(run_stoppable(main, "python -m loadtests.run"))
