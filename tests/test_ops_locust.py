"""A short real Locust run (loadtests.run --scenario smoke: 8 users, 20 s) against a real server on
127.0.0.1 serving random bundles, with real test-split inputs: no call may fail."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
from test_service_support import LONG_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.entry_names import STREAM_COMPLETE, STREAM_FIRST_STEP, UNARY
from loadtests.inputs import DEFAULT_MODELS
from loadtests.run import calls_cut_off
from trm_service.testing import ServerProcess

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_smoke_scenario_runs_without_failures(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "loadtests.run", "--scenario", "smoke", "--bundles", "random", "--duration", "15",
               "--out"]
    run = subprocess.run(
        [*command, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke: " in run.stdout and "failures 0 (0.00%)" in run.stdout
    assert (tmp_path / "smoke.html").stat().st_size > 0
    assert not list(tmp_path.glob("*.csv"))  # QA: Locust's stats CSV, which missed the last calls, was left there

    summary = json.loads((tmp_path / "smoke.summary.json").read_text())
    assert summary["server_alive"] and summary["problems"] == []
    assert f"{summary['cut_off_at_stop']} calls cut off as Locust stopped" in run.stdout
    assert summary["calls"]["requests"] > 0 and summary["calls"]["failures"] == 0
    assert summary["description"].startswith("smoke: 8 users at 4 calls/s each (32 calls/s offered) for 15 s; ")
    rows = {(entry["type"], entry["name"]): entry for entry in summary["entries"]}
    for model in DEFAULT_MODELS:
        for request_type in (UNARY, STREAM_FIRST_STEP, STREAM_COMPLETE):
            row = rows[(request_type, model)]
            assert row["requests"] > 0 and row["failures"] == 0, (request_type, model)
    # QA: the entries came from Locust's stats CSV, written on a timer, which missed the last calls
    assert sum(entry["requests"] for entry in summary["entries"] if entry["type"] in (UNARY, STREAM_COMPLETE)) == (
        summary["calls"]["requests"])


def test_without_the_data_folder_the_run_says_so_in_one_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "loadtests.run", "--data-dir", str(tmp_path / "none")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"error: data folder {tmp_path / 'none'} does not exist (set --data-dir or $TRM_DATA_DIR)" in run.stderr


def test_the_locustfile_refuses_a_remote_host_or_no_run_time(tmp_path: Path) -> None:
    locust = [sys.executable, "-m", "locust", "-f", "loadtests/locustfile.py", "--headless", "-u", "1"]
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    for arguments in (["--host", "10.0.0.1:50051", "-t", "5s"], ["--host", "127.0.0.1:50051"]):
        run = subprocess.run([*locust, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                             check=False, env=env)
        assert run.returncode != 0
        assert "load tests target 127.0.0.1 only and stop by themselves" in run.stderr


def test_a_run_time_of_zero_is_refused() -> None:
    run = subprocess.run([sys.executable, "-m", "loadtests.run", "--duration", "0"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2 and "argument --duration: must be a whole number of at least 1" in run.stderr


def test_sigterm_stops_the_run_with_its_server_and_locust(tmp_path: Path) -> None:
    """A CI job cancelled, or `kill PID`: the run stops as on Ctrl-C, and the server and Locust it started go
    with it (they kept running, and the next benchmark measured against them)."""
    command = [sys.executable, "-m", "loadtests.run", "--scenario", "smoke", "--bundles", "random",
               "--out", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        parent = psutil.Process(process.pid)
        deadline = time.monotonic() + 120
        while not any("locust" in " ".join(child.cmdline()) for child in _children(parent)):
            assert time.monotonic() < deadline and process.poll() is None, "Locust never started"
            time.sleep(0.2)
        started = _children(parent)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert err.strip().endswith("python -m loadtests.run: interrupted; the servers it started are stopped")
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []


def _children(parent: psutil.Process) -> list[psutil.Process]:
    try:
        return parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_the_bench_refuses_bad_settings_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    for arguments, told in ((["--duration", "0"], "argument --duration: must be a positive number, got '0'"),
                            (["--concurrency", "8", "0"], "argument --concurrency: must be a whole number of at"),
                            (["--out", str(tmp_path / "afile" / "bench")], f"{tmp_path / 'afile'} is a file")):
        run = subprocess.run([sys.executable, "-m", "loadtests.bench", *arguments], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 2 and told in run.stderr, run.stderr


def test_calls_cut_off_by_their_client_are_counted_from_the_servers_metrics(long_bundle: Path) -> None:
    """QA: calls Locust abandoned as it stopped were in no figure of the report ("failures 0"), while the
    server counted them (1 to 15 a run)."""
    with ServerProcess([long_bundle]) as server, grpc.insecure_channel(server.target) as channel:
        before = calls_cut_off(server)
        stream = trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(trm_pb2.ReasonRequest(
            model=LONG_MODEL, text="hello", budget=trm_pb2.Budget(max_steps=1500, halt_threshold=1.0)), timeout=60)
        next(stream)
        stream.cancel()
        wait_for(lambda: calls_cut_off(server) == before + 1)
