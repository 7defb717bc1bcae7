"""`--workers N`: N server processes on one port (SO_REUSEPORT), supervised, with merged metrics.

The supervisor serves /metrics and reserves the port (a bound, non-listening socket with SO_REUSEPORT, after a
probe without it that any other process on the port refuses; port 0 works too) before any worker starts, spawns
N workers that each run the full server on that port with SO_REUSEPORT (the
kernel spreads connections across them); every worker writes its metric samples to a shared
PROMETHEUS_MULTIPROC_DIR and the supervisor's /metrics sums them. A worker that cannot start ends the start-up
with its exit status (2 for a bad flag or file, as without --workers). Signals are forwarded
(SIGTERM/SIGINT drain every worker, SIGHUP reloads every worker), each worker in a process group of its own so
that a signal to the supervisor's group reaches it once; a worker takes a repeated SIGTERM/SIGINT (systemd's stop
signals every process of the cgroup, and the supervisor forwards its own) as the same drain, and the supervisor's
second SIGTERM/SIGINT cuts the workers' drain short with SIGUSR1. Workers drain when the supervisor dies.

Restarts: a worker that dies after it served is restarted at once. One that dies before it served (a failed start)
is restarted after a backoff of its slot, 0.5 s doubling with each failed start in a row, at most 30 s. While another
worker serves, a slot is retried so for as long as it fails (its TLS files half renewed, say: the port keeps serving);
where none does, the 4th failed start in a row of one slot stops every worker and ends the supervisor with status 2
if that worker's was 2, else 1. The stop
gives all workers together drain delay + grace period + 10 s; one still running then is killed, and the status is 1.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client import multiprocess

from trm_service.config import ConfigError, ServeConfig
from trm_service.observability.logging import configure_logging
from trm_service.observability.metrics import MULTIPROC_ENV, multiprocess_registry, serve_metrics
from trm_service.server import serve_process, write_ready_file

_log = structlog.get_logger("trm_service.workers")
_READY_TIMEOUT_S = 300.0
_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_FIRST_BACKOFF_S = 0.5
_LONGEST_BACKOFF_S = 30.0
_FAILED_STARTS_LIMIT = 4
_SIGNALS_UNTIL_HANDLED = {signal.SIGHUP, signal.SIGUSR1}  # whose default action would end a worker still starting


def run_workers(config: ServeConfig) -> int:
    """Run `config.workers` server processes until SIGTERM/SIGINT; return the exit status."""
    try:
        scratch_folder = tempfile.TemporaryDirectory(prefix="trm-workers-")
    except OSError as exc:  # FileNotFoundError: "No usable temporary directory found"
        raise ConfigError(f"--workers {config.workers} needs a writable folder for the workers' metrics and "
                          f"start-up files (TMPDIR, else /tmp; a read-only container: mount a tmpfs on /tmp): "
                          f"{exc}") from exc
    with scratch_folder as scratch:
        metrics_dir, ready_dir = Path(scratch, "metrics"), Path(scratch, "ready")
        metrics_dir.mkdir()
        ready_dir.mkdir()
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
        with _reserve_port(config.host, config.port) as reservation:
            port = reservation.getsockname()[1]
            return _Supervisor(config, port, metrics_dir, ready_dir).run()


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound socket with SO_REUSEPORT that holds the port for the workers. A probe without SO_REUSEPORT binds
    first: any other process on the port refuses it, where SO_REUSEPORT alone would let a second server of the
    same user share the port and take half of its connections. The probe has SO_REUSEADDR, as gRPC's own bind,
    so that the TIME_WAIT connections a stop left do not refuse a restart; the reservation has not, so that a
    second supervisor's probe is refused while the first's workers load (Linux lets two SO_REUSEADDR sockets share
    a port that none listens on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = host.strip("[]")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address, port))
            port = probe.getsockname()[1]
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: the port is in use or the host is not local "
                          f"({exc.strerror})") from exc
    return sock


def _worker_main(config: ServeConfig, supervisor: int) -> None:
    """Entry point of one worker process. A SIGHUP or SIGUSR1 the supervisor sends before run_server takes the
    signal over is ignored (by default it would end the process): the process starts with them blocked (`_start`),
    and unblocks them once it ignores them; a SIGHUP during loading makes it reload once serving.

    The worker leaves the supervisor's process group: a signal to the group (Ctrl-C in a terminal, `kill -- -PGID`,
    systemd's stop) reaches it once, forwarded, where it came twice (the group's and the forwarded one) and the
    second cut the drain short. Out of the group, it drains by itself when the supervisor dies (`_drain_with`)."""
    os.setpgid(0, 0)
    _drain_with(supervisor)
    for signum in _SIGNALS_UNTIL_HANDLED:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS_UNTIL_HANDLED)
    configure_logging(config.log_level)
    sys.exit(serve_process(config))


def _drain_with(supervisor: int) -> None:
    """SIGTERM to this process (a drain) when the `supervisor` process ends, however it ends (Linux's
    PR_SET_PDEATHSIG); at once when it ended before this was set."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


class _Supervisor:
    def __init__(self, config: ServeConfig, port: int, metrics_dir: Path, ready_dir: Path) -> None:
        self._config = config
        self._port = port
        self._metrics_dir = metrics_dir
        self._ready_dir = ready_dir
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}  # each slot's process, running or dead
        self._served: set[int] = set()  # the slots whose process got ready
        self._failed_starts: dict[int, int] = {}  # per slot, in a row
        self._restart_at: dict[int, float] = {}  # the slots waiting for their restart: when (time.monotonic())
        self._stopping = False
        self._hangup = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hangup)
        metrics_port = None
        if self._config.metrics_port is not None:  # before any worker starts: a port in use ends the start here
            metrics_port = serve_metrics(
                self._config.metrics_address, self._config.metrics_port, multiprocess_registry(self._metrics_dir)
            )
        try:
            status = self._start_and_supervise(metrics_port)
        finally:
            stop_status = self._stop_all()
            if self._config.ready_file is not None:
                self._config.ready_file.unlink(missing_ok=True)
        return status or stop_status

    def _start_and_supervise(self, metrics_port: int | None) -> int:
        for index in range(self._config.workers):
            self._start(index)
        status = self._wait_ready()
        if status is not None:
            return status
        self._served = set(self._workers)
        _log.info("workers_serving", workers=self._config.workers, port=self._port, metrics_port=metrics_port)
        if self._config.ready_file is not None:
            write_ready_file(self._config.ready_file, port=self._port, metrics_port=metrics_port)
        return self._supervise()

    def _start(self, index: int) -> None:
        # A tmp cleaner may have removed them: the worker would fail writing its ready file.
        self._metrics_dir.mkdir(parents=True, exist_ok=True)
        self._ready_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self._ready_dir / f"worker-{index}.json"
        ready_file.unlink(missing_ok=True)
        worker_config = dataclasses.replace(
            self._config, port=self._port, workers=1, metrics_port=None, ready_file=ready_file,
            reuse_port=True, worker_index=index,
        )
        process = self._context.Process(
            target=_worker_main, args=(worker_config, os.getpid()), name=f"trm-worker-{index}"
        )
        # The new interpreter inherits the blocked signals: a SIGHUP or SIGUSR1 sent while it imports would end it
        # (their default action) before `_worker_main` can ignore them. The supervisor gets its own when unblocked.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS_UNTIL_HANDLED)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        self._workers[index] = process

    def _wait_ready(self) -> int | None:
        """None once every worker serves, else the exit status: 0 when stopped while they load, a worker's 2
        when it could not start (it logged why), 1 when one died otherwise or they did not serve in time."""
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._stopping:
                return 0
            if all((self._ready_dir / f"worker-{i}.json").exists() for i in self._workers):
                return None
            dead = [p for p in self._workers.values() if not p.is_alive()]
            if dead:
                _log.error("worker_failed_to_start", worker_pid=dead[0].pid, exit_code=dead[0].exitcode)
                return 2 if dead[0].exitcode == 2 else 1
            time.sleep(_POLL_S)
        _log.error("workers_not_ready", timeout_s=_READY_TIMEOUT_S)
        return 1

    def _supervise(self) -> int:
        """Restart the workers that die (see the module docstring) until the stop: 0, or the status of a slot
        that failed to start too many times in a row."""
        while not self._stopping:
            if self._hangup:
                self._hangup = False
                self._signal_all(signal.SIGHUP)
            self._start_due_restarts()
            running = [p.sentinel for i, p in self._workers.items() if i not in self._restart_at]
            multiprocessing.connection.wait(running, timeout=_POLL_S)
            self._note_served()
            for index, process in list(self._workers.items()):
                if index not in self._restart_at and not process.is_alive() and not self._stopping:
                    status = self._schedule_restart(index, process)
                    if status is not None:
                        return status
        return 0

    def _start_due_restarts(self) -> None:
        now = time.monotonic()
        for index in [i for i, at in self._restart_at.items() if at <= now]:
            del self._restart_at[index]
            self._start(index)

    def _note_served(self) -> None:
        """Note the slots whose process wrote its ready file (`_start` removes the previous process's)."""
        for index in self._workers:
            if index not in self._served and (self._ready_dir / f"worker-{index}.json").exists():
                self._served.add(index)
                self._failed_starts[index] = 0

    def _schedule_restart(self, index: int, process: BaseProcess) -> int | None:
        """Schedule the restart of the dead worker of slot `index`; None, or the supervisor's exit status when
        the slot failed to start _FAILED_STARTS_LIMIT times in a row and no other worker serves."""
        multiprocess.mark_process_dead(process.pid, str(self._metrics_dir))
        if index in self._served:
            self._served.discard(index)
            failed_starts, delay = 0, 0.0
        else:
            failed_starts = self._failed_starts.get(index, 0) + 1
            delay = min(_FIRST_BACKOFF_S * 2 ** (failed_starts - 1), _LONGEST_BACKOFF_S)
        self._failed_starts[index] = failed_starts
        others_serve = any(i in self._served and p.is_alive() for i, p in self._workers.items() if i != index)
        restarting = others_serve or failed_starts < _FAILED_STARTS_LIMIT
        _log.error("worker_exited", worker_pid=process.pid, exit_code=process.exitcode, restarting=restarting,
                   restart_in_s=delay if restarting else None, failed_starts=failed_starts)
        if not restarting:
            _log.error("worker_cannot_start", worker_index=index, failed_starts=failed_starts,
                       exit_code=process.exitcode)
            return 2 if process.exitcode == 2 else 1
        self._restart_at[index] = time.monotonic() + delay
        return None

    def _stop_all(self) -> int:
        """Drain every worker within one budget for all (drain delay + grace period + 10 s), then kill those still
        running: 1 when one was killed, else 0."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self._config.drain_delay + self._config.grace_period + 10.0
        status = 0
        for process in self._workers.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _log.error("worker_killed", worker_pid=process.pid, reason="still running at the end of the stop")
                process.kill()
                process.join()
                status = 1
        return status

    def _signal_all(self, signum: int) -> None:
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:  # a second signal: the workers cut their drain short
            self._signal_all(signal.SIGUSR1)
        self._stopping = True

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        self._hangup = True
