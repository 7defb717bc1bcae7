"""Thread placement (trm_service/cpu_affinity.py): the event loop and gRPC's threads on one CPU, gRPC's
yielding to the loop (SCHED_BATCH), the model and loading threads on every CPU, each worker's loop on its own
CPU, and all of it off on request; compute threads no more than the cgroup's CPU quota."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from test_service_support import TEXT_MODEL
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service import cpu_affinity
from trm_service.cpu_affinity import cgroup_cpu_quota, choose_cpu, compute_cpu_count, yielding_threads
from trm_service.testing import ServerProcess

USABLE = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
needs_two_cpus = pytest.mark.skipif(len(USABLE) < 2, reason="thread placement needs at least 2 usable CPUs")
needs_batch_policy = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
CONCURRENT_CALLS = 8  # enough that some steps run on the model's thread, not the idle fast path's loop


def _thread_cpus(pid: int) -> dict[int, frozenset[int]]:
    """The CPUs each thread of `pid` may run on, by thread id (from /proc)."""
    cpus = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            cpus[int(tid)] = frozenset(os.sched_getaffinity(int(tid)))
        except OSError:  # the thread ended
            continue
    return cpus


def _thread_policies(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread of `pid`: its name (from /proc, as the thread's creator set it) and scheduling policy."""
    policies = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            policies[int(tid)] = (name, os.sched_getscheduler(int(tid)))
        except OSError:  # the thread ended
            continue
    return policies


def _serve_some(server: ServerProcess) -> None:
    request = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="where do threads run", budget=trm_pb2.Budget(max_steps=2))
    with grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        calls = [stub.Reason.future(request, timeout=30) for _ in range(CONCURRENT_CALLS)]
        assert all(call.result().steps == 2 for call in calls)


def _logged_cpus(server: ServerProcess) -> dict[int, int | None]:
    return {r["pid"]: r["cpu"] for r in server.log_records() if r.get("event") == "event_loop_cpu"}


@needs_two_cpus
def test_the_event_loop_and_grpc_share_one_cpu_and_compute_threads_use_all(text_bundle: Path) -> None:
    with ServerProcess([text_bundle]) as server:
        _serve_some(server)
        cpu = _logged_cpus(server)[server.pid]
        threads = _thread_cpus(server.pid)
        assert threads[server.pid] == {cpu}  # the event loop's thread (the main thread)
        pinned = [tid for tid, cpus in threads.items() if cpus == {cpu}]
        free = [tid for tid, cpus in threads.items() if cpus == USABLE]
        assert len(pinned) > 1  # gRPC's threads, started after the loop was pinned, stay beside it
        assert free  # the bundle-loading and step threads
        assert len(pinned) + len(free) == len(threads)
        policies = _thread_policies(server.pid)
        yielding = {tid for tid, (_, policy) in policies.items() if policy == os.SCHED_BATCH}
        python_threads_name = policies[server.pid][0]  # the process's name, which Python's threads keep
        grpc_core_threads = {tid for tid, (name, _) in policies.items() if name != python_threads_name}
        assert len(grpc_core_threads) >= 2 and grpc_core_threads < yielding  # gRPC names its own; its poller is
        # a Python thread, which yields too
        assert yielding <= set(pinned) - {server.pid}
        assert all(policies[tid][1] == os.SCHED_OTHER for tid in [server.pid, *free])


@needs_two_cpus
def test_no_pin_event_loop_leaves_every_thread_to_the_kernel(text_bundle: Path) -> None:
    with ServerProcess([text_bundle], extra_args=["--no-pin-event-loop"]) as server:
        _serve_some(server)
        assert _logged_cpus(server) == {server.pid: None}
        assert set(_thread_cpus(server.pid).values()) == {USABLE}
        if hasattr(os, "SCHED_BATCH"):
            assert {policy for _, policy in _thread_policies(server.pid).values()} == {os.SCHED_OTHER}


@needs_two_cpus
def test_each_worker_pins_its_event_loop_to_its_own_cpu(text_bundle: Path) -> None:
    with ServerProcess([text_bundle], extra_args=["--workers", "2"]) as server:
        logged = _logged_cpus(server)
        assert len(logged) == 2 and len(set(logged.values())) == 2
        for pid, cpu in logged.items():
            assert os.sched_getaffinity(pid) == {cpu}


def _policy_of_a_thread_started() -> int:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
    thread.start()
    thread.join()
    return seen[0]


@pytest.fixture
def pinned_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after `pin_event_loop`: the threads a block starts would share the event loop's CPU."""
    monkeypatch.setattr(cpu_affinity, "_compute_cpus", USABLE or frozenset({0}))


@needs_batch_policy
@pytest.mark.usefixtures("pinned_loop")
def test_threads_started_in_the_block_yield_and_the_caller_gets_its_policy_back() -> None:
    def check() -> None:
        with yielding_threads():
            assert _policy_of_a_thread_started() == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        assert _policy_of_a_thread_started() == os.SCHED_OTHER

    _in_a_thread(check)


@needs_batch_policy
def test_nothing_yields_while_the_event_loop_is_not_pinned() -> None:
    def check() -> None:
        with yielding_threads():
            assert _policy_of_a_thread_started() == os.SCHED_OTHER
        assert os.sched_getscheduler(0) == os.SCHED_OTHER

    _in_a_thread(check)


@needs_batch_policy
@pytest.mark.usefixtures("pinned_loop")
def test_a_caller_under_another_policy_keeps_it() -> None:
    def check() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        with yielding_threads():
            assert _policy_of_a_thread_started() == os.SCHED_IDLE
        assert os.sched_getscheduler(0) == os.SCHED_IDLE

    _in_a_thread(check)


@needs_batch_policy
@pytest.mark.usefixtures("pinned_loop")
def test_a_system_that_refuses_the_policy_still_starts_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)

    def check() -> None:
        with yielding_threads():
            assert _policy_of_a_thread_started() == os.SCHED_OTHER
        assert os.sched_getscheduler(0) == os.SCHED_OTHER

    _in_a_thread(check)


def _in_a_thread(check: Callable[[], None]) -> None:
    """Run `check` on a thread of its own (policies are per thread), raising what it raised."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(check).result()


def test_workers_and_hosts_spread_over_the_usable_cpus() -> None:
    usable = [2, 3, 5, 7]
    assert sorted(choose_cpu(usable, "pod-a", index) for index in range(4)) == usable
    assert {choose_cpu(usable, f"pod-{n}", 0) for n in range(20)} == set(usable)
    assert choose_cpu(usable, "pod-a", 1) == choose_cpu(usable, "pod-a", 5)


def _cgroup_files(root: Path, files: dict[str, str]) -> Path:
    """A cgroup tree under `root`: each path relative to it with its text."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("own_cgroups", "files", "quota"),
    [
        ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/kubepods/pod1\n", {"kubepods/pod1/cpu.max": "max 100000\n"}, None),
        ("0::/outside/the/namespace\n", {"cpu.max": "300000 100000\n"}, 3.0),
        ("2:cpuacct:/\n1:cpu,cpuacct:/docker/abc\n0::/\n",
         {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"},
         0.5),
        ("1:cpu:/\n0::/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ("1:cpu:/docker/abc\n", {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ("0::/\n", {"cpu.max": "unreadable\n"}, None),
        ("0::/\n", {}, None),
    ],
    ids=["v2-limit", "v2-no-limit", "v2-container-root", "v1-limit", "v1-no-limit", "v1-container-root",
         "garbled", "no-cpu-files"],
)
def test_the_cgroup_cpu_quota_is_read_from_v1_or_v2(tmp_path: Path, own_cgroups: str, files: dict[str, str],
                                                     quota: float | None) -> None:
    membership = tmp_path / "self-cgroup"
    membership.write_text(own_cgroups)
    assert cgroup_cpu_quota(_cgroup_files(tmp_path / "cgroup", files), membership) == quota


@pytest.mark.parametrize(("quota", "threads"), [(None, 4), (0.5, 1), (1.5, 2), (2.0, 2), (64.0, 4)])
def test_compute_threads_are_the_usable_cpus_within_the_quota_rounded_up(
        monkeypatch: pytest.MonkeyPatch, quota: float | None, threads: int) -> None:
    monkeypatch.setattr(cpu_affinity, "_compute_cpus", frozenset({0, 1, 2, 3}))
    monkeypatch.setattr(cpu_affinity, "cgroup_cpu_quota", lambda: quota)
    assert compute_cpu_count() == threads
