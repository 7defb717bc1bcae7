"""Where the server's threads run: the event loop and gRPC's threads on one CPU, gRPC's yielding to the loop,
compute threads on all.

grpc.aio passes each call's events from gRPC's own threads to the event loop thread, and the loop hands
steps to the model threads and takes them back: several cross-thread wake-ups per call. Left to the
kernel, those threads keep waking one another on other cores. `pin_event_loop` fixes the event loop
thread to one CPU before the gRPC server starts, so the threads gRPC starts afterwards inherit that CPU;
`free_thread`, the initializer of every compute thread (a model's step thread, a bundle-loading thread),
gives that thread back every CPU the process may use, so ONNX Runtime still runs beside the loop.
Measured on the 2-core development machine (docs/EXPERIMENTS.md, 2026-11-30, "pinned to one CPU"), against the same
code unpinned: intent +7 to +30 % requests/s at one caller and +7 to +18 % at 8, routing +16 to +37 % at
one caller, 64 callers level or better, on either core; the step threads pinned alone change nothing.

Sharing the loop's CPU, gRPC's threads preempted the loop each time one woke (about six times per request
under load). `yielding_threads` starts them under SCHED_BATCH, which the kernel never lets preempt a running
thread on wake-up: they run when the loop waits or its time slice ends, and hand it their events in
bigger bunches (docs/EXPERIMENTS.md, 2026-12-01).

`compute_cpu_count` says how many threads a heavy step's session may have (runtime/loader.py): the CPUs the
process may use, but no more than its cgroup's CPU quota allows (a container's CPU limit, which affinity does
not show), rounded up.
"""

from __future__ import annotations

import math
import os
import socket
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_compute_cpus: frozenset[int] | None = None
"""Every CPU the process may use, once the event loop thread is pinned; None while it is not."""


def pin_event_loop(worker_index: int = 0) -> int | None:
    """Pin the calling thread (the event loop's, before the gRPC server or any executor starts) to one of
    the CPUs the process may use, and return it; None where there is nothing to split (a single CPU, or
    no affinity control on this system).

    The CPU is the host name's hash plus `worker_index`, modulo the usable CPUs (`choose_cpu`): the workers
    of `--workers N` (index 0..N-1) take different CPUs, and pods sharing a node's CPUs (host name = pod
    name) spread over them instead of all taking the first."""
    global _compute_cpus
    if not hasattr(os, "sched_setaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return None
    cpu = choose_cpu(usable, socket.gethostname(), worker_index)
    _compute_cpus = frozenset(usable)
    os.sched_setaffinity(0, {cpu})
    return cpu


def choose_cpu(usable: Sequence[int], host: str, worker_index: int) -> int:
    """The event loop's CPU among `usable` (see `pin_event_loop`)."""
    return usable[(zlib.crc32(host.encode()) + worker_index) % len(usable)]


def compute_cpu_count() -> int:
    """How many CPUs compute threads may use: every CPU the process may use, or fewer where its cgroup's CPU
    quota (a container's CPU limit) allows fewer, rounded up."""
    if _compute_cpus is not None:
        usable = len(_compute_cpus)
    else:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return usable if quota is None else max(1, min(usable, math.ceil(quota)))


def cgroup_cpu_quota(
    cgroup_root: Path = Path("/sys/fs/cgroup"), own_cgroups: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs per period that the process's cgroup may use: cgroup v2's `cpu.max` ("150000 100000": 1.5), or
    v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us`; None where there is no limit or none can be read.

    The files are read in the process's own cgroup (named in `own_cgroups`) or, where that folder is not
    mounted (a container sees its own cgroup as the root), at the root of the hierarchy."""
    try:
        memberships = own_cgroups.read_text().splitlines()
    except OSError:
        return None
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one hierarchy
            mount, files = cgroup_root, ("cpu.max",)
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's hierarchy
            mount, files = cgroup_root / controllers, ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        folder = next((f for f in (mount / path.lstrip("/"), mount) if (f / files[0]).is_file()), None)
        if folder is None:
            continue
        try:
            limit, period = " ".join((folder / name).read_text() for name in files).split()
        except (OSError, ValueError):  # unreadable, or not a limit and a period
            continue
        if limit.isdigit() and period.isdigit() and int(limit) > 0:  # "max" (v2) and -1 (v1): no limit
            return int(limit) / int(period)
    return None


def free_thread() -> None:
    """Give the calling thread every CPU the process may use (the initializer of compute threads); nothing
    while the event loop is not pinned."""
    if _compute_cpus is not None:
        os.sched_setaffinity(0, _compute_cpus)


@contextmanager
def yielding_threads() -> Iterator[None]:
    """Threads started inside the block run under SCHED_BATCH, inherited from the calling thread, whose own
    policy comes back at the end: woken, such a thread waits for the running one to wait or use up its time
    slice instead of preempting it. Nothing changes while the event loop is not pinned (they would not
    share its CPU), where the calling thread is not under the default policy (SCHED_OTHER), or where the
    system has no SCHED_BATCH or refuses the change (a sandbox)."""
    default: os.sched_param | None = None
    try:
        if _compute_cpus is not None and os.sched_getscheduler(0) == os.SCHED_OTHER:
            default = os.sched_getparam(0)
            os.sched_setscheduler(0, os.SCHED_BATCH, default)
    except (AttributeError, OSError):  # no such policy here, or not allowed to set it
        default = None
    try:
        yield
    finally:
        if default is not None:
            os.sched_setscheduler(0, os.SCHED_OTHER, default)
