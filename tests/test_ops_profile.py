"""The profile tool's reading of py-spy's raw samples and of per-thread CPU time."""

from __future__ import annotations

import os
import sysconfig
import threading
from pathlib import Path

from loadtests.profile_server import find_py_spy, read_raw_samples, thread_cpu_ticks

RAW = """\
thread (4038): MainThread;run (uvloop/__init__.py:92);Runner.run (asyncio/runners.py:118) 70
thread (4038): MainThread;run (uvloop/__init__.py:92);Runner.run (asyncio/runners.py:118);reason (servicer.py:71) 20
thread (4038): MainThread;run (uvloop/__init__.py:92);Runner.run (asyncio/runners.py:118);reason (servicer.py:90) 10
thread (4060): step-intent_0;_worker (concurrent/futures/thread.py:83);run (runtime/session.py:126) 40
"""


def test_raw_samples_are_counted_per_thread_function_and_innermost_line(tmp_path: Path):
    path = tmp_path / "raw.txt"
    path.write_text(RAW)
    threads = read_raw_samples(path)
    assert set(threads) == {"MainThread", "step-intent_0"}
    loop = threads["MainThread"]
    assert loop.total == 100
    assert loop.inclusive["reason (servicer.py)"] == 30  # both lines of the function
    assert loop.inclusive["Runner.run (asyncio/runners.py)"] == 100
    assert loop.innermost["Runner.run (asyncio/runners.py:118)"] == 70
    assert threads["step-intent_0"].inclusive["run (runtime/session.py)"] == 40


def test_thread_cpu_ticks_see_every_thread_of_a_process():
    done = threading.Event()
    worker = threading.Thread(target=done.wait)
    worker.start()
    try:
        ticks = thread_cpu_ticks(os.getpid())
        assert os.getpid() in ticks and worker.native_id in ticks
        assert all(value >= 0 for value in ticks.values())
    finally:
        done.set()
        worker.join()


def test_py_spy_is_found_beside_the_interpreter_when_not_on_path(monkeypatch):
    """`.venv/bin/python -m loadtests.profile_server` works without activating the environment (py-spy is in the
    dev extra, so it lies in this interpreter's scripts folder)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    found = find_py_spy()
    assert found is not None and Path(found).parent == Path(sysconfig.get_path("scripts"))
    assert os.access(found, os.X_OK)
