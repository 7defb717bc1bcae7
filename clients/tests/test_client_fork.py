"""A TRMClient used across os.fork().

Idle at the fork (gunicorn's and multiprocessing's fork workers with a client made at import), the children's
calls and the parent's answer. With a call in flight in another thread at the fork, gRPC skips its fork handlers
(its fork contract forbids the case: "Other threads are currently calling into gRPC"), and a child may then be
cancelled or aborted by gRPC's core (2 of 40 runs here); the SDK's part is that no child's call blocks past its
deadline: the parent's channel, used in the child, blocked the child's first call for good.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sdk_test_support import GRID_MODEL, N_SUP, SUDOKU, TEXT_MODEL

CHILD_DEADLINE_S = 5
CHILD_ALARM_S = 20  # a child still blocked then is killed by SIGALRM: exit status -14
BLOCKED = -14

SCRIPT = f"""
import json, os, signal, sys, threading, time
from trm_client import Budget, TRMClient

client = TRMClient(sys.argv[1], timeout_s=30)
client.reason({TEXT_MODEL!r}, "warm the channel up")
in_flight = sys.argv[2] == "in-flight"

def streams():
    while True:
        for _ in client.reason_stream({GRID_MODEL!r}, grid={SUDOKU!r}, budget=Budget(max_steps={N_SUP},
                                                                                    min_steps={N_SUP})):
            pass
        if not in_flight:
            return

worker = threading.Thread(target=streams, daemon=True)
worker.start()
time.sleep(0.5) if in_flight else worker.join()
children = []
for _ in range(3):
    child = os.fork()
    if child == 0:
        signal.alarm({CHILD_ALARM_S})
        steps = list(client.reason_stream({TEXT_MODEL!r}, "wake me up at seven", timeout_s={CHILD_DEADLINE_S}))
        answer = client.reason({TEXT_MODEL!r}, "play some jazz", timeout_s={CHILD_DEADLINE_S})
        os._exit(0 if steps[-1].final and answer.answer.label else 3)
    children.append(child)
print(json.dumps([os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children]))
client.reason({TEXT_MODEL!r}, "the parent's own client still answers")
print("parent answered")
"""


def _forked(server, case: str) -> tuple[list[int], list[str]]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, server.target, case], capture_output=True, text=True,
                          timeout=120, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stderr[-2000:]
    return json.loads(lines[0]), lines[1:]


def test_a_client_idle_at_a_fork_answers_in_the_children_and_the_parent(server) -> None:
    statuses, parent = _forked(server, "idle")
    assert (statuses, parent) == ([0, 0, 0], ["parent answered"])


@pytest.mark.parametrize("attempt", range(3))
def test_no_child_blocks_past_its_deadline_with_a_call_in_flight_at_the_fork(server, attempt: int) -> None:
    statuses, parent = _forked(server, "in-flight")
    assert BLOCKED not in statuses and parent == ["parent answered"]
