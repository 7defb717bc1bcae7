"""`--workers N`: N processes on one port (SO_REUSEPORT), merged metrics, forwarded signals, restarts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
from test_service_support import LONG_MODEL, TEXT_MODEL, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

CHANNELS = 16
REQUEST = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="which worker?", budget=trm_pb2.Budget(max_steps=1))


def _listeners(server: ServerProcess) -> set[int]:
    """Pids of the supervisor's children that listen on the gRPC port."""
    pids = set()
    for child in psutil.Process(server.pid).children():
        try:
            connections = child.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # a worker killed and not yet reaped: its /proc/PID/fd
            continue  # is closed to any user but root
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in connections):
            pids.add(child.pid)
    return pids


def _call_on_fresh_channels(target: str, count: int) -> None:
    """Each call on a connection of its own: gRPC shares a subchannel among channels to one target, and a closed
    channel's connection could still carry the next one's call (all 16 went to one worker once, on a busy machine)."""
    for _ in range(count):
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            assert trm_pb2_grpc.ReasoningServiceStub(channel).Reason(REQUEST, timeout=30).steps == 1


def test_workers_share_the_port_merge_metrics_and_follow_signals(text_bundle: Path):
    with ServerProcess([text_bundle], extra_args=["--workers", "2"]) as server:
        workers = _listeners(server)
        assert len(workers) == 2 and server.pid not in workers
        _call_on_fresh_channels(server.target, CHANNELS)
        wait_for(lambda: server.sample_value("trm_requests_total", method="Reason", code="OK") == CHANNELS)
        serving_pids = {r["pid"] for r in server.log_records() if r.get("event") == "request"}
        assert serving_pids == workers  # the kernel spread the connections over both processes

        reloads = sum(1 for r in server.log_records() if r.get("event") == "models_reloaded")
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: sum(1 for r in server.log_records() if r.get("event") == "models_reloaded") == reloads + 2)

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(_listeners(server)) == 2 and victim not in _listeners(server))
        exited = [r for r in server.log_records() if r.get("event") == "worker_exited"]
        assert [(r["worker_pid"], r["pid"]) for r in exited] == [(victim, server.pid)]
        _call_on_fresh_channels(server.target, 4)
        assert server.stop() == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers - {victim})


def test_sighups_while_a_replacement_worker_starts_leave_it_running(text_bundle: Path):
    """QA: SIGHUPs every 0.1 s after a worker died ended each replacement (SIGHUP's default action, exit -1) before
    it could ignore the signal: the server ran one worker short while they came."""
    with ServerProcess([text_bundle], extra_args=["--workers", "2"]) as server:
        victim = sorted(_listeners(server))[0]
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):
            server.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        wait_for(lambda: len(_listeners(server)) == 2)
        exited = [r["exit_code"] for r in server.log_records() if r.get("event") == "worker_exited"]
        assert exited == [-signal.SIGKILL], server.logs()
        _call_on_fresh_channels(server.target, 4)
        assert server.stop() == 0


def _workers_scratch(worker: int) -> Path:
    """The supervisor's scratch folder (/tmp/trm-workers-*), named in its workers' environment."""
    return Path(psutil.Process(worker).environ()["PROMETHEUS_MULTIPROC_DIR"]).parent


def test_a_replacement_worker_serves_after_a_tmp_cleaner_removed_the_ready_folder(text_bundle: Path):
    """QA: each replacement crashed in write_ready_file (its folder gone) and was restarted forever."""
    with ServerProcess([text_bundle], extra_args=["--workers", "2"]) as server:
        victim, survivor = sorted(_listeners(server))
        ready_folder = _workers_scratch(survivor) / "ready"
        shutil.rmtree(ready_folder)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(list(ready_folder.glob("worker-*.json"))) == 1)
        assert len(_listeners(server)) == 2
        _call_on_fresh_channels(server.target, 4)
        exited = [r["exit_code"] for r in server.log_records() if r.get("event") == "worker_exited"]
        assert exited == [-signal.SIGKILL], server.logs()
        assert server.stop() == 0


def _failed_starts(server: ServerProcess) -> int:
    return sum(1 for r in server.log_records() if r.get("event") == "worker_exited" and r["exit_code"] == 2)


def test_a_worker_that_cannot_start_again_backs_off_while_another_serves_and_ends_the_supervisor_alone(
    text_bundle: Path, tmp_path: Path
):
    """QA: a replacement that exits 2 (its TLS files moved away) was restarted 27 times in 20 s, forever; then, with
    a limit, a half-renewed certificate on disk at a worker's crash ended the whole port, its healthy sibling too."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1"],
                   cwd=tmp_path, check=True, capture_output=True)
    server = ServerProcess([text_bundle], extra_args=["--workers", "2", "--tls-cert", str(tmp_path / "cert.pem"),
                                                      "--tls-key", str(tmp_path / "key.pem")])
    with server:
        first, second = sorted(_listeners(server))
        (tmp_path / "cert.pem").rename(tmp_path / "moved.pem")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: _failed_starts(server) >= 5)  # past the limit of 4 while the sibling serves: still up
        assert second in _listeners(server)
        os.kill(second, signal.SIGKILL)  # now no worker serves: the next failed starts end the supervisor
        assert server.wait(60) == 2
    records = server.log_records()
    assert any(r.get("event") == "worker_cannot_start" for r in records)
    delays = [r["restart_in_s"] for r in records if r.get("event") == "worker_exited" and r["exit_code"] == 2]
    assert delays[:3] == [0.5, 1.0, 2.0] and delays[-1] is None, delays  # backing off, and the last one ends it
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in {r.get("pid") for r in records} - {None})


def _start_fails_with_2(server: ServerProcess, told: str) -> None:
    """`server` ends its start-up with status 2, having logged `told` in a cannot_start line, and leaves no
    worker behind."""
    with pytest.raises(RuntimeError, match="exited with 2 before serving"):
        server.start()
    errors = [r["error"] for r in server.log_records() if r.get("event") == "cannot_start"]
    assert errors and told in errors[0], server.logs()
    assert "Traceback" not in server.logs()


def test_a_metrics_port_in_use_ends_the_start_with_2_and_starts_no_worker(text_bundle: Path):
    """It used to be found once the workers served: the supervisor then hung, serving gRPC and deaf to SIGTERM."""
    with ServerProcess([text_bundle]) as first:
        second = ServerProcess([text_bundle], metrics_port=first.metrics_port, extra_args=["--workers", "2"])
        _start_fails_with_2(second, f"cannot serve metrics on 127.0.0.1:{first.metrics_port}")
        assert not any(r.get("event") == "serving" for r in second.log_records())


def test_a_port_another_server_holds_is_refused_not_shared(text_bundle: Path):
    """SO_REUSEPORT alone let a second --workers server of the same user join the port and take half its calls."""
    for first_args in ([], ["--workers", "2"]):
        with ServerProcess([text_bundle], extra_args=first_args) as first:
            second = ServerProcess([text_bundle], port=first.port, extra_args=["--workers", "2"])
            _start_fails_with_2(second, f"cannot listen on 127.0.0.1:{first.port}: the port is in use")


def test_a_port_reserved_by_a_supervisor_whose_workers_load_is_refused_not_shared(text_bundle: Path):
    """The probe binds with SO_REUSEADDR (for the TIME_WAIT connections of a restart): were the reservation to have
    it too, Linux would let a second supervisor's probe share the port while the first's workers load."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    first = ServerProcess([text_bundle], port=port, extra_args=["--workers", "2"])
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRM_")}
    process = subprocess.Popen(first.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, env=env)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: len(psutil.Process(process.pid).children()) >= 2)
        children = psutil.Process(process.pid).children()
        for child in children:  # loading, held there: only the reservation holds the port
            child.suspend()
        assert not any(c.status == psutil.CONN_LISTEN for child in children for c in child.net_connections("tcp"))
        second = ServerProcess([text_bundle], port=port, extra_args=["--workers", "2"])
        _start_fails_with_2(second, f"cannot listen on 127.0.0.1:{port}: the port is in use")
    finally:
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.kill()
        process.wait()


def test_a_restart_on_the_same_port_right_after_a_drain_with_calls_in_flight_serves(long_bundle: Path):
    """QA: the port probe bound without SO_REUSEADDR, so the server-side TIME_WAIT connections of the calls in
    flight at the stop refused the restart for about 60 s (exit 2, port in use), where one worker (gRPC's own bind)
    restarted at once."""
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="long thought",
                                    budget=trm_pb2.Budget(max_steps=20_000, halt_threshold=1.0))
    args = ["--workers", "2", "--drain-delay", "0", "--grace-period", "1"]
    with ServerProcess([long_bundle], extra_args=args) as first, grpc.insecure_channel(first.target) as channel:
        streams = [trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(request, timeout=60) for _ in range(2)]
        for stream in streams:
            next(stream)
        assert first.stop() == 0
    with ServerProcess([long_bundle], port=first.port, extra_args=args) as second:
        assert second.stop() == 0


def test_a_workers_start_up_error_is_told_as_without_workers(text_bundle: Path, tmp_path: Path):
    """A TLS file that is no PEM: the worker's message and status 2 (a traceback and status 1 before)."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("not a certificate\n")
    server = ServerProcess([text_bundle], extra_args=["--workers", "2", "--tls-cert", str(tmp_path / "cert.pem"),
                                                      "--tls-key", str(tmp_path / "key.pem")])
    _start_fails_with_2(server, f"--tls-cert {tmp_path / 'cert.pem'} and --tls-key {tmp_path / 'key.pem'} must be")
    failed = [r for r in server.log_records() if r.get("event") == "worker_failed_to_start"]
    assert failed[0]["exit_code"] == 2 and failed[0]["worker_pid"] != server.pid


def test_sigterm_while_the_workers_load_stops_cleanly(text_bundle: Path):
    """Not 'workers_not_ready' with status 1, as if they had timed out."""
    server = ServerProcess([text_bundle], extra_args=["--workers", "2"])
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRM_")}
    process = subprocess.Popen(server.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: len(psutil.Process(process.pid).children()) >= 2)  # the supervisor's handlers are set
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert b"workers_not_ready" not in output and b"Traceback" not in output


def test_a_second_sigterm_reaches_the_workers_and_cuts_their_drain_short(long_bundle: Path):
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="long thought",
                                    budget=trm_pb2.Budget(max_steps=20_000, halt_threshold=1.0))
    server = ServerProcess([long_bundle], extra_args=["--workers", "2", "--grace-period", "120", "--drain-delay", "30"])
    with server, grpc.insecure_channel(server.target) as channel:
        streams = [trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(request, timeout=300) for _ in range(2)]
        for stream in streams:
            next(stream)
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: sum(r.get("event") == "draining" for r in server.log_records()) == 2)
        server.send_signal(signal.SIGTERM)
        finals = [list(stream)[-1] for stream in streams]
        assert server.wait(30) == 0
    assert all(f.halt_reason == trm_pb2.HALT_REASON_SHUTDOWN and f.step < 20_000 for f in finals)


def test_one_signal_to_the_process_group_drains_the_workers_to_the_end(long_bundle: Path):
    """A terminal's Ctrl-C, `kill -- -PGID` or systemd's stop signal every process of the group: each worker got
    the signal and then the supervisor's forwarded one, and the second cut its drain short (SHUTDOWN in 0.1 s)."""
    budget = trm_pb2.Budget(max_steps=20_000, halt_threshold=1.0, time_budget_ms=3_000)
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="long thought", budget=budget)
    server = ServerProcess([long_bundle], extra_args=["--workers", "2", "--grace-period", "60"],
                           own_process_group=True)
    with server, grpc.insecure_channel(server.target) as channel:
        streams = [trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(request, timeout=120) for _ in range(2)]
        for stream in streams:
            next(stream)
        server.signal_process_group(signal.SIGINT)
        finals = [list(stream)[-1] for stream in streams]
        assert server.wait(60) == 0
    events = [record.get("event") for record in server.log_records()]
    assert [f.halt_reason for f in finals] == [trm_pb2.HALT_REASON_BUDGET] * 2
    assert events.count("draining") == 2 and "drain_cut_short" not in events


def test_sigterm_to_the_supervisor_and_every_worker_at_once_drains_to_the_end(long_bundle: Path):
    """systemd's default stop (KillMode=control-group) signals every process of the cgroup: each worker got that
    SIGTERM and the forwarded one, and the second cut its drain short (29 of 32 streams SHUTDOWN after 0.7 s)."""
    budget = trm_pb2.Budget(max_steps=20_000, halt_threshold=1.0, time_budget_ms=3_000)
    request = trm_pb2.ReasonRequest(model=LONG_MODEL, text="long thought", budget=budget)
    with ServerProcess([long_bundle], extra_args=["--workers", "2", "--grace-period", "60"]) as server:
        channels = [grpc.insecure_channel(server.target) for _ in range(4)]
        streams = [trm_pb2_grpc.ReasoningServiceStub(c).ReasonStream(request, timeout=120) for c in channels]
        for stream in streams:
            next(stream)
        workers = _listeners(server)
        server.send_signal(signal.SIGTERM)
        for worker in workers:
            os.kill(worker, signal.SIGTERM)
        finals = [list(stream)[-1] for stream in streams]
        assert server.wait(60) == 0
        for channel in channels:
            channel.close()
    events = [record.get("event") for record in server.log_records()]
    assert [f.halt_reason for f in finals] == [trm_pb2.HALT_REASON_BUDGET] * 4
    assert events.count("draining") == 2 and "drain_cut_short" not in events


def test_workers_drain_and_end_when_their_supervisor_is_killed(text_bundle: Path):
    server = ServerProcess([text_bundle], extra_args=["--workers", "2"])
    with server:
        workers = psutil.Process(server.pid).children()
        server.kill()
        gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not alive and len(gone) >= 2  # the workers (and multiprocessing's resource tracker)


def test_hung_workers_share_one_stop_budget_and_their_kill_exits_1(text_bundle: Path):
    """QA: each SIGSTOPped worker was waited for with the whole budget in turn (3 workers: 33 s for 11), and the
    supervisor exited 0 after killing them."""
    args = ["--workers", "2", "--grace-period", "1", "--drain-delay", "0"]
    with ServerProcess([text_bundle], extra_args=args) as server:
        workers = _listeners(server)
        for worker in workers:
            os.kill(worker, signal.SIGSTOP)
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 1
        elapsed = time.monotonic() - started
    assert elapsed < 16, elapsed  # one budget: drain delay + grace period + 10 s
    killed = {r["worker_pid"] for r in server.log_records() if r.get("event") == "worker_killed"}
    assert killed == workers


def test_workers_without_a_writable_temporary_folder_cannot_start_and_say_why(text_bundle: Path):
    """A read-only container without a tmpfs on /tmp: a traceback before, and status 1."""
    server = ServerProcess([text_bundle], extra_args=["--workers", "2"])
    code = ("import sys, tempfile; tempfile.tempdir = '/nonexistent/tmp'; from trm_service.cli import main; "
            f"sys.exit(main({server.command[3:]!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "--workers 2 needs a writable folder for the workers' metrics" in done.stdout
